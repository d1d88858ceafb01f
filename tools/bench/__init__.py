"""Benchmarks (`rtm bench NAME`): development tooling, not shipped to production paths."""
