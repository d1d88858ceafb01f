"""`rtm vendor ...`: operators' commands for the vendor-cloud connections.

rtm vendor connections [--clinic C]         sync health of every connection
rtm vendor keygen [--kid K]                 a new token key for RTM_VENDOR_TOKEN_KEYS (put it first)
rtm vendor rotate-key                       local stack: a new key first in the state folder's key file
rtm vendor reencrypt                        every stored token under the active key (after a rotation)
rtm vendor migrate-legacy                   plain-text Polar tokens of ingest_vendor_links, encrypted
rtm vendor polar-webhook --url URL          create, update or re-activate the AccessLink webhook
rtm vendor oura-subscribe --url URL         create or renew the Oura daily_activity subscriptions
rtm vendor fake polar|google-health|oura|withings|garmin [--port P]   serve a local vendor fake (demos)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import typer

from rtm.cliutil import PASS_THROUGH, exit_with
from rtm.settings import get_settings


def _connections_store(role: str = "writer") -> Any:
    from device_adapters.cloud.connections import Connections
    from device_adapters.cloud.settings import get_vendor_settings
    from ingest.store import Store

    async def open_() -> tuple[Any, Any]:
        s = get_settings()
        store = await Store.open(s, max_size=2, role="owner" if role == "owner" else "writer")
        return store, Connections(store.pool, get_vendor_settings().cipher(s.secrets_dir))

    return open_


def cmd_connections(args: argparse.Namespace) -> int:
    async def run() -> int:
        store, _ = await _connections_store()()
        try:
            async with store.pool.connection() as conn:
                cur = await conn.execute(
                    """select v.vendor, v.vendor_user_id, d.clinic_id, d.patient_id, v.status, v.synced_through,
                              v.last_success_at, v.last_error
                         from vendor_connections v join ingest_device_credentials d using (credential_id)
                        where %s::text is null or d.clinic_id = %s order by d.clinic_id, d.patient_id""",
                    (args.clinic, args.clinic),
                )
                rows = await cur.fetchall()
        finally:
            await store.close()
        head = f"{'vendor':8} {'user':>10} {'clinic':14} {'patient':14} {'status':26} {'synced':10}"
        print(head + " last success / error")
        for v, u, c, p, st, through, ok, err in rows:
            last = ok.isoformat(timespec="seconds") if ok else "-"
            print(f"{v:8} {u:>10} {c:14} {p:14} {st:26} {through or '-'!s:10} {last} {err or ''}")
        return 0

    return asyncio.run(run())


def cmd_keygen(args: argparse.Namespace) -> int:
    from device_adapters.cloud.crypto import new_key_spec

    print(new_key_spec(args.kid))
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from device_adapters.cloud.crypto import rotate_local_keys
    from device_adapters.cloud.settings import get_vendor_settings

    if get_vendor_settings().token_keys is not None:
        print("error: RTM_VENDOR_TOKEN_KEYS is set; rotate there (put `rtm vendor keygen` first)", file=sys.stderr)
        return 1
    kid = rotate_local_keys(get_settings().secrets_dir)
    print(f"new active key {kid}; now run `rtm vendor reencrypt` (and restart the gateway)")
    return 0


def cmd_reencrypt(args: argparse.Namespace) -> int:
    async def run() -> int:
        store, conns = await _connections_store()()
        try:
            moved = await conns.reencrypt_all()
        finally:
            await store.close()
        print(f"{moved} tokens re-encrypted under key {conns.cipher.active_key_id}")
        return 0

    return asyncio.run(run())


def cmd_migrate_legacy(args: argparse.Namespace) -> int:
    """Tokens the gateway stored in plain text before migration 0720: encrypted into
    vendor_connections, then blanked in the old table (as the owner role)."""

    async def run() -> int:
        store, conns = await _connections_store("owner")()
        n = 0
        try:
            async with store.pool.connection() as conn:
                cur = await conn.execute(
                    "select vendor, vendor_user_id, credential_id, tz, access_token from ingest_vendor_links "
                    "where access_token <> ''"
                )
                rows = await cur.fetchall()
            for vendor, user, cred, tz, token in rows:
                if await conns.get(vendor, user) is None:
                    await conns.upsert(vendor, user, cred, tz, {"access_token": token, "token_type": "bearer"})
                async with store.pool.connection() as conn:
                    await conn.execute(
                        "update ingest_vendor_links set access_token = '' where vendor = %s and vendor_user_id = %s",
                        (vendor, user),
                    )
                n += 1
        finally:
            await store.close()
        print(f"{n} plain-text tokens moved")
        return 0

    return asyncio.run(run())


def cmd_polar_webhook(args: argparse.Namespace) -> int:
    import httpx

    from device_adapters.cloud.polar import PolarClient
    from device_adapters.cloud.settings import get_vendor_settings
    from ingest.settings import get_gateway_settings

    v, g = get_vendor_settings(), get_gateway_settings()
    if not v.polar_client_id or v.polar_client_secret is None:
        print("error: set RTM_VENDOR_POLAR_CLIENT_ID and RTM_VENDOR_POLAR_CLIENT_SECRET", file=sys.stderr)
        return 1

    async def run() -> tuple[str, str | None, str]:
        async with httpx.AsyncClient() as http:
            client = PolarClient(http, g.polar_api_base, 30.0, v.polar_client_id,
                                 v.polar_client_secret.get_secret_value() if v.polar_client_secret else None)
            return await client.ensure_webhook(args.url, args.events.split(","))

    hook_id, secret, done = asyncio.run(run())
    print(f"webhook {hook_id}: {done}")
    if secret is not None:
        print(f"signature secret (shown once; set RTM_GATEWAY_POLAR_WEBHOOK_SECRET): {secret}")
    return 0


def cmd_oura_subscribe(args: argparse.Namespace) -> int:
    import httpx

    from device_adapters.cloud.oura import OuraClient
    from device_adapters.cloud.settings import get_vendor_settings

    v = get_vendor_settings()
    if not v.oura_client_id or v.oura_client_secret is None or v.oura_verification_token is None:
        print("error: set RTM_VENDOR_OURA_CLIENT_ID, _CLIENT_SECRET and _VERIFICATION_TOKEN", file=sys.stderr)
        return 1

    async def run() -> list[str]:
        async with httpx.AsyncClient() as http:
            client = OuraClient(http, v.oura_api_base, 30.0, v.oura_client_id,
                                v.oura_client_secret.get_secret_value() if v.oura_client_secret else None)
            token = v.oura_verification_token.get_secret_value() if v.oura_verification_token else ""
            return await client.ensure_subscriptions(args.url, token)

    print("; ".join(asyncio.run(run())) or "subscriptions current")
    return 0


def cmd_fake(args: argparse.Namespace) -> int:
    from device_adapters.cloud.fakes.garmin import GarminFake
    from device_adapters.cloud.fakes.google_health import GoogleHealthFake
    from device_adapters.cloud.fakes.oura import OuraFake
    from device_adapters.cloud.fakes.polar import PolarFake
    from device_adapters.cloud.fakes.server import serve
    from device_adapters.cloud.fakes.withings import WithingsFake

    fakes = {"polar": PolarFake, "google-health": GoogleHealthFake, "oura": OuraFake, "withings": WithingsFake,
             "garmin": GarminFake}
    fake = fakes[args.vendor]()
    served = serve(fake.app(), args.port)
    print(f"{args.vendor} fake on {served.url} (client id {fake.client_id}); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        served.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtm vendor", description="vendor-cloud connections: health, keys, webhooks, "
                                                               "fakes")
    sub = p.add_subparsers(dest="vendor_command", required=True)
    c = sub.add_parser("connections", help="sync health of every vendor connection")
    c.add_argument("--clinic")
    c.set_defaults(func=cmd_connections)
    c = sub.add_parser("keygen", help="print a new token key for RTM_VENDOR_TOKEN_KEYS")
    c.add_argument("--kid", default=f"k{int(time.time())}")
    c.set_defaults(func=cmd_keygen)
    sub.add_parser("rotate-key", help="local stack: a new active token key").set_defaults(func=cmd_rotate)
    sub.add_parser("reencrypt", help="re-encrypt stored tokens under the active key").set_defaults(func=cmd_reencrypt)
    sub.add_parser("migrate-legacy", help="encrypt the plain-text tokens of ingest_vendor_links").set_defaults(
        func=cmd_migrate_legacy
    )
    c = sub.add_parser("polar-webhook", help="create, update or re-activate the AccessLink webhook")
    c.add_argument("--url", required=True, help="the gateway's public /v1/webhooks/polar URL")
    c.add_argument("--events", default="ACTIVITY_SUMMARY")
    c.set_defaults(func=cmd_polar_webhook)
    c = sub.add_parser("oura-subscribe", help="create or renew the Oura daily_activity webhook subscriptions")
    c.add_argument("--url", required=True, help="the gateway's public /v1/webhooks/oura URL")
    c.set_defaults(func=cmd_oura_subscribe)
    c = sub.add_parser("fake", help="serve a vendor fake on 127.0.0.1 (demos and manual tests)")
    c.add_argument("vendor", choices=["polar", "google-health", "oura", "withings", "garmin"])
    c.add_argument("--port", type=int, default=8316)
    c.set_defaults(func=cmd_fake)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


def register(app: typer.Typer) -> None:
    """`rtm vendor ...`: its subcommands parse their own options (`rtm vendor --help`)."""

    @app.command("vendor", context_settings=PASS_THROUGH, add_help_option=False)
    def vendor(ctx: typer.Context) -> None:
        """Vendor-cloud connections: health, keys, webhooks, fakes (rtm vendor --help)."""
        exit_with(main(list(ctx.args)))
