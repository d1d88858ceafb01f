"""Zone offsets as phones export them: java.time.ZoneOffset text ("+02:00", "Z") or seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})(?::?(\d{2}))?$")
MAX_OFFSET_S = 18 * 3600  # java.time.ZoneOffset's range


def parse_offset(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a zone offset is text like '+02:00' or a number of seconds")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        if value in ("Z", "z"):
            return 0
        m = _OFFSET.match(value)
        if m is None:
            raise ValueError(f"not a zone offset: {value[:20]!r} (expected e.g. '+02:00' or 'Z')")
        sign = -1 if m.group(1) == "-" else 1
        seconds = sign * (int(m.group(2)) * 3600 + int(m.group(3)) * 60 + int(m.group(4) or 0))
    else:
        raise ValueError("a zone offset is text like '+02:00' or a number of seconds")
    if abs(seconds) > MAX_OFFSET_S:
        raise ValueError("a zone offset is at most ±18:00")
    return seconds


ZoneOffsetSeconds = Annotated[int | None, BeforeValidator(parse_offset)]
