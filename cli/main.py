"""`rtm`: the one command-line entry point (typer). Each part registers its own subcommands here.

Errors a user can cause (a stack that is not up, a missing password, an unknown id, a refused
time entry) end as one line on stderr and a non-zero exit; `rtm --debug ...` shows the traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from rtm.cliutil import PASS_THROUGH, DebugFlag, exit_with, new_app, run_app
from rtm.settings import get_settings

# name -> ("module:function" taking argv and returning an exit code, what it measures). Imported
# lazily so that a quick command (status) does not pay for numpy/scipy/faust imports.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "encoding": ("tools.bench.encoding:main", "encode+decode of IMU batches: binary frame vs JSON"),
    "signal": ("tools.bench.signal_processing:main", "signal processing accuracy and throughput"),
    "ingest": ("tools.bench.ingest:main", "gateway throughput and latency on loopback"),
    "pipeline": ("tools.bench.pipeline:main", "IMU samples/s and latency, produce -> worker -> database"),
    "eligibility": ("tools.bench.eligibility:main", "recompute RTM eligibility for 10,000 patients x 90 days"),
    "dashboards": ("tools.bench.dashboards:main", "clinic app server time: queue, patient page, billing; 500 patients"),
    "hub": ("tools.bench.hub:main", "virtual BLE devices through one hub agent, killed mid-upload"),
}


def _load(target: str) -> Callable[[list[str]], int]:
    module, _, func = target.partition(":")
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return fn


def _version() -> str:
    try:
        return version("rtm-pipeline")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


app = new_app("Remote Therapeutic Monitoring pipeline: the local stack, workers, gateway, billing, tools.")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"rtm {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
) -> None:
    DebugFlag.on = debug


@app.command()
def up() -> None:
    """Start the local stack (database, broker) and create the topics."""
    from rtm import stack

    for line in stack.up(get_settings()):
        typer.echo(f"up: {line}")


@app.command()
def down(purge: Annotated[bool, typer.Option(help="Also delete the local database.")] = False) -> None:
    """Stop the local stack."""
    from rtm import stack

    stack.down(get_settings(), purge=purge)
    typer.echo("down: stopped" + (" and deleted the database" if purge else ""))


@app.command()
def status() -> None:
    """Show whether the local services are up (exit 1 when one is down)."""
    from rich.console import Console
    from rich.table import Table

    from rtm import stack

    states = stack.status(get_settings())
    table = Table("service", "state", "detail", box=None)
    for name, (running, detail) in states.items():
        table.add_row(name, "[green]up[/]" if running else "[red]down[/]", detail)
    Console().print(table)
    exit_with(0 if all(r for r, _ in states.values()) else 1)


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from rtm.db.migrate import migrate as apply

    applied = apply(get_settings())
    typer.echo("migrate: " + (", ".join(applied) if applied else "up to date"))


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="faust's log level (debug, info, warning, error).")] = "warning",
    supervise: Annotated[bool, typer.Option(
        help="Keep --workers workers running (web ports from RTM_WORKER_WEB_PORT up), restarting any that exits "
             "or stops answering /live/.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Workers to keep running with --supervise.")] = 1,
) -> None:
    """Run one stream-processing worker (faust), or supervise several."""
    if supervise:
        from processors.supervisor import supervise as run_supervised

        exit_with(run_supervised(get_settings(), workers, loglevel))
        return
    from processors.worker import run_worker

    exit_with(run_worker(loglevel=loglevel))


@app.command()
def run(
    patients: Annotated[int, typer.Option(min=1, help="Simulated patients in the cohort.")] = 50,
    days: Annotated[int, typer.Option(min=1, help="Days of data per patient.")] = 45,
    seed: Annotated[int, typer.Option(help="Seed of the simulated cohort (same seed, same cohort).")] = 7,
    via_ble: Annotated[int, typer.Option(min=0, metavar="N",
                                         help="Send N IMU sessions through virtual BLE devices and the hub agent.")]
    = 0,
) -> None:
    """The main job: stack, pipeline and a simulated cohort, end to end."""
    from cli.mainjob import run_main_job

    exit_with(run_main_job(patients=patients, days=days, seed=seed, via_ble=via_ble))


@app.command(context_settings=PASS_THROUGH, add_help_option=False)
def faults(ctx: typer.Context) -> None:
    """Run a simulated cohort through a private stack while injecting faults (rtm faults --help)."""
    exit_with(_load("tools.faults.main:main")(list(ctx.args)))


bench_app = new_app("Run a benchmark: a readable table, then one JSON line. Options after the name go to it "
                    "(rtm bench NAME --help).")


def _bench_command(name: str, target: str, text: str) -> None:
    def command(ctx: typer.Context) -> None:
        exit_with(_load(target)(list(ctx.args)))

    command.__doc__ = text
    bench_app.command(name, context_settings=PASS_THROUGH, add_help_option=False, help=text)(command)


for _name, (_target, _text) in sorted(BENCHMARKS.items()):
    _bench_command(_name, _target, _text)
app.add_typer(bench_app, name="bench")


def _register_parts() -> None:
    from cli.deadletters import register as register_deadletters
    from cli.provision import register as register_provision
    from cli.vendor import register as register_vendor
    from device_adapters.hub.cli import register as register_hub
    from eligibility.cli import register as register_eligibility
    from ingest.cli import register as register_ingest

    register_ingest(app)
    register_eligibility(app)
    register_hub(app)
    register_provision(app)
    register_deadletters(app)
    register_vendor(app)
    from dashboards.cli import app as clinic_app

    app.add_typer(clinic_app, name="app")
    from dashboards.clinic_cli import register as register_clinic
    register_clinic(app)


_register_parts()


def main(argv: Sequence[str] | None = None) -> int:
    return run_app(app, argv)


if __name__ == "__main__":
    sys.exit(main())
