"""Write a patient's facts into the real database the way the processors would (writer role).

Every patient gets its own clinic and ids, so tests share the session's database safely.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from rtm.db import Conn

TZ = "America/Chicago"


def local(day: date, hour: float, tz: str = TZ) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(tz)) + timedelta(hours=hour)


@dataclass
class Patient:
    conn: Conn
    patient_id: str
    clinic_id: str
    episode_id: str
    tz: str = TZ
    device_id: str = field(default="")

    def prescribe(
        self,
        exercise: str = "knee_extension",
        per_week: int = 5,
        sets: int | None = 2,
        reps: int | None = 10,
        since: date | None = None,
        target: float | None = None,
    ) -> None:
        row = self.conn.execute("select start_date from episodes where episode_id = %s", (self.episode_id,))
        start = since or row.fetchone()[0]  # type: ignore[index]
        self.conn.execute(
            """insert into exercise_prescriptions
                   (episode_id, exercise, effective_from, sessions_per_week, sets, reps, target_rom_deg)
               values (%s, %s, %s, %s, %s, %s, %s)""",
            (self.episode_id, exercise, start, per_week, sets, reps, target),
        )

    def day(self, day: date, *, qualifying: bool = True, exercise_sets: int = 0, steps: int = 3000) -> None:
        self.conn.execute(
            """insert into data_day_facts (local_date, patient_id, device_id, episode_id, tz, wear_minutes,
                                           exercise_sets, steps, qualifying)
               values (%s, %s, %s, %s, %s, 600, %s, %s, %s)
               on conflict (patient_id, local_date, device_id) do update
                  set exercise_sets = excluded.exercise_sets, qualifying = excluded.qualifying""",
            (
                day,
                self.patient_id,
                self.device_id,
                self.episode_id,
                self.tz,
                exercise_sets,
                steps,
                qualifying,
            ),
        )

    def session(self, day: date, roms: Sequence[float], *, exercise: str = "knee_extension", hour: float = 15,
                sets: int = 2, partial: Sequence[int] = (), marker: bool = True, ended: bool = True,
                prescribed: tuple[int, int] | None = (2, 10)) -> None:  # fmt: skip
        """One session: its marker, `sets` sets splitting `roms` (one value per rep), the reps, the day."""
        start = local(day, hour, self.tz)
        session_id = f"{self.patient_id}-{day}-{exercise}-{hour}"
        chunks = [list(range(i, len(roms), sets)) for i in range(sets)]
        at = start + timedelta(seconds=5)
        for chunk in chunks:
            if not chunk:
                continue
            set_id = uuid.uuid4()
            set_start = at
            for n, i in enumerate(chunk):
                t = set_start + timedelta(seconds=4 * n)
                self.conn.execute(
                    """insert into rep_results
                              (time, set_id, rep_index, patient_id, end_time, rom_deg, partial)
                       values (%s, %s, %s, %s, %s, %s, %s)""",
                    (t, set_id, n, self.patient_id, t + timedelta(seconds=3), roms[i], i in partial),
                )
            end = set_start + timedelta(seconds=4 * len(chunk))
            full = sorted(roms[i] for i in chunk if i not in partial)
            self.conn.execute(
                """insert into exercise_sets
                          (time, set_id, patient_id, episode_id, device_id, stream_id, session_id, exercise,
                           end_time, rep_count, partial_reps, rom_median_deg, rom_max_deg, algorithm_version)
                   values (%s, %s, %s, %s, %s, 'stream', %s, %s, %s, %s, %s, %s, %s, 'test')""",
                (set_start, set_id, self.patient_id, self.episode_id, self.device_id,
                 session_id if marker else None, exercise, end, len(chunk), len(chunk) - len(full),
                 full[len(full) // 2] if full else None, max(full) if full else None),
            )  # fmt: skip
            at = end + timedelta(seconds=60)
        if marker:
            self.conn.execute(
                """insert into exercise_sessions
                          (started_at, session_id, patient_id, episode_id, device_id, exercise, body_site,
                           ended_at, prescribed_sets, prescribed_reps)
                   values (%s, %s, %s, %s, %s, %s, 'shank_right', %s, %s, %s)""",
                (start, session_id, self.patient_id, self.episode_id, self.device_id, exercise,
                 at if ended else None, *(prescribed or (None, None))),
            )  # fmt: skip
        self.day(day, exercise_sets=sets if roms else 0)

    def discharge(self, on: date) -> None:
        self.conn.execute(
            "update episodes set discharge_date = %s where episode_id = %s", (on, self.episode_id)
        )

    def flags(self, *, live_only: bool = False) -> list[dict[str, Any]]:
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute(
            "select * from therapist_flags where patient_id = %s"
            + (" and state <> 'resolved'" if live_only else "")
            + " order by flag_id",
            (self.patient_id,),
        ).fetchall()

    def flag(self, kind: str) -> dict[str, Any]:
        found = [f for f in self.flags() if f["kind"] == kind]
        assert len(found) == 1, f"{len(found)} {kind} flags"
        return found[0]


def new_patient(conn: Conn, start: date, *, tz: str = TZ, clinic_id: str | None = None) -> Patient:
    tag = uuid.uuid4().hex[:10]
    clinic = clinic_id or f"clinic-{tag}"
    patient, episode, device = f"patient-{tag}", f"episode-{tag}", f"imu-{tag}"
    conn.execute(
        "insert into clinics (clinic_id, name) values (%s, 'Test clinic') on conflict do nothing", (clinic,)
    )
    conn.execute("insert into patients (patient_id, clinic_id) values (%s, %s)", (patient, clinic))
    conn.execute(
        """insert into episodes (episode_id, patient_id, clinic_id, discipline, start_date)
           values (%s, %s, %s, 'PT', %s)""",
        (episode, patient, clinic, start),
    )
    conn.execute(
        "insert into patient_timezones (patient_id, effective_from, tz) values (%s, %s, %s)",
        (patient, local(start, 0, tz) - timedelta(days=1), tz),
    )
    return Patient(conn, patient, clinic, episode, tz, device)
