"""Small pieces without the stack: tokens, the token bucket, frame splitting, gzip limits."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from pydantic import ValidationError

from eligibility.timeentries import TimeEntryConflict, TimeEntryError
from ingest.bodies import split_frames
from ingest.problems import Problem, from_coded_error, from_http_status
from ingest.ratelimit import TokenBucketLimiter
from ingest.tokens import CLINIC_PREFIX, DEVICE_PREFIX, hash_secret, new_token, parse_token, secret_matches
from ingest.validation import ItemError, decode_item
from rtm.contract import ActivityInterval
from rtm.contract.base import OutOfPhysicalRange, violation_code
from rtm.contract.codec import DecodeError
from rtm.errors import CodedError


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


def _imu(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "imu_batch", "patient_id": "p1", "stream_id": "s1", "body_site": "wrist_left",
        "t0": "2026-01-01T00:00:00Z", "sample_rate_hz": 50.0, "acc": [[0.0, 0.0, 9.8]] * 4,
        "gyr": [[0.0, 0.0, 0.0]] * 4, "provenance": {"adapter": "t", "vendor": "t", "device_id": "d1"},
    }  # fmt: skip
    return body | change


def _steps(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "activity_interval", "patient_id": "p1", "source": "health_connect", "steps": 10,
        "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:10:00Z",
        "provenance": {"adapter": "t", "vendor": "t", "device_id": "d1"},
    }  # fmt: skip
    return body | change


def test_the_base_items_are_valid() -> None:
    assert not isinstance(decode_item(0, _imu()), ItemError)
    assert not isinstance(decode_item(0, _steps()), ItemError)


@pytest.mark.parametrize(
    ("item", "code"),
    [
        (_imu(acc=[[0.0, 0.0, 9.8]] * 3 + [[float("nan"), 0.0, 0.0]]), "non-finite"),
        (_imu(acc=[[1000.0, 0.0, 0.0]] * 4), "out-of-physical-range"),
        (_imu(sample_rate_hz=5000.0), "out-of-physical-range"),
        (_steps(steps=100000), "out-of-physical-range"),
        (_steps(start="2026-01-01T00:00:00"), "naive-timestamp"),
        (_steps(source_record_id="nan\u0000"), "unstorable-text"),
        (_steps(source_record_id="nan"), None),
        ({k: v for k, v in _imu().items() if k != "stream_id"}, "invalid"),
        (_imu(kind="nonsense"), "unknown-kind"),
    ],
)
def test_items_carry_the_code_of_the_rule_they_break(item: dict[str, Any], code: str | None) -> None:
    """The code comes from the contract's typed error, not from the message (a record named "nan"
    is not a non-finite value)."""
    decoded = decode_item(0, item)
    if code is None:
        assert not isinstance(decoded, ItemError), decoded
        return
    assert isinstance(decoded, ItemError), decoded
    assert decoded.code == code, decoded.detail


def test_decode_error_codes() -> None:
    assert DecodeError("malformed", "x").code == "malformed"
    assert DecodeError("unsupported_version", "x").code == "invalid"
    with pytest.raises(ValidationError) as exc:
        ActivityInterval.model_validate({k: v for k, v in _steps(steps=100000).items() if k != "kind"})
    assert violation_code(exc.value) == "out-of-physical-range"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (TimeEntryConflict("entry e1 is already voided"), 409, "conflict"),
        (TimeEntryError("a void needs a reason"), 422, "invalid-request"),
        (TimeEntryError("the text says already, the type says otherwise"), 422, "invalid-request"),
        (OutOfPhysicalRange("acc exceeds the physical range"), 422, "out-of-physical-range"),
    ],
)
def test_coded_errors_map_to_problems(error: CodedError, status: int, code: str) -> None:
    problem = from_coded_error(error)
    assert (problem.status, problem.code, problem.detail) == (status, code, str(error))
    body = problem.body("req-1")
    assert body["type"] == "urn:rtm:problem:" + code and body["status"] == status and body["title"]


def test_http_statuses_map_to_problems() -> None:
    assert from_http_status(404, "no such patient").code == "not-found"
    assert from_http_status(409, "x").code == "conflict"
    assert from_http_status(418, "x").code == "invalid-request"
