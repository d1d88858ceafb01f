"""`rtm run --via-ble`: cohort sessions replayed by virtual Movesense devices (bumble) through the hub
agent into the real gateway (uvicorn, the session's broker and database). The raw IMU topic then
holds every sample once, at the session's own instants, with the session's values; a second
replay is recognised as duplicates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cli.mainjob_ble import RATE_HZ, BleRoute, _clinic_token, replay, session_samples
from rtm.contract import ImuBatch, decode
from rtm.settings import Settings
from rtm.topics import TOPIC_BY_KIND
from simulation.cohort import CLINIC_ID, DEVICE_MODEL, make_cohort, patient_events
from simulation.seed import seed_care_context
from tests.ingest.conftest import PEPPER, read_topic

pytestmark = pytest.mark.integration


def test_cohort_sessions_through_virtual_ble_and_the_hub(gateway_url: str, db_settings: Settings,
                                                          tmp_path: Path) -> None:
    cohort = make_cohort(3, 4, seed=41)
    with psycopg.connect(db_settings.dsn("writer"), autocommit=True) as conn:
        seed_care_context(conn, cohort)
    route = BleRoute(2)
    direct = 0
    for p in cohort.patients:
        for event in patient_events(cohort, p):
            direct += not route.take(event)
    sessions = list(route.sessions.values())
    assert len(sessions) == 2 and len({s.patient_id for s in sessions}) == 2 and direct > 0
    assert all([m.phase for m in s.markers] == ["start", "end"] and s.batches for s in sessions)
    token = _clinic_token(db_settings, PEPPER.encode(), CLINIC_ID)

    result = asyncio.run(replay(route, gateway_url, token, DEVICE_MODEL, tmp_path / "a"))
    expected = [session_samples(s.batches) for s in sessions]
    assert result.samples == sum(len(e[1]) for e in expected) > 0
    assert result.left_in_spool == 0 and result.bad_frames == 0 and result.duplicates == 0

    topic = TOPIC_BY_KIND["imu_batch"].name
    for s, (t0, t, acc, gyr) in zip(sessions, expected, strict=True):
        got = [b for b in (decode(v) for v in read_topic(db_settings, topic, s.patient_id.encode()))
               if isinstance(b, ImuBatch) and b.provenance.device_id == f"{s.device_id}-ble"]
        assert len({b.id for b in got}) == len(got)  # nothing twice
        got.sort(key=lambda b: b.t0)
        assert sum(b.n_samples for b in got) == len(t)  # nothing lost
        assert {b.stream_id for b in got} == {"ble-imu6-e0"} and {b.episode_id for b in got} == {s.episode_id}
        times = np.concatenate([b.t0.timestamp() + b.times_s() for b in got])
        # at the session's own instants: within the device clock's millisecond resolution
        assert np.abs(times - (t0 + t)).max() < 2e-3
        np.testing.assert_array_equal(np.concatenate([b.acc for b in got]), acc)
        np.testing.assert_allclose(np.concatenate([b.gyr for b in got]), gyr, rtol=1e-6)
        assert {b.sample_rate_hz for b in got} == {RATE_HZ}

    # The markers went with the sessions, under the BLE device (the pipeline matches by device).
    for s in sessions:
        marks = [m for m in (decode(v) for v in read_topic(db_settings, TOPIC_BY_KIND["session_marker"].name,
                                                             s.patient_id.encode()))
                 if m.provenance.device_id == f"{s.device_id}-ble"]
        assert sorted(m.phase for m in marks) == ["end", "start"]  # type: ignore[attr-defined]

    again = asyncio.run(replay(route, gateway_url, token, DEVICE_MODEL, tmp_path / "b"))
    assert again.events == result.events == again.duplicates == result.imu_batches + 4
