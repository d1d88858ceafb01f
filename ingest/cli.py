"""Command-line entry points of the gateway, registered into `rtm` by `register(app)` (typer):

rtm gateway [--host H] [--port P] [--workers N]        serve the HTTP gateway (uvicorn)
rtm clinic-key create CLINIC_ID [--name N] [--label L]  make a clinic API key (printed once)
rtm clinic-key revoke KEY_ID
rtm enrol device --clinic C --patient P --episode E --device D --model M [--body-site S]
rtm enrol pairing-code --clinic C --device D [--ttl S]   a single-use code the device's hub redeems
rtm enrol revoke CREDENTIAL_ID [--reason R]
rtm enrol list [--clinic C]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from rtm.cliutil import exit_with, new_app, run_app
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


def cmd_gateway(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: RTM_GATEWAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: RTM_GATEWAY_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    proxy_headers: Annotated[bool, typer.Option(help="Trust X-Forwarded-* from a load balancer.")] = False,
) -> None:
    """Serve the ingest HTTP gateway (uvicorn)."""
    import uvicorn

    from ingest.log import configure_logging
    from ingest.settings import get_gateway_settings
    from rtm import production

    cfg = get_gateway_settings()
    configure_logging(cfg.log_level)
    try:
        production.check("gateway", get_settings(), cfg)
    except production.ProductionConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if workers > 1:
        from ingest.multiproc import prepare_multiprocess

        prepare_multiprocess(get_settings().state_dir)
    uvicorn.run(
        "ingest.app:app_factory",
        factory=True,
        host=host or cfg.host,
        port=port or cfg.port,
        workers=workers,
        log_config=None,
        access_log=False,
        loop="auto",
        http="auto",
        proxy_headers=proxy_headers,
    )


clinic_key = new_app("Create or revoke a clinic's API key.")


@clinic_key.command("create")
def cmd_clinic_key_create(
    clinic_id: Annotated[str, typer.Argument(help="The clinic the key acts for.")],
    name: Annotated[str | None, typer.Option(help="Create the clinic with this name if it does not exist.")] = None,
    label: Annotated[str | None, typer.Option(help="A label to recognise the key by.")] = None,
) -> None:
    """Create an API key (its token is printed once)."""
    from ingest.enrolment import create_clinic_key

    async def run(store: Any, _: Any, pepper: bytes) -> Any:
        if name:
            await store.ensure_clinic(clinic_id, name)
        return await create_clinic_key(store, pepper, clinic_id, label)

    key = _with_services(run, owner=True)
    print(f"key id: {key.key_id}\nclinic: {key.clinic_id}\ntoken (shown once): {key.token}")


@clinic_key.command("revoke")
def cmd_clinic_key_revoke(key_id: Annotated[str, typer.Argument(help="The key id printed at creation.")]) -> None:
    """Revoke an API key."""

    async def run(store: Any, _: Any, pepper: bytes) -> bool:
        return bool(await store.revoke_clinic_key(key_id))

    done = _with_services(run, owner=True)
    print("revoked" if done else "no such live key")
    exit_with(0 if done else 1)


enrol_app = new_app("Enrol a device for a patient's episode, revoke, list.")


@enrol_app.command("device")
def cmd_enrol_device(
    clinic: Annotated[str, typer.Option(help="The clinic enrolling the device.")],
    patient: Annotated[str, typer.Option(help="The patient the device writes for.")],
    episode: Annotated[str, typer.Option(help="The patient's episode of care.")],
    device: Annotated[str, typer.Option(help="The device id.")],
    model: Annotated[str, typer.Option(help="The device model id.")],
    body_site: Annotated[str, typer.Option(help="Where the device is worn.")] = "unknown",
    serial: Annotated[str | None, typer.Option(help="The device's serial number.")] = None,
) -> None:
    """Enrol a device (its token is printed once)."""
    from ingest.enrolment import EnrolmentRequest, enrol

    req = EnrolmentRequest(
        patient_id=patient, episode_id=episode, device_id=device, model_id=model, body_site=body_site,
        serial=serial,
    )  # fmt: skip

    async def run(store: Any, pub: Any, pepper: bytes) -> Any:
        return await enrol(store, _emitter(pub), pepper, clinic, req, created_by="cli")

    e = _with_services(run, publisher=True)
    print(
        f"credential id: {e.credential_id}\ndevice: {e.device_id}\nvalid from: {e.valid_from.isoformat()}\n"
        f"token (shown once): {e.token}"
    )


@enrol_app.command("pairing-code")
def cmd_pairing_code(
    clinic: Annotated[str, typer.Option(help="The clinic the device is enrolled with.")],
    device: Annotated[str, typer.Option(help="The enrolled device id.")],
    ttl: Annotated[float | None, typer.Option(help="Lifetime in seconds (default RTM_GATEWAY_PAIRING_CODE_TTL_S).")]
    = None,
) -> None:
    """Issue a single-use pairing code for an enrolled device (for its hub; printed once)."""
    import psycopg

    from ingest.enrolment import issue_pairing_code_sync
    from ingest.problems import Problem
    from ingest.settings import get_gateway_settings

    s, cfg = get_settings(), get_gateway_settings()
    try:
        with psycopg.connect(s.dsn("writer"), autocommit=True) as conn:
            code = issue_pairing_code_sync(conn, cfg.pepper_bytes(s.secrets_dir, s.environment), clinic, device,
                                           ttl or cfg.pairing_code_ttl_s, created_by="cli")
    except (Problem, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"pairing code (shown once): {code.code}\ndevice: {code.device_id}\nexpires: {code.expires_at.isoformat()}")


@enrol_app.command("revoke")
def cmd_enrol_revoke(
    credential_id: Annotated[str, typer.Argument(help="The credential id printed at enrolment.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept with the revocation).")] = None,
) -> None:
    """Revoke a device credential."""
    from ingest.enrolment import revoke

    async def run(store: Any, pub: Any, pepper: bytes) -> Any:
        return await revoke(store, _emitter(pub), credential_id, None, reason)

    _with_services(run, publisher=True)
    print("revoked")


@enrol_app.command("list")
def cmd_enrol_list(clinic: Annotated[str | None, typer.Option(help="Only this clinic's devices.")] = None) -> None:
    """List enrolments."""

    async def run(store: Any, _: Any, pepper: bytes) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await store.list_credentials(clinic)
        return rows

    for r in _with_services(run):
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "live"
        print(f"{r['credential_id']}  {r['device_id']:<24} {r['clinic_id']:<16} {state}")


def register(app: typer.Typer) -> None:
    """Add the gateway's commands to the `rtm` app."""
    app.command("gateway")(cmd_gateway)
    app.add_typer(clinic_key, name="clinic-key")
    app.add_typer(enrol_app, name="enrol")


def main(argv: list[str] | None = None) -> int:
    """The gateway's commands on their own (as `rtm` runs them)."""
    own = new_app("The ingest gateway's commands.")
    register(own)
    return run_app(own, argv)


if __name__ == "__main__":
    sys.exit(main())
