"""Therapist time entries, timers and billing summaries (the eligibility part's router) for clinic
API keys: the gateway supplies the authenticated clinic, the audit actor and the connections."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
from fastapi import Header, Request

from eligibility.api import Caller, eligibility_router
from ingest.problems import Problem
from ingest.state import gateway

# Who at the clinic acted (a practitioner id, a user name): stored in the audit trail, never logged.
_ACTOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


async def clinic_caller(
    request: Request,
    x_actor: Annotated[
        str | None,
        Header(
            description="who at the clinic acts (e.g. the therapist's id; 1-64 of A-Z a-z 0-9 . _ @ + -), "
            "recorded in the audit trail as `clinic-key:<key id>/<X-Actor>`"
        ),
    ] = None,
) -> Caller:
    """A clinic API key (401 without a valid one, 403 for a device credential); the actor is the key,
    plus the person the clinic's system names in X-Actor (asserted by the clinic, vouched for by the key)."""
    clinic = await gateway(request).auth.clinic(request)
    actor = f"clinic-key:{clinic.key_id}"
    if x_actor is not None:
        if not _ACTOR.match(x_actor):
            raise Problem(
                422,
                "invalid-request",
                "X-Actor must be 1-64 characters of A-Z a-z 0-9 . _ @ + - starting with a letter or digit",
            )
        actor += f"/{x_actor}"
    return Caller(clinic.clinic_id, actor)


def writer(request: Request) -> Iterator[psycopg.Connection[Any]]:
    with gateway(request).sync_db.writer() as conn:
        yield conn


def reader(request: Request) -> Iterator[psycopg.Connection[Any]]:
    with gateway(request).sync_db.reader() as conn:
        yield conn


router = eligibility_router(writer, reader, clinic_caller, prefix="/v1")
