"""What a set's ROM measures (joint angle or segment rotation) and whether it is plausible are
stored with the set, in the real database, by the same write the worker uses."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest

from motion.analysis import DEFAULT_ANALYSIS, JOINT_ANGLE, SEGMENT_ROTATION, analyze_exercise
from processors.assembly import StreamKey, _replace_results
from simulation import synth

pytestmark = pytest.mark.integration


def _stored(db: psycopg.Connection[Any], device: str) -> list[tuple[Any, ...]]:
    return db.execute("select rom_kind, rom_plausible, rep_count from exercise_sets where device_id = %s order by time",
                      (device,)).fetchall()


def test_rom_kind_and_plausibility_are_stored_per_set(db: psycopg.Connection[Any]) -> None:
    rng = np.random.default_rng(5)
    ses = synth.simulate_session(rng, "knee_extension", synth.SessionPlan(n_sets=(2, 2)),
                                 synth.SensorModel(rate_hz=50.0))
    origin = datetime(2026, 4, 1, 9, tzinfo=UTC)
    cases = [
        ("knee_extension", DEFAULT_ANALYSIS, JOINT_ANGLE, True),
        ("pendulum", DEFAULT_ANALYSIS, SEGMENT_ROTATION, True),  # no kinematic model: segment rotation
        # a joint range far below every rep's ROM: the number is kept and flagged implausible
        ("knee_extension", replace(DEFAULT_ANALYSIS, plausible_margin=0.01), JOINT_ANGLE, False),
    ]
    for name, params, kind, plausible in cases:
        analysis = analyze_exercise(ses.recording, name, params)
        assert len(analysis.sets) == 2
        device = f"imu-romkind-{uuid.uuid4().hex[:8]}"
        key = StreamKey(f"pat-{device}", device, "s1", origin)
        _replace_results(db, key, origin, None, name, None, analysis)
        rows = _stored(db, device)
        assert [(r[0], r[1]) for r in rows] == [(kind, plausible)] * 2
        assert [r[2] for r in rows] == [s.count for s in analysis.sets]
        # analysing the recording again replaces its rows: still one row per set
        _replace_results(db, key, origin, None, name, None, analysis)
        assert len(_stored(db, device)) == 2


def test_the_database_refuses_an_unknown_rom_kind(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            """insert into exercise_sets (time, set_id, patient_id, device_id, stream_id, end_time, rep_count,
                   rom_kind, algorithm_version) values (now(), %s, 'p', 'd', 's', now(), 3, 'degrees', 'x')""",
            (uuid.uuid4(),))
