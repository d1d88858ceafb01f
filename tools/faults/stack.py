"""The private stack a fault run breaks: a PostgreSQL + TimescaleDB cluster of its own (set up by
the project's own scripts in a folder of its own, on a free port), its own Tansu broker, the real
gateway (`rtm gateway`) and real `rtm worker` processes. The configured local stack is never
touched: stopping this database or broker disturbs nobody else."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from processors.supervisor import WorkerProcess, settings_env, start_worker, wait_ready
from rtm.db.migrate import migrate
from rtm.settings import Settings
from rtm.stack import postgres
from rtm.stack.broker import PrivateBroker, free_port


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status code of a GET, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (Linux /proc), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        return http_status(f"{self.url}/readyz") == 200

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_gateway(settings: Settings, port: int, extra_env: dict[str, str], wait_s: float = 60.0,
                  wait: bool = True) -> GatewayProcess:
    """`rtm gateway` as a child process on 127.0.0.1:port, with the settings' database and broker."""
    log = settings.state_dir / f"gateway-{port}.log"
    env = settings_env(settings) | {"RTM_GATEWAY_HOST": "127.0.0.1", "RTM_GATEWAY_PORT": str(port)} | extra_env
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "gateway"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    gw = GatewayProcess(proc, port, log)
    deadline = time.monotonic() + wait_s
    while wait and not gw.ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            gw.stop()
            raise RuntimeError(f"the gateway did not become ready; see {log}")
        time.sleep(0.2)
    return gw


@dataclass
class Takeover:
    """A worker killed and its replacement: when the replacement answered /ready/ (joined its
    group, every partition assigned and sought to its committed offset, tables restored)."""

    killed_at: float  # time.monotonic()
    worker: WorkerProcess
    ready_at: float | None = None

    def watch(self, poll_s: float = 0.2, wait_s: float = 300.0) -> None:
        """In a thread of its own from the kill on: the moment the replacement first answers ready."""
        while self.worker.proc.poll() is None and time.monotonic() - self.killed_at < wait_s:
            if self.worker.ready():
                self.ready_at = time.monotonic()
                return
            time.sleep(poll_s)


