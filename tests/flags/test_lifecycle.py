"""The lifecycle rule without a database: raise once, update, acknowledge, re-alert, resolve."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flags.lifecycle import (
    Insert,
    MarkCleared,
    Reopen,
    Resolve,
    Suppressed,
    Unchanged,
    Update,
    decide,
)
from flags.model import Kind, Outcome, Resolution, Severity, State, StoredFlag, Verdict

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
WITHIN = timedelta(hours=72)
K = Kind.NO_DATA


def raise_(severity: Severity, days: int = 4) -> Verdict:
    return Verdict(K, Outcome.RAISE, {"days_without_data": days, "dates": ("2026-03-15",)}, severity)


CLEAR = Verdict(K, Outcome.CLEAR, {"days_without_data": 0})
UNKNOWN = Verdict(K, Outcome.UNKNOWN, {})
GONE = Verdict(K, Outcome.NOT_MONITORED, {})

LIVE = StoredFlag(
    flag_id=1, patient_id="p", kind=K, severity=Severity.MEDIUM, state=State.OPEN,
    evidence={"days_without_data": 4, "dates": ["2026-03-15"]}, raised_at=NOW, updated_at=NOW,
)  # fmt: skip
ACKED = replace(LIVE, state=State.ACKNOWLEDGED, acknowledged_at=NOW, acknowledged_severity=Severity.MEDIUM)


def test_raise_once_then_unchanged_then_updated() -> None:
    assert decide(raise_(Severity.MEDIUM), None, None, NOW, WITHIN) == Insert(
        K, Severity.MEDIUM, raise_(Severity.MEDIUM).evidence
    )
    assert decide(raise_(Severity.MEDIUM), LIVE, None, NOW, WITHIN) == Unchanged(1)  # tuple == JSON list
    change = decide(raise_(Severity.MEDIUM, 5), LIVE, None, NOW, WITHIN)
    assert isinstance(change, Update) and change.state is State.OPEN and not change.realert


def test_acknowledged_stays_unless_worse() -> None:
    same = decide(raise_(Severity.MEDIUM, 6), ACKED, None, NOW, WITHIN)
    assert isinstance(same, Update) and same.state is State.ACKNOWLEDGED
    milder = decide(raise_(Severity.LOW, 6), ACKED, None, NOW, WITHIN)
    assert isinstance(milder, Update) and milder.state is State.ACKNOWLEDGED
    worse = decide(raise_(Severity.HIGH, 8), ACKED, None, NOW, WITHIN)
    assert isinstance(worse, Update) and worse.state is State.OPEN and worse.realert


def test_clear_resolves_unknown_keeps_not_monitored_resolves() -> None:
    assert decide(CLEAR, LIVE, None, NOW, WITHIN) == Resolve(1, Resolution.CLEARED, CLEAR.evidence)
    assert decide(UNKNOWN, LIVE, None, NOW, WITHIN) is None
    assert decide(GONE, ACKED, None, NOW, WITHIN) == Resolve(1, Resolution.NOT_MONITORED, GONE.evidence)
    assert decide(CLEAR, None, None, NOW, WITHIN) is None


def test_recent_auto_resolution_is_reopened_not_repeated() -> None:
    cleared = replace(ACKED, state=State.RESOLVED, resolved_at=NOW - timedelta(hours=30),
                      resolution=Resolution.CLEARED, resolved_severity=Severity.MEDIUM)  # fmt: skip
    again = decide(raise_(Severity.MEDIUM), None, cleared, NOW, WITHIN)
    assert isinstance(again, Reopen) and again.flag_id == 1 and again.state is State.ACKNOWLEDGED
    worse = decide(raise_(Severity.HIGH), None, cleared, NOW, WITHIN)
    assert isinstance(worse, Reopen) and worse.state is State.OPEN
    long_ago = replace(cleared, resolved_at=NOW - timedelta(days=10))
    assert isinstance(decide(raise_(Severity.MEDIUM), None, long_ago, NOW, WITHIN), Insert)
    assert isinstance(decide(raise_(Severity.MEDIUM), None, cleared, NOW, timedelta(0)), Insert)


def test_manual_resolution_suppresses_until_cleared_or_worse() -> None:
    manual = replace(LIVE, state=State.RESOLVED, resolved_at=NOW, resolution=Resolution.MANUAL,
                     resolved_severity=Severity.MEDIUM)  # fmt: skip
    assert decide(raise_(Severity.MEDIUM, 9), None, manual, NOW, WITHIN) == Suppressed(1)
    assert isinstance(decide(raise_(Severity.HIGH), None, manual, NOW, WITHIN), Insert)
    assert decide(CLEAR, None, manual, NOW, WITHIN) == MarkCleared(1)
    after_clear = replace(manual, condition_cleared_at=NOW)
    assert isinstance(decide(raise_(Severity.MEDIUM), None, after_clear, NOW, WITHIN), Insert)
    assert decide(CLEAR, None, after_clear, NOW, WITHIN) is None
