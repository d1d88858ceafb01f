"""The local PostgreSQL 15 + TimescaleDB cluster: build (cached), init, start, stop, status.

The cluster runs as the unprivileged `postgres` OS user when we are root (initdb refuses root),
listens on 127.0.0.1 only, and authenticates every role by password (scram-sha-256). Passwords are
generated on first start into the state folder, which is git-ignored.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from rtm.settings import PROJECT_ROOT, Settings

BUILD_SCRIPT = PROJECT_ROOT / "deploy" / "local" / "build_timescaledb.sh"
PG_MAJOR = "15"
ADMIN_USER = "rtm_admin"
ROLES = ("owner", "writer", "reader", "app")


class StackError(RuntimeError):
    """A local service could not be brought to the requested state."""


@dataclass(frozen=True)
class PgStatus:
    running: bool
    detail: str


def _run_as_service_user() -> list[str]:
    """Prefix for commands that must not run as root."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _service_uid_gid() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise StackError("running as root needs a 'postgres' OS user to own the cluster") from exc
    return entry.pw_uid, entry.pw_gid


def build_prefix() -> Path:
    """Run (or reuse the cached result of) the TimescaleDB build; return its prefix."""
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackError(f"TimescaleDB build failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def bin_dir(prefix: Path) -> Path:
    return prefix / "usr" / "lib" / "postgresql" / PG_MAJOR / "bin"


def _accessible_by_service_user(path: Path) -> bool:
    cmd = _run_as_service_user()
    if not cmd:
        return True
    return subprocess.run([*cmd, "test", "-x", str(path)], check=False).returncode == 0


def cluster_dir(settings: Settings) -> Path:
    """Where the cluster lives: in the state folder, or (when the project sits somewhere the
    service user cannot reach, e.g. under a private home) in /var/lib/rtm, linked from there."""
    link = settings.pg_dir / "cluster"
    settings.pg_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        return link.resolve()
    ids = _service_uid_gid()
    if _accessible_by_service_user(settings.pg_dir):
        link.mkdir()
        target = link
    else:
        digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
        target = Path("/var/lib/rtm") / digest
        target.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    if ids:
        os.chown(target, *ids)
    return target


def write_secret(path: Path, text: str) -> None:
    """Create `path` readable by its owner only from the first byte on (never world-readable, not
    even between a write and a chmod); an existing file is replaced."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _password(settings: Settings, name: str) -> str:
    settings.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings.secrets_dir / f"pg_{name}_password"
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(24))
    return path.read_text().strip()


def _write_conf(data: Path, settings: Settings, sock: Path) -> None:
    conf = f"""
# --- written by rtm up; local development cluster ---
listen_addresses = '127.0.0.1'
port = {settings.pg_port}
unix_socket_directories = '{sock}'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = '512MB'
work_mem = '16MB'
maintenance_work_mem = '128MB'
password_encryption = 'scram-sha-256'
log_min_duration_statement = -1
"""
    (data / "postgresql.auto.conf").write_text(conf)
    (data / "pg_hba.conf").write_text(
        "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )


def admin_connect(settings: Settings, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=settings.pg_host,
        port=settings.pg_port,
        dbname=dbname,
        user=ADMIN_USER,
        password=_password(settings, "admin"),
        autocommit=True,
        connect_timeout=5,
    )


def status(settings: Settings) -> PgStatus:
    try:
        with admin_connect(settings) as conn:
            row = conn.execute("select current_setting('server_version')").fetchone()
            return PgStatus(True, f"PostgreSQL {row[0] if row else '?'} on {settings.pg_host}:{settings.pg_port}")
    except (psycopg.OperationalError, RuntimeError) as exc:
        return PgStatus(False, str(exc).strip().splitlines()[0] if str(exc) else "not running")


def _port_in_use(settings: Settings) -> bool:
    try:
        with socket.create_connection((settings.pg_host, settings.pg_port), timeout=0.5):
            return True
    except OSError:
        return False


def up(settings: Settings) -> PgStatus:
    current = status(settings)
    if current.running:
        ensure_database(settings)
        return current
    if _port_in_use(settings):
        raise StackError(
            f"port {settings.pg_port} is taken by a server this project cannot log in to (another clone's "
            f"cluster?): stop it or choose another port with RTM_PG_PORT ({current.detail})"
        )
    prefix = build_prefix()
    bins = bin_dir(prefix)
    root = cluster_dir(settings)
    data, sock, log = root / "data", root / "run", root / "postgres.log"
    ids = _service_uid_gid()
    as_user = _run_as_service_user()
    if not (data / "PG_VERSION").exists():
        pwfile = root / "initdb.pw"
        write_secret(pwfile, _password(settings, "admin") + "\n")
        if ids:
            os.chown(pwfile, *ids)
        try:
            proc = subprocess.run(
                [*as_user, str(bins / "initdb"), "-D", str(data), "-U", ADMIN_USER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
                capture_output=True, text=True, check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            raise StackError(f"initdb failed:\n{proc.stderr[-2000:]}")
    sock.mkdir(exist_ok=True)
    if ids:
        os.chown(sock, *ids)
    _write_conf(data, settings, sock)
    proc = subprocess.run(
        [*as_user, str(bins / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"],
        capture_output=True, text=True, check=False, start_new_session=True,
    )
    if proc.returncode != 0:
        tail = log.read_text()[-2000:] if log.exists() else proc.stderr
        raise StackError(f"PostgreSQL did not start:\n{tail}")
    deadline = time.monotonic() + 30
    while not (current := status(settings)).running:
        if time.monotonic() > deadline:
            raise StackError(f"PostgreSQL started but refuses connections: {current.detail}")
        time.sleep(0.2)
    ensure_database(settings)
    return current


def _pid_alive(data: Path) -> bool:
    pidfile = data / "postmaster.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().splitlines()[0]), 0)
        return True
    except (ValueError, ProcessLookupError, IndexError):
        return False
    except PermissionError:
        return True


def ensure_database(settings: Settings) -> None:
    """Roles with least privilege, the database, and the extension (which needs a superuser)."""
    with admin_connect(settings) as conn:
        for role in ROLES:
            name = getattr(settings, f"pg_{role}_user")
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
            verb = "alter" if exists else "create"
            # The clinic app's role is confined by row-level security; the services' roles serve
            # every clinic (and COPY, which row-level security forbids), see migration 0600.
            rls = "nobypassrls" if role in ("app", "owner") else "bypassrls"
            conn.execute(
                sql.SQL("{} role {} login {} password {}").format(
                    sql.SQL(verb), sql.Identifier(name), sql.SQL(rls), sql.Literal(_password(settings, role))
                )
            )
        if not conn.execute("select 1 from pg_database where datname = %s", (settings.pg_database,)).fetchone():
            conn.execute(
                sql.SQL("create database {} owner {}").format(
                    sql.Identifier(settings.pg_database), sql.Identifier(settings.pg_owner_user)
                )
            )
    with admin_connect(settings, settings.pg_database) as conn:
        conn.execute("create extension if not exists timescaledb")
        conn.execute(
            sql.SQL("revoke all on database {} from public").format(sql.Identifier(settings.pg_database))
        )
        for role in ("writer", "reader", "app"):
            conn.execute(
                sql.SQL("grant connect on database {} to {}").format(
                    sql.Identifier(settings.pg_database), sql.Identifier(getattr(settings, f"pg_{role}_user"))
                )
            )


def down(settings: Settings) -> None:
    link = settings.pg_dir / "cluster"
    if not link.exists():
        return
    data = link.resolve() / "data"
    if not _pid_alive(data):
        return
    prefix = build_prefix()
    subprocess.run(
        [*_run_as_service_user(), str(bin_dir(prefix) / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
        capture_output=True, text=True, check=False,
    )


def destroy(settings: Settings) -> None:
    """Stop and delete the cluster's data (used by `rtm down --purge`)."""
    down(settings)
    link = settings.pg_dir / "cluster"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()
    else:
        shutil.rmtree(link, ignore_errors=True)
