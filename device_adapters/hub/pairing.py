"""`rtm hub pair CODE`: redeem the clinic's short pairing code at the gateway for the device's
credential and store it in the hub's configuration (written atomically, mode 0600). Nobody types
or sees the token.

Redeeming gives the device's credential a new secret, so pairing again with a new code always
works (and the previous token stops working): a failed write here costs a new code, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from device_adapters.hub.config import HubConfig, HubDevice


class PairingError(RuntimeError):
    pass


@dataclass(frozen=True)
class NewDevice:
    """How to reach a device that is not yet in the configuration."""

    profile: str
    address: str | None = None
    name: str | None = None
    profile_options: dict[str, Any] | None = None


def _problem(r: httpx.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        return r.text[:200]
    return str(doc.get("detail") or doc.get("title") or doc) if isinstance(doc, dict) else str(doc)


async def pair(config_path: Path, code: str, new: NewDevice | None = None,
               http: httpx.AsyncClient | None = None) -> HubDevice:
    config = HubConfig.load(config_path)
    if new is None and all(d.token is not None for d in config.devices):
        # Checked before the code is spent: there would be nowhere to put the credential.
        raise PairingError("every configured device is paired already: add the device to the configuration "
                           "or give its profile and name or address")
    client = http or httpx.AsyncClient(base_url=config.gateway_url, timeout=30.0)
    try:
        r = await client.post("/v1/pairing", json={"code": code})
    except httpx.HTTPError as exc:
        raise PairingError(f"the gateway could not be reached ({exc}); the code was not used") from exc
    finally:
        if http is None:
            await client.aclose()
    if r.status_code != 200:
        raise PairingError(f"pairing refused ({r.status_code}): {_problem(r)}")
    got = r.json()
    fields = {"patient_id": got["patient_id"], "episode_id": got["episode_id"],
              "token": SecretStr(got["token"])}
    devices = list(config.devices)
    for i, d in enumerate(devices):
        if d.device_id == got["device_id"]:
            site = d.body_site if got["body_site"] == "unknown" else got["body_site"]
            devices[i] = d.model_copy(update={**fields, "body_site": site})
            break
    else:
        if new is None:
            raise PairingError(f"the code is for device {got['device_id']}, which the configuration does not list: "
                               "add it (profile, name or address) and ask the clinic for a new code")
        devices.append(HubDevice(device_id=got["device_id"], profile=new.profile, address=new.address,
                                 name=new.name, profile_options=new.profile_options or {},
                                 body_site=got["body_site"], **fields))
    updated = config.model_copy(update={"devices": devices})
    HubConfig.model_validate(updated.model_dump())  # the result must load again
    updated.save(config_path)
    return next(d for d in devices if d.device_id == got["device_id"])
