"""Developer tools: harnesses that exercise the pipeline from outside (not part of any service)."""
