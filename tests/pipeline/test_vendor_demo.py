"""The main job's vendor-cloud patients (all six: Polar x2, Google Health, Oura, Withings, Garmin)
through a real gateway, broker, worker and database: every stored total equals the vendor's, on a
first run, on a run with another window (a later day, or another --days: new patients enrolled from
their own first day, which once stored a fraction of the vendor's steps), and on a rerun of the same
window (the same patients, nothing stored twice)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from cli.vendor_demo import VendorPatient, run_vendor_patients
from cli.vendor_demo_cloud import run_cloud_patients
from cli.vendor_demo_wg import run_wg_patients
from processors.supervisor import WorkerProcess, start_worker
from rtm.settings import Settings
from rtm.stack.broker import free_port

pytestmark = pytest.mark.integration
SEED = 31


@pytest.fixture(scope="module")
def worker(db_settings: Settings) -> Iterator[WorkerProcess]:
    w = start_worker(db_settings, port=free_port())
    yield w
    w.stop()


def _all(settings: Settings, days: int) -> list[VendorPatient]:
    return (run_vendor_patients(settings, days, SEED) + run_cloud_patients(settings, days, SEED)
            + run_wg_patients(settings, days, SEED))


def _rows(settings: Settings, patients: list[str]) -> int:
    with psycopg.connect(settings.dsn("reader")) as conn:
        row = conn.execute("select count(*) from activity_intervals where patient_id = any(%s)",
                           (patients,)).fetchone()
    return int(row[0]) if row else 0


def test_vendor_patients_store_what_the_vendor_holds_on_every_run(worker: WorkerProcess, db_settings: Settings) -> None:
    first = _all(db_settings, 2)
    assert len(first) == 6
    assert [(r.vendor, r.stored_steps) for r in first] == [(r.vendor, r.vendor_steps) for r in first]
    assert all(r.vendor_steps > 0 and r.status == "active" for r in first)

    other = _all(db_settings, 3)  # a longer window: other patients, each complete
    assert [(r.vendor, r.stored_steps) for r in other] == [(r.vendor, r.vendor_steps) for r in other]
    assert not {r.patient_id for r in other} & {r.patient_id for r in first}

    ids = [r.patient_id for r in other]
    rows = _rows(db_settings, ids)
    again = _all(db_settings, 3)  # the same window again: a replay onto the same patients
    assert [r.patient_id for r in again] == ids
    assert [(r.vendor, r.stored_steps) for r in again] == [(r.vendor, r.vendor_steps) for r in again]
    assert _rows(db_settings, ids) == rows
