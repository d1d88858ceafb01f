"""Bluetooth Low Energy device adapters: GATT profile plugins (`profiles/`) that decode
notifications into readings, and the conversion of readings into canonical events (`events`)."""
