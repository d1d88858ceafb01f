"""The `rtm` command line: version, help with defaults, benchmarks listed, pass-through to tools,
user errors as one line with a non-zero exit, tracebacks only with --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.main import BENCHMARKS, app, main
from rtm.settings import PROJECT_ROOT

runner = CliRunner()


def rtm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point, as a user runs it."""
    return subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "rtm"), *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=PROJECT_ROOT)


def test_version() -> None:
    done = rtm("--version")
    assert done.returncode == 0 and done.stdout.startswith("rtm ") and done.stdout.split()[1][0].isdigit()


def test_bench_help_lists_every_benchmark() -> None:
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    for name, (_, text) in BENCHMARKS.items():
        assert name in result.output and text.split()[0] in result.output


def test_every_option_has_help_and_shows_its_default() -> None:
    command = typer.main.get_command(app)

    def walk(cmd: typer.core.TyperGroup | typer.core.TyperCommand, path: str) -> None:
        for param in cmd.params:
            if param.param_type_name == "option" and param.name not in ("help",):
                assert getattr(param, "help", None), f"{path} --{param.name} has no help"
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(command, "rtm")  # type: ignore[arg-type]
    result = runner.invoke(app, ["run", "--help"])
    assert "default: 50" in result.output and "default: 45" in result.output


def test_unknown_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "no-such-bench"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_bench_passes_its_arguments_through(capsys: pytest.CaptureFixture[str]) -> None:
    """`rtm bench NAME ARGS...`: the benchmark parses its own options (here --help, argparse's)."""
    assert main(["bench", "encoding", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage:" in out.lower() and "encoding" in out.lower()


def test_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    """An empty state folder has no generated passwords: one clear line, exit 1; --debug: traceback."""
    env = {"PATH": "/usr/bin:/bin", "RTM_STATE_DIR": str(tmp_path / "state"), "RTM_PG_PORT": "1"}
    plain = rtm("migrate", env=env)
    assert plain.returncode == 1
    assert plain.stderr.startswith("rtm: ") and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert "password" in plain.stderr and "Traceback" not in plain.stderr
    debug = rtm("--debug", "migrate", env=env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_faults_passes_its_arguments_through() -> None:
    done = subprocess.run([sys.executable, "-m", "cli.main", "faults", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0 and "--only" in done.stdout  # the tool's own argparse help


@pytest.mark.parametrize("vendor", ["polar", "google-health", "oura", "withings", "garmin"])
def test_vendor_fake_serves_each_vendor(vendor: str) -> None:
    """`rtm vendor fake V` serves the vendor's local fake over HTTP and says where."""
    import httpx

    from rtm.stack.broker import free_port

    port = free_port()
    exe = str(Path(sys.executable).with_name("rtm"))
    proc = subprocess.Popen([exe, "vendor", "fake", vendor, "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"{vendor} fake on http://127.0.0.1:{port}"), line
        # An HTTP answer from the fake's own app (it has no page at /).
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert r.status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
