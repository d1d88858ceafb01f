"""`rtm hub run | upload | status | pair --config FILE`: the home-hub agent; and
`rtm enrol pairing-code --clinic C --device D`, the clinic side of pairing."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from device_adapters.hub.agent import HubAgent
from device_adapters.hub.config import HubConfig
from rtm.cliutil import exit_with, new_app

hub_app = new_app("The home-hub agent: BLE devices to the gateway through a local spool.")
Config = Annotated[Path, typer.Option(exists=True, dir_okay=False, help="The hub's JSON configuration file.")]


def _agent(config: Path) -> HubAgent:
    return HubAgent(HubConfig.load(config))


@hub_app.command("run")
def cmd_run(config: Config) -> None:
    """Run the agent (BLE sessions, spool, uploads) until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        agent = _agent(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await agent.run(stop)
            await agent.uploader.drain()
        finally:
            await agent.close()

    asyncio.run(main())


@hub_app.command("upload")
def cmd_upload(config: Config) -> None:
    """Drain the spool to the gateway once (no BLE); exit 1 when events are left."""

    async def main() -> int:
        agent = _agent(config)
        try:
            moved = await agent.uploader.drain()
            print(json.dumps({"uploaded": moved, "left": agent.spool.depth(), **agent.uploader.stats.__dict__}))
            return 0 if agent.spool.depth() == 0 else 1
        finally:
            await agent.close()

    exit_with(asyncio.run(main()))


@hub_app.command("status")
def cmd_status(config: Config) -> None:
    """Print the spool's depth, evictions and rejections."""
    agent = _agent(config)
    try:
        h = agent.health()
        print(json.dumps({k: h[k] for k in ("spool_depth", "spool_bytes", "evicted", "rejected")}))
    finally:
        asyncio.run(agent.close())


@hub_app.command("pair")
def cmd_pair(
    code: Annotated[str, typer.Argument(help="The short code the clinic gave, e.g. K7QM-3XPD.")],
    config: Annotated[Path, typer.Option(dir_okay=False,
                                         help="The hub's JSON configuration file (rewritten mode 0600).")],
    profile: Annotated[str | None, typer.Option(help="For a device not yet in the configuration: its profile.")] = None,
    name: Annotated[str | None, typer.Option(help="... its advertised name.")] = None,
    address: Annotated[str | None, typer.Option(help="... or its BLE address.")] = None,
    profile_options: Annotated[str | None, typer.Option(help="... and its profile options as JSON.")] = None,
) -> None:
    """Redeem the clinic's pairing code; the device credential goes into the configuration."""
    from device_adapters.hub.pairing import NewDevice, PairingError, pair

    new = None
    if profile is not None:
        if name is None and address is None:
            raise typer.BadParameter("a new device needs --name or --address")
        new = NewDevice(profile, address, name, json.loads(profile_options or "{}"))
    try:
        device = asyncio.run(pair(config, code, new))
    except PairingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"paired {device.device_id} (patient {device.patient_id}); credential stored in {config}")


def register(app: typer.Typer) -> None:
    app.add_typer(hub_app, name="hub")
