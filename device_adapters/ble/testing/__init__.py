"""Virtual BLE for tests and benchmarks (needs the `bumble` development dependency): never imported
by the production path."""
