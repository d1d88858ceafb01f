"""`rtm app ...`: serve the clinic web app, create staff accounts, seed a demo clinic."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

app = typer.Typer(name="app", help="The clinic web app (dashboards/).", no_args_is_help=True, add_completion=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (RTM_APP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (RTM_APP_PORT)")] = None,
) -> None:
    """Serve the app (uvicorn)."""
    import uvicorn

    from dashboards.settings import get_app_settings
    from dashboards.web import create_app

    a = get_app_settings()
    uvicorn.run(create_app(app_settings=a), host=host or a.host, port=port or a.port, log_level="info")


@app.command("add-staff")
def add_staff(
    clinic: Annotated[str, typer.Option(help="clinic id")],
    email: Annotated[str, typer.Option(help="sign-in e-mail address")],
    name: Annotated[str, typer.Option(help="display name")],
    role: Annotated[str, typer.Option(help="therapist | assistant | biller | admin")],
    discipline: Annotated[str | None, typer.Option(help="PT | OT | SLP (therapists, assistants)")] = None,
    npi: Annotated[str | None, typer.Option(help="10-digit NPI (therapists)")] = None,
    staff_id: Annotated[str | None, typer.Option(help="default: derived from the e-mail")] = None,
) -> None:
    """Create a staff account; the password is asked for (at least 12 characters)."""
    from pydantic import ValidationError

    from dashboards.auth import NewStaff, create_staff
    from rtm.db import connect

    password = getpass.getpass("password: ")
    try:
        new = NewStaff.model_validate({
            "staff_id": staff_id or email.split("@")[0].replace("+", "-"), "clinic_id": clinic, "email": email,
            "display_name": name, "role": role, "discipline": discipline, "npi": npi, "password": password})  # fmt: skip
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    with connect("app", autocommit=True) as conn:
        staff = create_staff(conn, new)
    typer.echo(f"created {staff.role} {staff.staff_id} ({staff.email}) in clinic {staff.clinic_id}")


@app.command()
def demo(
    clinic: Annotated[str, typer.Option(help="clinic id")] = "demo-clinic",
    patients: Annotated[int, typer.Option(min=1, help="patients in the demo clinic")] = 40,
    days: Annotated[int, typer.Option(min=7, help="days of data per patient")] = 90,
) -> None:
    """Seed a demo clinic (staff and patients with device data) and print the sign-ins."""
    from dashboards import demo as d
    from rtm.db.migrate import migrate
    from rtm.settings import get_settings
    from rtm.stack import postgres

    s = get_settings()
    postgres.up(s)
    migrate(s)
    staff = d.ensure_staff(s, clinic, d.demo_password(s))
    d.seed_patients(s, clinic, staff.staff_id("therapist"), patients, days)
    for role in d.ROLES:
        typer.echo(f"{role:10s} {staff.email(role)}")
    typer.echo(f"password   {staff.password}")


@app.command()
def alerts(
    once: Annotated[bool, typer.Option("--once", help="one round, then exit")] = False,
) -> None:
    """Send the clinics' alerts for new high-severity flags (webhook, e-mail digest), every
    RTM_APP_ALERT_INTERVAL_S seconds (or once)."""
    import time

    import psycopg

    from dashboards import alerts as al
    from dashboards.settings import get_app_settings
    from rtm.db import connect
    from rtm.retrying import Backoff

    a = get_app_settings()
    # A connection per round: a database restart between rounds costs nothing. One that is away
    # is waited for with back-off and said so; `--once` (a cron job) fails instead.
    backoff = Backoff(initial_s=1.0, max_s=a.alert_interval_s)
    while True:
        try:
            with connect("writer", autocommit=True) as conn:
                stats = al.run_round(conn, a)
        except psycopg.OperationalError as exc:
            if once:
                raise
            delay = backoff.next()
            typer.echo(f"alerts: the database is unavailable ({type(exc).__name__}); trying again in "
                       f"{delay:.0f} s", err=True)
            time.sleep(delay)
            continue
        backoff.reset()
        typer.echo(f"alerts: {stats.planned} planned, {stats.sent} sent, {stats.retried} to retry, "
                   f"{stats.failed} given up")
        if once:
            return
        time.sleep(a.alert_interval_s)


def main(argv: list[str]) -> int:
    try:
        app(args=argv, prog_name="rtm app", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:  # click's usage errors: print them as click would
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0
