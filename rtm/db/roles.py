"""The four login roles, the database and the TimescaleDB extension: what a superuser creates
once, before the owner role migrates. The local stack (`rtm up`) and production
(`rtm provision database`) run the same statements; only where the passwords come from differs
(generated into the state folder locally, from secrets in production)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from rtm.db import Role
from rtm.settings import Settings

ROLES: tuple[Role, ...] = ("owner", "writer", "reader", "app")
AdminConnect = Callable[[str], psycopg.Connection[Any]]  # database name -> autocommit superuser connection


def ensure_roles_and_database(
    admin: AdminConnect, admin_database: str, settings: Settings, passwords: Mapping[Role, str]
) -> None:
    """Create or update (passwords rotate by running it again) the roles, create the database owned
    by the owner role, the extension (which needs a superuser), and least privilege on connecting."""
    with admin(admin_database) as conn:
        for role in ROLES:
            name = getattr(settings, f"pg_{role}_user")
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
            verb = "alter" if exists else "create"
            # The clinic app's role is confined by row-level security; the services' roles serve
            # every clinic (and COPY, which row-level security forbids): see the clinic app's migration.
            rls = "nobypassrls" if role in ("app", "owner") else "bypassrls"
            conn.execute(
                sql.SQL("{} role {} login {} password {}").format(
                    sql.SQL(verb), sql.Identifier(name), sql.SQL(rls), sql.Literal(passwords[role])
                )
            )
        if not conn.execute("select 1 from pg_database where datname = %s", (settings.pg_database,)).fetchone():
            conn.execute(
                sql.SQL("create database {} owner {}").format(
                    sql.Identifier(settings.pg_database), sql.Identifier(settings.pg_owner_user)
                )
            )
    with admin(settings.pg_database) as conn:
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
