"""What every part's command line shares: typer apps with the project's conventions, and running
one so that an error ends as one line and an exit code (the traceback only with `--debug`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer

# Commands whose arguments go untouched to a tool that parses its own options (--help included).
PASS_THROUGH: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


class DebugFlag:
    """Set by `rtm --debug`: errors then raise with their traceback."""

    on = False


def new_app(help: str) -> typer.Typer:
    """A typer app with the project's conventions: help on a bare group, no shell-completion
    options, no pretty tracebacks (errors are one line unless --debug)."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def exit_with(code: int) -> None:
    """End a command with this exit code (commands call the parts' functions that return one)."""
    if code:
        raise typer.Exit(code)


def one_line(exc: BaseException) -> str:
    """An error as one line: its message (or its type when it has none), never a traceback."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def run_app(application: typer.Typer, argv: Sequence[str] | None = None, prog: str = "rtm") -> int:
    """Run a typer app and return its exit code. Usage errors print typer's usage and message (exit
    2); any other error one line on stderr (exit 1), or its traceback after `--debug`."""
    args = list(sys.argv[1:] if argv is None else argv)
    DebugFlag.on = False  # the root callback sets it once the options are parsed
    try:
        application(args=args, prog_name=prog)  # standalone: ends in SystemExit, or raises the error
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):  # a part that exits with a message
            print(f"{prog}: {exc.code}", file=sys.stderr)
            return 1
        return int(exc.code or 0)
    except Exception as exc:
        if DebugFlag.on:
            raise
        print(f"{prog}: {one_line(exc)}", file=sys.stderr)
        return 1
