"""Run one faust worker for the processors app (`rtm worker`).

Before it consumes, the worker creates every topic its group needs (faust's changelogs included)
with the right partition counts. It exits promptly on SIGTERM (a graceful stop first, then a hard
exit after `RTM_WORKER_STOP_TIMEOUT_S`, since a thread blocked in a database call would otherwise
keep the process alive), exits if faust crashes rather than linger half-dead, and exits when its
supervisor (`rtm worker --supervise`) is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rtm import production
from rtm.kafka import forbid_topic_auto_creation
from rtm.settings import get_settings
from rtm.stack.broker import ensure_topics

log = logging.getLogger(__name__)
SUPERVISOR_PID_ENV = "RTM_SUPERVISOR_PID"
EXIT_STOP_TIMEOUT = 70  # EX_SOFTWARE: did not stop gracefully in time
EXIT_CRASHED = 70


def _hard_exit_after(delay_s: float, code: int, why: str) -> None:
    def expire() -> None:
        time.sleep(delay_s)
        log.error("%s: still running %.0f s later; exiting hard", why, delay_s)
        logging.shutdown()
        os._exit(code)

    threading.Thread(target=expire, name="hard-exit", daemon=True).start()


def _watchdog(app: Any, stop_timeout_s: float) -> None:
    """A thread outside the event loop: exits the process if faust crashed (or began stopping)
    and is still alive a stop timeout later, or if the supervisor that started it is gone."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    crashed_at: float | None = None
    while True:
        time.sleep(0.5)
        if supervisor and os.getppid() != int(supervisor):
            log.error("the supervisor (pid %s) is gone; stopping", supervisor)
            os.kill(os.getpid(), signal.SIGTERM)
            supervisor = None
        if app._crashed.is_set() and crashed_at is None:
            crashed_at = time.monotonic()
        if crashed_at is not None and time.monotonic() - crashed_at > stop_timeout_s:
            log.error("the worker crashed and did not exit; exiting hard")
            logging.shutdown()
            os._exit(EXIT_CRASHED)


def run_worker(loglevel: str = "warning") -> int:
    settings = get_settings()
    try:
        production.check("worker", settings)
    except production.ProductionConfigError as exc:
        print(f"rtm: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG: restarting will not help
    forbid_topic_auto_creation()
    # In a thread of its own: the worker's event loop must not exist yet.
    with ThreadPoolExecutor(1) as pool:
        created = pool.submit(asyncio.run, ensure_topics(settings, repair=settings.broker_flavour == "tansu")).result()
    if created:
        log.warning("created topics: %s", ", ".join(created))

    from faust.worker import Worker

    import processors.agents  # noqa: F401  (registers the agents)
    from processors.agents import guard
    from processors.app import app

    class RtmWorker(Worker):
        def _schedule_shutdown(self, signum: signal.Signals) -> None:
            if not self._signal_stop_time:
                _hard_exit_after(settings.worker_stop_timeout_s, EXIT_STOP_TIMEOUT, f"{signum.name} received")
            super()._schedule_shutdown(signum)

    threading.Thread(target=_watchdog, args=(app, settings.worker_stop_timeout_s), name="watchdog",
                     daemon=True).start()
    worker = RtmWorker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if guard.restart_requested:
            return guard.RESTART_EXIT_CODE
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
