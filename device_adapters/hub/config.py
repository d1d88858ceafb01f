"""The hub's configuration file (JSON): where to upload, where to spool, and the enrolled devices.

Each device carries its enrolment token (`rtmd_…`), written by `rtm hub pair CODE` (or the
installer), never typed by the patient. The file is the hub's only secret: it is written mode 0600.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from device_adapters.ble import profiles
from rtm.contract import BodySite
from rtm.contract.base import Identifier


class HubDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str
    patient_id: str
    episode_id: str | None = None
    profile: str
    profile_options: dict[str, Any] = Field(default_factory=dict)
    address: str | None = None
    name: str | None = None
    body_site: BodySite = BodySite.UNKNOWN
    token: SecretStr | None = None  # None until paired: its uploads wait

    @model_validator(mode="after")
    def _check(self) -> HubDevice:
        try:
            profiles.get(self.profile)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None  # names the known profiles
        if self.address is None and self.name is None:
            raise ValueError(f"device {self.device_id}: give its BLE address or advertised name")
        return self


class HubConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gateway_url: str
    spool_path: Path
    # 256 MiB holds days of a 50 Hz IMU offline (about 30 MB a day as JSON): a hub is a small box
    spool_max_bytes: Annotated[int, Field(gt=0)] = 256 << 20
    batch_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    step_interval_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    upload_batch_events: Annotated[int, Field(ge=1, le=500)] = 50  # the gateway's per-request cap is 500
    scan_timeout_s: float = 10.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 60.0
    health_path: Path | None = None
    hub_id: Identifier = Field(default_factory=lambda: socket.gethostname()[:128] or "hub")
    # How often the hub reports its health to the gateway (per paired device); 0: never.
    health_report_s: Annotated[float, Field(ge=0)] = 300.0
    devices: list[HubDevice]

    @classmethod
    def load(cls, path: Path) -> HubConfig:
        return cls.model_validate_json(path.read_text())

    def save(self, path: Path) -> None:
        """Write the file atomically, mode 0600 from its first byte (it holds the device tokens)."""
        doc = self.model_dump(mode="json")
        for d, dev in zip(doc["devices"], self.devices, strict=True):
            d["token"] = dev.token.get_secret_value() if dev.token is not None else None
        fd, tmp = tempfile.mkstemp(prefix=".hub-", suffix=".json", dir=path.parent)  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(doc, indent=2) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
