"""A flag's lifecycle: from a verdict and what is stored to the one change to make (pure).

The rule, per patient and kind (at most one live flag, i.e. open or acknowledged):

- RAISE, a live flag exists: update its severity and evidence in place (nothing is written when
  both are unchanged). An acknowledged flag stays acknowledged unless the severity becomes worse
  than the severity that was acknowledged; then it goes back to open (re-alert).
- RAISE, no live flag:
  - the last flag of that kind was resolved by a person and the condition has not cleared since:
    suppressed, unless the severity is now worse than when it was resolved (then a new flag);
  - the last flag was resolved by re-evaluation less than `reopen_within_hours` ago: that flag is
    reopened (acknowledged again if it had been acknowledged at no lower severity), so a condition
    hovering at a threshold does not fill the queue with new flags;
  - otherwise a new flag is raised.
- CLEAR: a live flag is resolved (resolution "cleared"); after a manual resolution, the clearing is
  noted so that a later recurrence is raised as a new flag.
- UNKNOWN: nothing changes (too little data neither raises nor resolves).
- NOT_MONITORED (no active episode): a live flag is resolved ("not_monitored").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from flags.model import Evidence, Kind, Outcome, Resolution, Severity, State, StoredFlag, Verdict


@dataclass(frozen=True, slots=True)
class Insert:
    kind: Kind
    severity: Severity
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Update:
    flag_id: int
    severity: Severity
    state: State
    evidence: Evidence
    realert: bool = False


@dataclass(frozen=True, slots=True)
class Reopen:
    flag_id: int
    severity: Severity
    state: State
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Resolve:
    flag_id: int
    resolution: Resolution
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class MarkCleared:
    flag_id: int


@dataclass(frozen=True, slots=True)
class Suppressed:
    flag_id: int


@dataclass(frozen=True, slots=True)
class Unchanged:
    flag_id: int


Change = Insert | Update | Reopen | Resolve | MarkCleared | Suppressed | Unchanged


def _worse(new: Severity, than: Severity | None) -> bool:
    return than is None or new.rank > than.rank


def decide(
    verdict: Verdict,
    live: StoredFlag | None,
    last_resolved: StoredFlag | None,
    as_of: datetime,
    reopen_within: timedelta,
) -> Change | None:
    """The change one verdict makes to the stored flags of its patient and kind (None: nothing)."""
    if verdict.outcome is Outcome.UNKNOWN:
        return None
    if verdict.outcome in (Outcome.CLEAR, Outcome.NOT_MONITORED):
        if live is not None:
            resolution = Resolution.CLEARED if verdict.outcome is Outcome.CLEAR else Resolution.NOT_MONITORED
            return Resolve(live.flag_id, resolution, verdict.evidence)
        if (
            verdict.outcome is Outcome.CLEAR
            and last_resolved is not None
            and last_resolved.resolution is Resolution.MANUAL
            and last_resolved.condition_cleared_at is None
        ):
            return MarkCleared(last_resolved.flag_id)
        return None

    severity = verdict.severity
    assert severity is not None  # a RAISE verdict always has one (checked by Verdict)
    if live is not None:
        state = live.state
        realert = state is State.ACKNOWLEDGED and _worse(severity, live.acknowledged_severity)
        if realert:
            state = State.OPEN
        if severity is live.severity and state is live.state and _same(verdict.evidence, live.evidence):
            return Unchanged(live.flag_id)
        return Update(live.flag_id, severity, state, verdict.evidence, realert)

    last = last_resolved
    if last is not None and last.resolution is Resolution.MANUAL and last.condition_cleared_at is None:
        if not _worse(severity, last.resolved_severity):
            return Suppressed(last.flag_id)
        return Insert(verdict.kind, severity, verdict.evidence)
    if (
        last is not None
        and last.resolution is Resolution.CLEARED
        and last.resolved_at is not None
        and as_of - last.resolved_at <= reopen_within
    ):
        acknowledged = last.acknowledged_at is not None and not _worse(severity, last.acknowledged_severity)
        return Reopen(
            last.flag_id, severity, State.ACKNOWLEDGED if acknowledged else State.OPEN, verdict.evidence
        )
    return Insert(verdict.kind, severity, verdict.evidence)


def _same(a: Evidence, b: Evidence) -> bool:
    return _plain(a) == _plain(b)


def _plain(value: object) -> object:
    """Evidence as it round-trips through JSON (tuples become lists), for comparison."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
