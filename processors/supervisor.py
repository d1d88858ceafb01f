"""Start and stop worker processes (the main job, tests and benchmarks run real workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rtm.settings import Settings


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """Die without any clean-up, as a crashed or OOM-killed worker would."""
        self.proc.kill()
        self.proc.wait()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see the same settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"RTM_{name.upper()}"] = str(value)
    return env


def start_worker(settings: Settings, port: int | None = None, wait_s: float = 90.0,
                 loglevel: str = "warning", wait: bool = True) -> WorkerProcess:
    port = port or settings.worker_web_port
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / f"worker-{settings.app_id}-{port}.log"
    env = settings_env(settings) | {"RTM_WORKER_WEB_PORT": str(port)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtm.cli", "worker", "--loglevel", loglevel],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    worker = WorkerProcess(proc, port, log)
    if wait:
        wait_ready([worker], wait_s)
    return worker


def wait_ready(workers: list[WorkerProcess], wait_s: float = 90.0) -> None:
    """Until every worker has joined its group and restored its tables (all at once: workers of
    one group started one by one would each wait out the next one's rebalance)."""
    deadline = time.monotonic() + wait_s
    while not all(w.ready() for w in workers):
        for w in workers:
            if w.proc.poll() is not None or time.monotonic() > deadline:
                for other in workers:
                    other.stop()
                raise RuntimeError(f"worker did not become ready; see {w.log}")
        time.sleep(0.2)
