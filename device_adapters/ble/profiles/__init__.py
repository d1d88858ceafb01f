"""The profile registry: each module registers one Profile; `get(name)` and `for_service(uuid)`."""

from __future__ import annotations

from device_adapters.ble.profiles.base import Profile
from device_adapters.ble.profiles.movesense import MovesenseImu
from device_adapters.ble.profiles.polar_pmd import PolarPmd
from device_adapters.ble.profiles.rsc import RunningSpeedCadence
from device_adapters.ble.profiles.thingy52 import Thingy52Motion

_REGISTRY: dict[str, type[Profile]] = {}


def register(cls: type[Profile]) -> type[Profile]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"profile name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (RunningSpeedCadence, Thingy52Motion, PolarPmd, MovesenseImu):
    register(_cls)


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type[Profile]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown BLE profile {name!r} (known: {', '.join(names())})") from None


def for_service(service_uuid: str) -> type[Profile] | None:
    wanted = service_uuid.lower()
    return next((c for c in _REGISTRY.values() if c.service_uuid == wanted), None)
