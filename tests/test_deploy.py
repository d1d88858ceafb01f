"""The deployment files agree with the code: the commands they run exist, the settings they set
exist, the probes ask the endpoints a worker serves (tests/pipeline/test_resilience.py asks a real
worker the same), and the stop limits outlast the worker's."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from typing import Any

import typer

from cli.main import app
from rtm.settings import PROJECT_ROOT, Settings

DEPLOY = PROJECT_ROOT / "deploy"


def parse_rtm(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The `rtm` subcommand a deployment runs and its parsed options (an unknown option fails)."""
    command = typer.main.get_command(app)
    name, *rest = argv
    sub = command.get_command(command.make_context("rtm", [name]), name)  # type: ignore[attr-defined]
    assert sub is not None, f"rtm has no command {name!r}"
    return name, dict(sub.make_context(name, rest).params)
WORKER_ENDPOINTS = {"/live/", "/ready/"}


def _settings_names() -> set[str]:
    return {f"RTM_{name.upper()}" for name in Settings.model_fields}


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_run_a_real_command_restart_always_and_outlast_the_stop_timeout() -> None:
    unit = _unit(DEPLOY / "systemd" / "rtm-worker@.service")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/rtm")
    name, params = parse_rtm(argv[1:])
    assert name == "worker" and not params["supervise"]
    assert service["Restart"] == "always"
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
    assert int(service["TimeoutStopSec"]) > Settings().worker_stop_timeout_s
    probe = _unit(DEPLOY / "systemd" / "rtm-worker-liveness@.service")["Service"]["ExecStart"]
    assert "/live/" in probe and "systemctl restart rtm-worker@%i.service" in probe
    timer = _unit(DEPLOY / "systemd" / "rtm-worker-liveness@.timer")["Timer"]
    assert timer["Unit"] == "rtm-worker-liveness@%i.service"


def test_systemd_environment_examples_name_only_real_settings() -> None:
    for example in (DEPLOY / "systemd").glob("*.env.example"):
        keys = {line.split("=", 1)[0] for line in example.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
        assert keys <= _settings_names(), (example.name, keys - _settings_names())
