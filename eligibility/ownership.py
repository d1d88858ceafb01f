"""Which clinic a patient, episode, practitioner, time entry or timer belongs to: what the time and
billing API asks the database before it acts for a clinic. Each answer is a plain yes or no, so a
caller can answer "not found" alike for what does not exist and for what is another clinic's.

An episode belongs to the clinic in `episodes.clinic_id`; a patient to the clinic in
`patients.clinic_id` and to every clinic with an episode of the patient; a time entry and a timer
to the clinic of their episode.
"""

from __future__ import annotations

from typing import Any

from rtm.db import Conn


def _exists(conn: Conn, sql: str, params: tuple[Any, ...]) -> bool:
    row = conn.execute(f"select exists ({sql})", params).fetchone()
    return bool(row and row[0])


def patient(conn: Conn, clinic_id: str, patient_id: str) -> bool:
    return _exists(
        conn,
        """select 1 from patients where patient_id = %s and clinic_id = %s
           union all select 1 from episodes where patient_id = %s and clinic_id = %s""",
        (patient_id, clinic_id, patient_id, clinic_id),
    )


def episode(conn: Conn, clinic_id: str, episode_id: str) -> bool:
    return _exists(
        conn, "select 1 from episodes where episode_id = %s and clinic_id = %s", (episode_id, clinic_id)
    )


def practitioner(conn: Conn, clinic_id: str, practitioner_id: str) -> bool:
    return _exists(
        conn,
        "select 1 from practitioners where practitioner_id = %s and clinic_id = %s",
        (practitioner_id, clinic_id),
    )


def time_entry(conn: Conn, clinic_id: str, entry_id: str) -> bool:
    return _exists(
        conn,
        """select 1 from therapist_time_entries t join episodes e using (episode_id)
            where t.entry_id = %s and e.clinic_id = %s""",
        (entry_id, clinic_id),
    )


def timer(conn: Conn, clinic_id: str, timer_id: str) -> bool:
    return _exists(
        conn,
        """select 1 from therapist_timers t join episodes e using (episode_id)
            where t.timer_id = %s and e.clinic_id = %s""",
        (timer_id, clinic_id),
    )
