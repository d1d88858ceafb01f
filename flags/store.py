"""The database side of the flags: load a batch of patients' facts in bulk (one query per table),
run the pure rules, and reconcile the desired flags with the stored ones in one transaction.

Tables read: patients, episodes, patient_timezones, exercise_prescriptions, data_day_facts,
exercise_sets, rep_results, exercise_sessions, therapist_flags.
Tables written: therapist_flags (the audit is written by its trigger).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import orjson
from psycopg.types.json import Jsonb

from flags.lifecycle import (
    Change,
    Insert,
    MarkCleared,
    Reopen,
    Resolve,
    Suppressed,
    Unchanged,
    Update,
    decide,
)
from flags.model import (
    FlagSummary,
    Kind,
    PatientFacts,
    Prescription,
    Resolution,
    Session,
    Severity,
    State,
    StoredFlag,
)
from flags.rules import evaluate
from flags.settings import FlagSettings, get_flag_settings
from rtm.db import Conn
from rtm.localtime import TzHistory

log = logging.getLogger(__name__)

LOCK_CLASS = 0x52544DF1  # advisory lock class for "flags of one patient" (two-key form)
ACTOR = "rtm-flags"  # who the audit names for changes made by re-evaluation


def _json(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: orjson.dumps(v).decode())


# ------------------------------------------------------------------------------ loading ---------


@dataclass(frozen=True, slots=True)
class _Episode:
    episode_id: str
    start_date: date
    setup_date: date | None
    discharge_date: date | None

    def active_on(self, day: date) -> bool:
        return self.start_date <= day and (self.discharge_date is None or self.discharge_date >= day)


@dataclass(slots=True)
class _SessionParts:
    exercise: str | None = None
    start: datetime | None = None
    marker_end: datetime | None = None
    marker_dose: int | None = None
    full_reps: int = 0
    rom: list[float] | None = None
    has_sets: bool = False


def load_facts(
    conn: Conn, patient_ids: Sequence[str], as_of: datetime, s: FlagSettings
) -> dict[str, PatientFacts]:
    """Everything the rules need for these patients at `as_of`, in one query per table."""
    ids = list(patient_ids)
    utc_day = as_of.astimezone(UTC).date()
    lo_day = utc_day - timedelta(days=s.lookback_days + 1)  # +1: any zone's local date vs UTC
    lo_instant = as_of - timedelta(days=s.lookback_days + 2)

    clinics = dict(
        conn.execute("select patient_id, clinic_id from patients where patient_id = any(%s)", (ids,))
    )
    zones: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for pid, at, tz in conn.execute(
        "select patient_id, effective_from, tz from patient_timezones where patient_id = any(%s)", (ids,)
    ):
        zones[pid].append((at, tz))
    tzs = {pid: TzHistory(zones[pid]) for pid in clinics}
    today = {pid: tzs[pid].local_date(as_of) for pid in clinics}

    active: dict[str, _Episode] = {}
    for pid, *row in conn.execute(
        """select patient_id, episode_id, start_date, setup_date, discharge_date
             from episodes where patient_id = any(%s) order by patient_id, start_date, episode_id""",
        (ids,),
    ):
        episode = _Episode(*row)
        if pid in today and episode.active_on(today[pid]):
            active[pid] = episode  # the latest-starting active episode wins
    prescriptions: dict[str, list[Prescription]] = defaultdict(list)
    for episode_id, *row in conn.execute(
        """select episode_id, exercise, effective_from, sessions_per_week, sets, reps, target_rom_deg
             from exercise_prescriptions where episode_id = any(%s)""",
        ([e.episode_id for e in active.values()],),
    ):
        prescriptions[episode_id].append(Prescription(*row))

    data_days: dict[str, set[date]] = defaultdict(set)
    exercise_days: dict[str, set[date]] = defaultdict(set)
    for pid, day, has_data, has_exercise in conn.execute(
        """select patient_id, local_date, bool_or(qualifying or exercise_sets > 0), bool_or(exercise_sets > 0)
             from data_day_facts
            where patient_id = any(%s) and local_date between %s and %s
            group by patient_id, local_date""",
        (ids, lo_day, utc_day + timedelta(days=1)),
    ):
        if day <= today.get(pid, day):
            if has_data:
                data_days[pid].add(day)
            if has_exercise:
                exercise_days[pid].add(day)
    # Before the lookback (every zone's today is at least utc_day - 1).
    older_data = dict(
        conn.execute(
            """select patient_id, max(local_date) from data_day_facts
                where patient_id = any(%s) and local_date < %s and (qualifying or exercise_sets > 0)
                group by patient_id""",
            (ids, lo_day),
        )
    )

    sessions = _load_sessions(conn, ids, as_of, lo_instant, tzs, today, s)
    for pid, found in sessions.items():
        for x in found:
            if x.full_reps > 0 or x.rom_deg is not None:
                exercise_days[pid].add(x.local_date)
                data_days[pid].add(x.local_date)  # sets stored before their day facts still count

    facts: dict[str, PatientFacts] = {}
    for pid, clinic in clinics.items():
        current = active.get(pid)
        recent = max(data_days[pid], default=None)
        facts[pid] = PatientFacts(
            patient_id=pid,
            clinic_id=clinic,
            today=today[pid],
            episode_id=current.episode_id if current else None,
            monitoring_start=(current.setup_date or current.start_date) if current else None,
            prescriptions=tuple(prescriptions[current.episode_id]) if current else (),
            data_days=frozenset(data_days[pid]),
            exercise_days=frozenset(exercise_days[pid]),
            last_data_day=recent if recent is not None else older_data.get(pid),
            sessions=tuple(sessions.get(pid, ())),
        )
    return facts


def _load_sessions(
    conn: Conn,
    ids: list[str],
    as_of: datetime,
    lo_instant: datetime,
    tzs: dict[str, TzHistory],
    today: dict[str, date],
    s: FlagSettings,
) -> dict[str, list[Session]]:
    """Sessions from session markers and stored sets; ROM from the full repetitions."""
    parts: dict[tuple[str, str], _SessionParts] = {}
    for pid, session_id, start, end, exercise, p_sets, p_reps in conn.execute(
        """select patient_id, session_id, coalesce(started_at, ended_at), ended_at, exercise, prescribed_sets,
                  prescribed_reps
             from exercise_sessions
            where patient_id = any(%s) and coalesce(started_at, ended_at) between %s and %s""",
        (ids, lo_instant, as_of),
    ):
        part = parts.setdefault((pid, session_id), _SessionParts())
        part.exercise, part.start, part.marker_end = exercise, start, end
        part.marker_dose = p_sets * p_reps if p_sets and p_reps else None

    sets = conn.execute(
        """select patient_id, set_id, time, session_id, exercise, rep_count - partial_reps, rom_median_deg
             from exercise_sets where patient_id = any(%s) and time >= %s and time <= %s
            order by patient_id, time, set_id""",
        (ids, lo_instant, as_of),
    ).fetchall()
    reps: dict[Any, tuple[int, list[float]]] = {
        set_id: (int(full), list(roms or ()))
        for set_id, full, roms in conn.execute(
            """select set_id, count(*) filter (where not partial),
                      array_agg(rom_deg order by rep_index) filter (where not partial and rom_deg is not null)
                 from rep_results where set_id = any(%s) and time >= %s group by set_id""",
            ([row[1] for row in sets], lo_instant),
        )
    }
    for pid, set_id, start, session_id, exercise, full_count, rom_median in sets:
        if pid not in tzs:
            continue
        key = session_id or f"{exercise or 'unknown'}@{tzs[pid].local_date(start).isoformat()}"
        part = parts.setdefault((pid, key), _SessionParts())
        part.exercise = part.exercise or exercise
        part.start = start if part.start is None else min(part.start, start)
        if set_id in reps:
            full, roms = reps[set_id]
        else:  # no per-rep rows: the set's own summary, weighted by its count of full reps
            full = max(int(full_count), 0)
            roms = [float(rom_median)] * full if rom_median is not None else []
        part.full_reps += full
        part.has_sets = True
        part.rom = (part.rom or []) + roms

    found: dict[str, list[Session]] = defaultdict(list)
    for (pid, key), part in parts.items():
        if part.start is None or pid not in tzs:
            continue
        local = tzs[pid].local_date(part.start)
        roms = part.rom or []
        # Judged once its local day is over, or earlier once its end marker and results are stored
        # (a marker without results may still be waiting for its recording to be analysed).
        ended = part.marker_end is not None and part.marker_end <= as_of and part.has_sets
        complete = ended or local < today[pid]
        found[pid].append(
            Session(
                key=key,
                exercise=part.exercise,
                local_date=local,
                start=part.start,
                full_reps=part.full_reps,
                rom_deg=float(np.median(roms)) if len(roms) >= s.rom_min_reps else None,
                rom_reps=len(roms),
                complete=complete,
                marker_dose=part.marker_dose,
            )
        )
    for pid in found:
        found[pid].sort(key=lambda x: (x.start, x.key))
    return found


_FLAG_COLUMNS = """flag_id, patient_id, kind, severity, state, evidence, raised_at, updated_at,
    acknowledged_at, acknowledged_severity, resolved_at, resolution, resolved_severity,
    condition_cleared_at"""


def _stored(row: Sequence[Any]) -> StoredFlag:
    (flag_id, pid, kind, severity, state, evidence, raised_at, updated_at, ack_at, ack_sev, resolved_at,
     resolution, resolved_sev, cleared_at) = row  # fmt: skip
    return StoredFlag(
        flag_id=int(flag_id),
        patient_id=pid,
        kind=Kind(kind),
        severity=Severity(severity),
        state=State(state),
        evidence=evidence,
        raised_at=raised_at,
        updated_at=updated_at,
        acknowledged_at=ack_at,
        acknowledged_severity=Severity(ack_sev) if ack_sev else None,
        resolved_at=resolved_at,
        resolution=Resolution(resolution) if resolution else None,
        resolved_severity=Severity(resolved_sev) if resolved_sev else None,
        condition_cleared_at=cleared_at,
    )


def load_flags(
    conn: Conn, patient_ids: Sequence[str]
) -> tuple[dict[tuple[str, Kind], StoredFlag], dict[tuple[str, Kind], StoredFlag]]:
    """The live flag and the latest resolved flag per patient and kind (live rows locked)."""
    ids = list(patient_ids)
    live = {
        (f.patient_id, f.kind): f
        for f in map(
            _stored,
            conn.execute(
                f"select {_FLAG_COLUMNS} from therapist_flags"
                " where patient_id = any(%s) and state <> 'resolved' order by flag_id for update",
                (ids,),
            ),
        )
    }
    resolved = {
        (f.patient_id, f.kind): f
        for f in map(
            _stored,
            conn.execute(
                f"""select distinct on (patient_id, kind) {_FLAG_COLUMNS} from therapist_flags
                     where patient_id = any(%s) and state = 'resolved'
                     order by patient_id, kind, flag_id desc""",
                (ids,),
            ),
        )
    }
    return live, resolved


# ------------------------------------------------------------------------------ saving ----------


def _apply(
    conn: Conn, planned: list[tuple[PatientFacts, Change]], as_of: datetime, summary: FlagSummary
) -> None:
    inserts: list[tuple[PatientFacts, Insert]] = []
    updates: list[tuple[Any, ...]] = []
    reopens: list[tuple[Any, ...]] = []
    resolves: list[tuple[Any, ...]] = []
    cleared: list[tuple[Any, ...]] = []
    for facts, change in planned:
        match change:
            case Insert():
                inserts.append((facts, change))
            case Update():
                updates.append((change.severity.value, change.state.value, _json(change.evidence), as_of,
                                facts.episode_id, change.flag_id))  # fmt: skip
                summary.updated += 1
                summary.realerted += int(change.realert)
            case Reopen():
                reopens.append((change.severity.value, change.state.value, _json(change.evidence), as_of,
                                facts.episode_id, change.flag_id))  # fmt: skip
                summary.reopened += 1
            case Resolve():
                resolves.append((change.resolution.value, _json(change.evidence), as_of, change.flag_id))
                summary.resolved += 1
            case MarkCleared():
                cleared.append((as_of, change.flag_id))
            case Suppressed():
                summary.suppressed += 1
            case Unchanged():
                summary.unchanged += 1
        if not isinstance(change, Insert | Suppressed | Unchanged):
            summary.changed_flag_ids.append(change.flag_id)
    with conn.cursor() as cur:
        if updates:
            cur.executemany(
                """update therapist_flags set severity = %s, state = %s, evidence = %s, updated_at = %s,
                          episode_id = coalesce(%s, episode_id)
                    where flag_id = %s""",
                updates,
            )
        if reopens:
            cur.executemany(
                """update therapist_flags set severity = %s, state = %s, evidence = %s, updated_at = %s,
                          episode_id = coalesce(%s, episode_id), resolved_at = null, resolved_by = null,
                          resolution = null, resolution_evidence = null, resolved_severity = null,
                          condition_cleared_at = null
                    where flag_id = %s""",
                reopens,
            )
        if resolves:
            cur.executemany(
                """update therapist_flags set state = 'resolved', resolution = %s, resolution_evidence = %s,
                          resolved_at = %s, resolved_severity = severity, resolved_by = null
                    where flag_id = %s""",
                resolves,
            )
        if cleared:
            cur.executemany(
                "update therapist_flags set condition_cleared_at = %s where flag_id = %s", cleared
            )
        if inserts:
            rows = cur.execute(
                """insert into therapist_flags
                          (patient_id, clinic_id, episode_id, kind, severity, evidence, raised_at, updated_at)
                   select p, c, e, k, s, v::jsonb, %s, %s
                     from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
                          as t(p, c, e, k, s, v)
                   returning flag_id""",
                (
                    as_of,
                    as_of,
                    [f.patient_id for f, _ in inserts],
                    [f.clinic_id for f, _ in inserts],
                    [f.episode_id for f, _ in inserts],
                    [i.kind.value for _, i in inserts],
                    [i.severity.value for _, i in inserts],
                    [orjson.dumps(i.evidence).decode() for _, i in inserts],
                ),
            ).fetchall()
            summary.raised += len(rows)
            summary.changed_flag_ids.extend(int(r[0]) for r in rows)


# ------------------------------------------------------------------------------ entry points ----


def _check_as_of(as_of: datetime) -> None:
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")


def evaluate_patients(
    conn: Conn, patient_ids: Iterable[str], as_of: datetime, settings: FlagSettings | None = None
) -> FlagSummary:
    """Re-evaluate every flag kind for these patients as of `as_of`, in one transaction.

    Call it after the sinks have stored a batch (with the affected patients) and from the daily
    timer through `evaluate_all`. Idempotent: the same stored data and `as_of` change nothing twice.
    Works on an autocommit connection (its own transaction) or inside the caller's (a savepoint).
    """
    _check_as_of(as_of)
    s = settings or get_flag_settings()
    ids = sorted(set(patient_ids))
    summary = FlagSummary()
    if not ids:
        return summary
    reopen_within = timedelta(hours=s.reopen_within_hours)
    with conn.transaction():
        previous_actor = conn.execute("select current_setting('rtm.actor', true)").fetchone()
        conn.execute("select set_config('rtm.actor', %s, true)", (ACTOR,))
        # Per-patient locks in a fixed order: the stream and the daily timer never interleave on one.
        conn.execute(
            "select pg_advisory_xact_lock(%s, hashtext(p))"
            " from (select unnest(%s::text[]) as p order by 1) t",
            (LOCK_CLASS, ids),
        )
        facts = load_facts(conn, ids, as_of, s)
        live, resolved = load_flags(conn, list(facts))
        planned: list[tuple[PatientFacts, Change]] = []
        for pid in sorted(facts):
            f = facts[pid]
            summary.patients += 1
            summary.monitored += int(f.episode_id is not None)
            for kind, verdict in evaluate(f, s).items():
                change = decide(
                    verdict, live.get((pid, kind)), resolved.get((pid, kind)), as_of, reopen_within
                )
                if change is not None:
                    planned.append((f, change))
        _apply(conn, planned, as_of, summary)
        summary.by_kind = {
            str(kind): int(n)
            for kind, n in conn.execute(
                """select kind, count(*) from therapist_flags
                    where patient_id = any(%s) and state <> 'resolved' group by kind order by kind""",
                (ids,),
            )
        }
        conn.execute(
            "select set_config('rtm.actor', %s, true)",
            ((previous_actor[0] if previous_actor else None) or "",),
        )
    log.info(
        "flags evaluated: patients=%d raised=%d reopened=%d updated=%d resolved=%d unchanged=%d "
        "suppressed=%d",
        summary.patients, summary.raised, summary.reopened, summary.updated, summary.resolved,
        summary.unchanged, summary.suppressed,
    )  # fmt: skip
    return summary


def evaluate_all(conn: Conn, as_of: datetime, settings: FlagSettings | None = None) -> FlagSummary:
    """The daily timer: every patient with an episode active around `as_of` or a live flag, in
    batches of `evaluate_batch_size` (one transaction each). No-data flags need time, not data."""
    _check_as_of(as_of)
    s = settings or get_flag_settings()
    utc_day = as_of.astimezone(UTC).date()
    ids = [
        str(r[0])
        for r in conn.execute(
            """select patient_id from episodes
                where start_date <= %s and (discharge_date is null or discharge_date >= %s)
               union
               select patient_id from therapist_flags where state <> 'resolved'
               order by 1""",
            (utc_day + timedelta(days=1), utc_day - timedelta(days=1)),
        )
    ]
    total = FlagSummary()
    for i in range(0, len(ids), s.evaluate_batch_size):
        total.add(evaluate_patients(conn, ids[i : i + s.evaluate_batch_size], as_of, s))
    return total
