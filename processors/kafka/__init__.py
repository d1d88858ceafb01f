"""Broker-specific glue for the stream processors."""
