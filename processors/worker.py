"""Run one faust worker for the processors app (`rtm worker`)."""

from __future__ import annotations

import processors.agents  # noqa: F401  (registers the agents)
from processors.app import app


def run_worker(loglevel: str = "warning") -> int:
    from faust.worker import Worker

    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0
