"""`rtm provision database|topics`: the one-shot jobs of a production deployment (compose's
`migrate` and `topics` services, the Kubernetes migration Job), also usable by hand.

- `database`: as a superuser (RTM_PG_ADMIN_USER / RTM_PG_ADMIN_PASSWORD), create or update the three
  login roles with the passwords from RTM_PG_{OWNER,WRITER,READER}_PASSWORD, the database owned by
  the owner role and the TimescaleDB extension; then apply pending migrations as the owner role.
  Running it again rotates the passwords to the current secrets and migrates what is new.
- `topics`: create every topic of `rtm/topics.py` (faust's own included) with its partition count
  and RTM_TOPIC_REPLICATION; a topic that exists with another partition count is an error.

On the local stack (`rtm up` already did both) it uses the local superuser and passwords.
"""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from typing import Annotated, Any

import psycopg
import typer

from rtm import production
from rtm.settings import Settings, get_settings


def _admin_connect(settings: Settings) -> Any:
    def connect(dbname: str) -> psycopg.Connection[Any]:
        info = settings.conninfo(settings.pg_admin_user, settings.pg_admin_password, dbname, "rtm-provision")
        return psycopg.connect(info, autocommit=True, connect_timeout=int(settings.pg_connect_timeout_s))

    return connect


def provision_database(settings: Settings) -> list[str]:
    """Roles, database, extension, then migrations; return the migrations applied."""
    from rtm.db.migrate import migrate
    from rtm.db.roles import ROLES, ensure_roles_and_database

    production.check("migrate", settings)
    if settings.pg_admin_password is None and settings.environment == "local":
        from rtm.stack import postgres

        postgres.ensure_database(settings)
    else:
        passwords = {role: settings.role_password(role) for role in ROLES}
        assert set(passwords) == set(ROLES)
        ensure_roles_and_database(_admin_connect(settings), settings.pg_admin_database, settings, passwords)
    return migrate(settings)


def provision_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return their names."""
    from rtm.kafka import forbid_topic_auto_creation
    from rtm.stack.broker import ensure_topics

    production.check("topics", settings)
    forbid_topic_auto_creation()
    return asyncio.run(ensure_topics(settings))


class Target(StrEnum):
    database = "database"
    topics = "topics"


def provision(what: Annotated[Target, typer.Argument(help="database: roles from secrets, then migrate; topics: "
                                                          "create every topic with its partitions")]) -> None:
    """Production one-shot jobs: the database (roles from secrets, then migrate) or the topics."""
    settings = get_settings()
    try:
        if what is Target.database:
            applied = provision_database(settings)
            print("provision: database ready; migrations " + (", ".join(applied) if applied else "up to date"))
        else:
            created = provision_topics(settings)
            print("provision: topics " + (", ".join(created) if created else "all present"))
    except (production.ProductionConfigError, psycopg.OperationalError, RuntimeError) as exc:
        print(f"rtm provision {what.value}: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    app.command("provision")(provision)
