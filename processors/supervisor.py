"""Start, stop and supervise worker processes (the main job, tests and benchmarks run real workers).

`Supervisor` is the local stack's own: it keeps N workers running (`rtm worker --supervise`, the
main job), restarting one that exits or stops answering `/live/`, with back-off. In production
systemd or Kubernetes does the same job (deploy/systemd, deploy/kubernetes)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from processors.worker import SUPERVISOR_PID_ENV
from rtm.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def ready(self) -> bool:
        return self._probe("ready")

    def live(self) -> bool:
        return self._probe("live")

    def _probe(self, what: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{what}/", timeout=2):
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
        if self.proc.poll() is None:
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
                 loglevel: str = "warning", wait: bool = True, supervisor_pid: int | None = None) -> WorkerProcess:
    port = port or settings.worker_web_port
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = settings.state_dir / f"worker-{settings.app_id}-{port}.log"
    env = settings_env(settings) | {"RTM_WORKER_WEB_PORT": str(port)}
    if supervisor_pid is not None:
        env[SUPERVISOR_PID_ENV] = str(supervisor_pid)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--loglevel", loglevel],
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


@dataclass
class _Slot:
    port: int
    worker: WorkerProcess | None = None
    started: float = 0.0
    failures: int = 0  # consecutive short-lived runs, for the back-off
    not_before: float = 0.0
    dead_probes: int = 0


@dataclass
class Supervisor:
    """Keeps `count` workers running: one that exits (crash, broker restart, OOM kill) or stops
    answering /live/ is restarted, after a back-off that grows while it keeps failing soon after
    starting (so a worker that cannot start does not spin)."""

    settings: Settings
    count: int = 1
    loglevel: str = "warning"
    ports: list[int] = field(default_factory=list)
    check_interval_s: float = 1.0
    start_grace_s: float = 120.0  # a starting worker has this long to answer /live/
    dead_after: int = 3  # failed /live/ probes in a row
    healthy_after_s: float = 60.0  # a run this long resets the back-off
    max_backoff_s: float = 30.0
    restarts: int = 0
    _slots: list[_Slot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, wait: bool = True, wait_s: float = 90.0) -> Supervisor:
        ports = self.ports or [self.settings.worker_web_port + i for i in range(self.count)]
        self._slots = [_Slot(port) for port in ports]
        for slot in self._slots:
            self._spawn(slot)
        if wait:
            wait_ready(self.workers, wait_s)
        self._thread = threading.Thread(target=self._monitor, name="supervisor", daemon=True)
        self._thread.start()
        return self

    @property
    def workers(self) -> list[WorkerProcess]:
        return [s.worker for s in self._slots if s.worker is not None]

    def _spawn(self, slot: _Slot) -> None:
        slot.worker = start_worker(self.settings, port=slot.port, loglevel=self.loglevel, wait=False,
                                   supervisor_pid=os.getpid())
        slot.started = time.monotonic()
        slot.dead_probes = 0

    def _monitor(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            for slot in self._slots:
                self._check(slot)

    def _check(self, slot: _Slot) -> None:
        now = time.monotonic()
        w = slot.worker
        if w is not None and w.proc.poll() is None:
            if now - slot.started < self.start_grace_s and slot.dead_probes == 0 and not w.live():
                return  # still starting
            slot.dead_probes = 0 if w.live() else slot.dead_probes + 1
            if slot.dead_probes < self.dead_after:
                return
            log.error("worker on port %d does not answer /live/; killing it", slot.port)
            w.kill()
        if w is not None:
            ran = now - slot.started
            slot.failures = 0 if ran > self.healthy_after_s else slot.failures + 1
            delay = min(self.max_backoff_s, 2.0 ** (slot.failures - 1)) if slot.failures else 0.0
            slot.not_before = now + delay
            log.warning("worker on port %d exited with %s after %.0f s; restarting in %.0f s (see %s)",
                        slot.port, w.proc.returncode, ran, delay, w.log)
            slot.worker = None
        if slot.worker is None and now >= slot.not_before and not self._stop.is_set():
            self._spawn(slot)
            self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            w.stop(timeout=self.settings.worker_stop_timeout_s + 5)


def supervise(settings: Settings, count: int, loglevel: str) -> int:
    """`rtm worker --supervise`: run `count` workers until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sup = Supervisor(settings, count=count, loglevel=loglevel).start(wait=False)
    print(f"supervising {count} worker(s) on port(s) {', '.join(str(w.port) for w in sup.workers)}", flush=True)
    stop.wait()
    sup.stop()
    return 0