@dataclass
class FaultStack:
    """One private cluster for the whole command; per run (clean, faults, soak) a fresh database,
    a fresh broker (memory storage: nothing carries over) and fresh services."""

    base: Settings
    root: Path
    n_workers: int = 1
    gateway_env: dict[str, str] = field(default_factory=dict)
    worker_overrides: dict[str, object] = field(default_factory=dict)
    settings: Settings = field(init=False)
    broker: PrivateBroker | None = None
    gateway: GatewayProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    takeovers: list[Takeover] = field(default_factory=list)
    # Workers started during a fault (replacements, revived ones) that have not yet been ready.
    starting: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings = self.base.model_copy(
            update={"state_dir": self.root.resolve(), "pg_port": free_port(), "pg_database": "rtm_faults"}
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def start_cluster(self) -> None:
        postgres.up(self.settings)

    def begin_run(self, name: str) -> Settings:
        """A fresh migrated database and a fresh broker; gateway and workers on them."""
        db = f"rtm_faults_{name}_{uuid.uuid4().hex[:6]}"
        self.settings = self.settings.model_copy(
            update={"pg_database": db, "app_id": f"rtm-faults-{name}-{uuid.uuid4().hex[:6]}",
                    **self.worker_overrides}
        )
        postgres.ensure_database(self.settings)
        migrate(self.settings)
        self.broker = PrivateBroker(self.settings).start()
        self.settings = self.broker.settings
        self.gateway = start_gateway(self.settings, free_port(), self.gateway_env)
        self.workers = [start_worker(self.settings, port=free_port(), wait=False) for _ in range(self.n_workers)]
        wait_ready(self.workers)
        return self.settings

    def end_run(self) -> None:
        self.starting = []
        for w in self.workers:
            w.stop()
        self.workers = []
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def close(self, keep_logs: bool) -> None:
        """Stop everything and delete the cluster; the logs stay when asked (a failed run)."""
        self.end_run()
        postgres.destroy(self.settings)
        if keep_logs:
            shutil.rmtree(self.settings.secrets_dir, ignore_errors=True)
            shutil.rmtree(self.settings.pg_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- faults ---------------------------------------------------------------------------------
    def restart_broker(self, outage_s: float, hard: bool = False) -> None:
        """Stop the broker, wait, start it again on the same port. Memory storage: it comes back
        empty, and its topics are recreated the way `rtm up` does (rtm.stack.broker.ensure_topics)."""
        assert self.broker is not None
        port = self.broker.port
        self.broker.stop(hard=hard)
        time.sleep(outage_s)
        self.broker = PrivateBroker(self.settings, port=port).start()

    def restart_database(self, outage_s: float) -> None:
        """Stop the cluster (pg_ctl fast shutdown: sessions are cut), wait, start it again."""
        postgres.down(self.settings)
        time.sleep(outage_s)
        postgres.up(self.settings)

    def kill_worker(self, index: int = 0) -> None:
        """SIGKILL one worker, then start a replacement at once, as a process supervisor would."""
        victim = self.workers[index]
        victim.kill()
        killed_at = time.monotonic()
        self.workers[index] = start_worker(self.settings, port=free_port(), wait=False)
        self.starting.append(self.workers[index])
        takeover = Takeover(killed_at, self.workers[index])
        self.takeovers.append(takeover)
        threading.Thread(target=takeover.watch, name="takeover", daemon=True).start()

    def still_starting(self) -> bool:
        """Whether a worker started during a fault is alive and not yet ready: until it is, the
        pipeline is not back, so a wait without progress is start-up, not a verdict."""
        self.starting = [w for w in self.starting if w.proc.poll() is None and not w.ready()]
        return bool(self.starting)

    def restart_workers(self) -> None:
        """Replace every worker (SIGKILL: a stuck worker may ignore SIGTERM) and wait until ready."""
        for w in self.workers:
            w.kill()
        self.workers = [start_worker(self.settings, port=free_port(), wait=False) for _ in self.workers]
        self.starting = []
        wait_ready(self.workers)

    def restart_gateway(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the gateway (SIGTERM: in-flight requests finish) and start it again on its port."""
        assert self.gateway is not None
        port = self.gateway.port
        self.gateway.stop(sig)
        self.gateway = start_gateway(self.settings, port, self.gateway_env)

    def revive(self) -> list[str]:
        """Restart whatever died on its own (nothing on this branch restarts workers); say so."""
        notes = []
        for i, w in enumerate(self.workers):
            if w.proc.poll() is not None:
                notes.append(f"worker exited (rc {w.proc.returncode}), restarted")
                self.restarts["worker"] = self.restarts.get("worker", 0) + 1
                self.workers[i] = start_worker(self.settings, port=free_port(), wait=False)
                self.starting.append(self.workers[i])
        if self.gateway is not None and self.gateway.proc.poll() is not None:
            notes.append(f"gateway exited (rc {self.gateway.proc.returncode}), restarted")
            self.restarts["gateway"] = self.restarts.get("gateway", 0) + 1
            try:
                self.gateway = start_gateway(self.settings, self.gateway.port, self.gateway_env)
            except RuntimeError as exc:
                notes.append(str(exc))
        return notes

    def rss(self) -> dict[str, float]:
        """Resident memory (MiB) of the gateway, each worker and the broker."""
        out: dict[str, float] = {}
        procs: list[tuple[str, subprocess.Popen[bytes] | None]] = [
            ("gateway", self.gateway.proc if self.gateway else None),
            ("broker", self.broker.proc if self.broker else None),
            *((f"worker{i}", w.proc) for i, w in enumerate(self.workers)),
        ]
        for name, proc in procs:
            if proc is not None and (mib := rss_mib(proc.pid)) is not None:
                out[name] = mib
        return out

    def logs(self) -> list[Path]:
        return sorted(self.settings.state_dir.glob("*.log"))
