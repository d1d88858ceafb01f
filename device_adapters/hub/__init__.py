"""The home-hub agent: BLE sessions to enrolled devices, device-clock to UTC mapping, batching into
canonical events, a power-loss-safe bounded spool, and uploads to the gateway with retries."""
