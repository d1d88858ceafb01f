"""A simulated device fleet: canonical events as real adapters would emit them (demo and tests)."""
