"""Errors that carry their stable, machine-readable code (the `code` of an RFC 9457 problem).

Parts raise subclasses with the code as a class attribute; whoever answers a client maps codes to
statuses in one place (the gateway: `ingest/problems.py`). Nothing recovers a code from text.
"""

from __future__ import annotations

from typing import ClassVar


class CodedError(Exception):
    """An error with a stable `code`; its message is the human-readable detail."""

    code: ClassVar[str] = "invalid-request"

    @property
    def detail(self) -> str:
        return str(self)
