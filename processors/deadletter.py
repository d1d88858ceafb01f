"""Dead letters: what failed to parse or validate, with the reason and the original bytes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson


def dead_letter(
    *, source_topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str,
    detail: str,
) -> bytes:
    return orjson.dumps(
        {
            "source_topic": source_topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
            "detail": detail,
            "key_b64": base64.b64encode(key or b"").decode(),
            "value_b64": base64.b64encode(value or b"").decode(),
            "dead_at": datetime.now(UTC).isoformat(),
        }
    )
