"""Batched, idempotent writes of stream results into TimescaleDB."""
