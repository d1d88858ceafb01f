"""`rtm hub run | upload | status --config FILE`: the home-hub agent."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

from device_adapters.hub.agent import HubAgent
from device_adapters.hub.config import HubConfig


def _agent(args: argparse.Namespace) -> HubAgent:
    return HubAgent(HubConfig.load(Path(args.config)))


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        agent = _agent(args)
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
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    """Drain the spool to the gateway once (no BLE)."""

    async def main() -> int:
        agent = _agent(args)
        try:
            moved = await agent.uploader.drain()
            print(json.dumps({"uploaded": moved, "left": agent.spool.depth(), **agent.uploader.stats.__dict__}))
            return 0 if agent.spool.depth() == 0 else 1
        finally:
            await agent.close()

    return asyncio.run(main())


def cmd_status(args: argparse.Namespace) -> int:
    agent = _agent(args)
    try:
        h = agent.health()
        print(json.dumps({k: h[k] for k in ("spool_depth", "spool_bytes", "evicted", "rejected")}))
    finally:
        asyncio.run(agent.close())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hub", help="the home-hub agent: BLE devices to the gateway through a local spool")
    hub = p.add_subparsers(dest="hub_cmd", required=True)
    for name, func, text in (("run", cmd_run, "run the agent (BLE sessions, spool, uploads) until SIGTERM"),
                             ("upload", cmd_upload, "drain the spool to the gateway once"),
                             ("status", cmd_status, "print the spool's depth, evictions and rejections")):
        q = hub.add_parser(name, help=text)
        q.add_argument("--config", required=True, help="the hub's JSON configuration file")
        q.set_defaults(func=func)
