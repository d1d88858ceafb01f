"""Small pieces without the stack: tokens, the token bucket, frame splitting, gzip limits."""

from __future__ import annotations

import gzip

import pytest

from ingest.bodies import split_frames
from ingest.problems import Problem
from ingest.ratelimit import TokenBucketLimiter
from ingest.tokens import CLINIC_PREFIX, DEVICE_PREFIX, hash_secret, new_token, parse_token, secret_matches
from ingest.validation import classify


def test_tokens_round_trip_and_hashing() -> None:
    ident, secret, token = new_token(DEVICE_PREFIX)
    assert parse_token(token, DEVICE_PREFIX) == (ident, secret)
    assert parse_token(token, CLINIC_PREFIX) is None
    assert parse_token(token + "x", DEVICE_PREFIX) is None
    stored = hash_secret(b"pepper", secret)
    assert secret not in stored.hex() and secret_matches(b"pepper", secret, stored)
    assert not secret_matches(b"other-pepper", secret, stored)


def test_token_bucket() -> None:
    now = [0.0]
    lim = TokenBucketLimiter(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [lim.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.acquire("a") == pytest.approx(0.5)
    assert lim.acquire("b") == 0.0
    now[0] = 0.5
    assert lim.acquire("a") == 0.0


def test_split_frames_rejects_truncation() -> None:
    with pytest.raises(Problem) as exc:
        split_frames(b'RTMI\x01\x05\x00\x00\x00{"n":')
    assert exc.value.code == "malformed-body"
    with pytest.raises(Problem):
        split_frames(b"")
    assert gzip.decompress(gzip.compress(b"x")) == b"x"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("acc: Value error, contains NaN or infinite values (first at sample 3)", "non-finite"),
        ("event: Value error, acc exceeds the physical range ±314 m/s^2", "out-of-physical-range"),
        ("sample_rate_hz: Input should be less than or equal to 2000", "out-of-physical-range"),
        ("event: Value error, 100000 steps in 5.0 min exceed 300/min", "out-of-physical-range"),
        (
            "start: Value error, timestamp must carry a time-zone offset (UTC instants only)",
            "naive-timestamp",
        ),
        ("stream_id: Field required", "invalid"),
    ],
)
def test_classify(text: str, code: str) -> None:
    assert classify(text) == code
