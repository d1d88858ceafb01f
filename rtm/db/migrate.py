"""Ordered SQL migrations, applied once each and recorded with their checksums.

Files are `NNNN_name.sql` in rtm/db/migrations (each part may add its own, numbered after the
last one). `{writer}`, `{reader}` and `{app}` in a file stand for the configured role names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from psycopg import sql

from rtm.db import connect
from rtm.settings import Settings

LOCK_ID = 0x52544D  # advisory lock: one migrator at a time


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def available() -> list[Migration]:
    folder = Path(str(resources.files("rtm.db") / "migrations"))
    found = []
    for path in sorted(folder.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        if not number.isdigit():
            raise MigrationError(f"migration file {path.name} must start with its number (NNNN_name.sql)")
        found.append(Migration(int(number), name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations as the owner role; return the names applied."""
    applied_now: list[str] = []
    with connect("owner", settings, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (LOCK_ID,))
        try:
            conn.execute(
                """create table if not exists schema_migrations (
                       version integer primary key, name text not null, checksum text not null,
                       applied_at timestamptz not null default now())"""
            )
            done = {v: c for v, c in conn.execute("select version, checksum from schema_migrations")}
            for m in available():
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                            "add a new migration instead"
                        )
                    continue
                text = m.text.replace(
                    "{writer}", sql.Identifier(settings.pg_writer_user).as_string(conn)
                ).replace("{reader}", sql.Identifier(settings.pg_reader_user).as_string(conn)).replace(
                    "{app}", sql.Identifier(settings.pg_app_user).as_string(conn)
                )
                with conn.transaction():
                    conn.execute(text.encode())
                    conn.execute(
                        "insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                applied_now.append(f"{m.version:04d}_{m.name}")
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (LOCK_ID,))
    return applied_now
