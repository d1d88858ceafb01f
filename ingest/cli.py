"""Command-line entry points of the gateway, registered into `rtm` by `register(subparsers)`:

rtm gateway [--host H] [--port P] [--workers N]        serve the HTTP gateway (uvicorn)
rtm clinic-key create CLINIC_ID [--name N] [--label L]  make a clinic API key (printed once)
rtm clinic-key revoke KEY_ID
rtm enrol device --clinic C --patient P --episode E --device D --model M [--body-site S]
rtm enrol revoke CREDENTIAL_ID [--reason R]
rtm enrol list [--clinic C]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rtm.settings import get_settings

T = TypeVar("T")


def _with_services(fn: Callable[..., Awaitable[T]], publisher: bool = False, owner: bool = False) -> T:
    from ingest.publisher import Publisher
    from ingest.settings import get_gateway_settings
    from ingest.store import Store

    async def run() -> T:
        s, cfg = get_settings(), get_gateway_settings()
        store = await Store.open(s, max_size=2, role="owner" if owner else "writer")
        pub = await Publisher.start(s, cfg.publish_timeout_s) if publisher else None
        try:
            return await fn(store, pub, cfg.pepper_bytes(s.secrets_dir, s.environment))
        finally:
            if pub is not None:
                await pub.stop()
            await store.close()

    return asyncio.run(run())


def _emitter(pub: Any) -> Any:
    from ingest.enrolment import Emitter
    from ingest.settings import get_gateway_settings

    return Emitter(pub, get_gateway_settings().acceptance == "outbox")


def _problem_exit(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from ingest.log import configure_logging
    from ingest.settings import get_gateway_settings
    from rtm import production

    cfg = get_gateway_settings()
    configure_logging(cfg.log_level)
    try:
        production.check("gateway", get_settings(), cfg)
    except production.ProductionConfigError as exc:
        return _problem_exit(exc)
    if args.workers > 1:
        from ingest.multiproc import prepare_multiprocess

        prepare_multiprocess(get_settings().state_dir)
    uvicorn.run(
        "ingest.app:app_factory",
        factory=True,
        host=args.host or cfg.host,
        port=args.port or cfg.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        loop="auto",
        http="auto",
        proxy_headers=args.proxy_headers,
    )
    return 0


def cmd_clinic_key_create(args: argparse.Namespace) -> int:
    from ingest.enrolment import create_clinic_key

    async def run(store: Any, _: Any, pepper: bytes) -> Any:
        if args.name:
            await store.ensure_clinic(args.clinic_id, args.name)
        return await create_clinic_key(store, pepper, args.clinic_id, args.label)

    try:
        key = _with_services(run, owner=True)
    except Exception as exc:  # the database explains (e.g. an unknown clinic)
        return _problem_exit(exc)
    print(f"key id: {key.key_id}\nclinic: {key.clinic_id}\ntoken (shown once): {key.token}")
    return 0


def cmd_clinic_key_revoke(args: argparse.Namespace) -> int:
    async def run(store: Any, _: Any, pepper: bytes) -> bool:
        return bool(await store.revoke_clinic_key(args.key_id))

    done = _with_services(run, owner=True)
    print("revoked" if done else "no such live key")
    return 0 if done else 1


def cmd_enrol_device(args: argparse.Namespace) -> int:
    from ingest.enrolment import EnrolmentRequest, enrol

    req = EnrolmentRequest(
        patient_id=args.patient,
        episode_id=args.episode,
        device_id=args.device,
        model_id=args.model,
        body_site=args.body_site,
        serial=args.serial,
    )

    async def run(store: Any, pub: Any, pepper: bytes) -> Any:
        return await enrol(store, _emitter(pub), pepper, args.clinic, req, created_by="cli")

    try:
        e = _with_services(run, publisher=True)
    except Exception as exc:
        return _problem_exit(exc)
    print(
        f"credential id: {e.credential_id}\ndevice: {e.device_id}\nvalid from: {e.valid_from.isoformat()}\n"
        f"token (shown once): {e.token}"
    )
    return 0


def cmd_enrol_revoke(args: argparse.Namespace) -> int:
    from ingest.enrolment import revoke

    async def run(store: Any, pub: Any, pepper: bytes) -> Any:
        return await revoke(store, _emitter(pub), args.credential_id, None, args.reason)

    try:
        _with_services(run, publisher=True)
    except Exception as exc:
        return _problem_exit(exc)
    print("revoked")
    return 0


def cmd_enrol_list(args: argparse.Namespace) -> int:
    async def run(store: Any, _: Any, pepper: bytes) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await store.list_credentials(args.clinic)
        return rows

    for r in _with_services(run):
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "live"
        print(f"{r['credential_id']}  {r['device_id']:<24} {r['clinic_id']:<16} {state}")
    return 0


def register(subparsers: Any) -> None:
    """Add the gateway's commands to the `rtm` parser's subparsers."""
    p = subparsers.add_parser("gateway", help="serve the ingest HTTP gateway (uvicorn)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from a load balancer")
    p.set_defaults(func=cmd_gateway)

    p = subparsers.add_parser("clinic-key", help="create or revoke a clinic's API key")
    sub = p.add_subparsers(dest="clinic_key_command", required=True)
    c = sub.add_parser("create", help="create an API key (printed once)")
    c.add_argument("clinic_id")
    c.add_argument("--name", help="create the clinic with this name if it does not exist")
    c.add_argument("--label")
    c.set_defaults(func=cmd_clinic_key_create)
    c = sub.add_parser("revoke", help="revoke an API key")
    c.add_argument("key_id")
    c.set_defaults(func=cmd_clinic_key_revoke)

    p = subparsers.add_parser("enrol", help="enrol a device for a patient's episode, revoke, list")
    sub = p.add_subparsers(dest="enrol_command", required=True)
    c = sub.add_parser("device", help="enrol a device (the token is printed once)")
    for name in ("clinic", "patient", "episode", "device", "model"):
        c.add_argument(f"--{name}", required=True)
    c.add_argument("--body-site", default="unknown")
    c.add_argument("--serial")
    c.set_defaults(func=cmd_enrol_device)
    c = sub.add_parser("revoke", help="revoke a device credential")
    c.add_argument("credential_id")
    c.add_argument("--reason")
    c.set_defaults(func=cmd_enrol_revoke)
    c = sub.add_parser("list", help="list enrolments")
    c.add_argument("--clinic")
    c.set_defaults(func=cmd_enrol_list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
