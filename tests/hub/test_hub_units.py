"""Hub pieces without the stack: clock mapping, assembly into events, the bounded spool."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from device_adapters.ble.profiles.base import CadenceReading, ImuReading, StepCountReading
from device_adapters.hub.agent import event_body
from device_adapters.hub.assemble import Assembler, DeviceIdentity
from device_adapters.hub.clock import ClockMap
from device_adapters.hub.spool import Spool
from rtm.contract import ActivityInterval, ImuBatch

IDENT = DeviceIdentity("dev-1", "pat-1", "ep-1", "movesense", "movesense-imu6")
T_UTC = 1_790_000_000.0  # an arbitrary instant in 2026


def test_clock_offset_drift_and_lower_envelope() -> None:
    rng = np.random.default_rng(0)
    dev = np.arange(0.0, 600.0, 1.0)
    drift = 40e-6  # the device clock runs 40 ppm slow
    arrival = T_UTC + dev * (1 + drift) + rng.exponential(0.02, dev.size)  # latency >= 0
    clock = ClockMap(window=1000)
    for d, a in zip(dev, arrival, strict=True):
        clock.observe(float(d), float(a))
    fit = clock.fit()
    assert fit.drift_ppm == pytest.approx(40, abs=5)
    true = T_UTC + dev * (1 + drift)
    err = clock.to_utc_s(dev) - true
    assert np.abs(err).max() < 0.01  # within the fastest deliveries, far under the mean latency of 20 ms


def test_clock_reset_starts_a_new_epoch() -> None:
    clock = ClockMap()
    clock.observe(1000.0, T_UTC)
    clock.observe(1001.0, T_UTC + 1)
    clock.observe(2.0, T_UTC + 2)  # rebooted
    assert clock.epoch == 1 and clock.resets == 1
    assert float(clock.to_utc_s(np.array([3.0]))[0]) == pytest.approx(T_UTC + 3)
    clock.observe(60.0, T_UTC + 3)  # device jumped 58 s in 1 s of host time
    assert clock.epoch == 2


def imu(t0_ns: int, n: int, rate: float = 52.0) -> ImuReading:
    t = t0_ns + np.round(np.arange(n) * 1e9 / rate).astype(np.int64)
    acc = np.tile(np.float32([0, 0, 9.81]), (n, 1))
    return ImuReading("imu6", rate, acc, np.zeros((n, 3), np.float32), "m/s^2", "deg/s", t)


def test_imu_batches_have_deterministic_ids_and_utc_times() -> None:
    def run() -> list[ImuBatch]:
        a = Assembler(IDENT, batch_s=2.0)
        out = []
        for k in range(30):  # 30 notifications of 4 samples at 52 Hz: 2.3 s
            r = imu(5_000_000_000 + round(k * 4e9 / 52), 4)
            out += a.add([r], T_UTC + 5 + (k * 4 + 3) / 52 + 0.01)
        out += a.flush()
        return [e for e in out if isinstance(e, ImuBatch)]

    first, again = run(), run()
    assert [e.id for e in first] == [e.id for e in again]
    assert sum(b.n_samples for b in first) == 120 and len(first) == 2
    b = first[0]
    assert b.t_offsets_us is not None and abs(b.t0.timestamp() - (T_UTC + 5)) < 0.02
    assert np.allclose(np.diff(b.t_offsets_us), 1e6 / 52, atol=2)


def test_acc_only_samples_are_counted_not_sent() -> None:
    a = Assembler(IDENT)
    r = ImuReading("acc", 52, np.zeros((5, 3), np.float32), None, t_device_ns=np.arange(5, dtype=np.int64))
    assert a.add([r], T_UTC) == [] and a.flush() == [] and a.stats.acc_only_samples == 5


def test_step_counter_intervals_and_reset() -> None:
    a = Assembler(IDENT, step_interval_s=60.0)
    out = []
    for k in range(0, 181, 10):  # a Thingy step counter every 10 s, 2 steps/s
        out += a.add([StepCountReading(100 + 20 * k // 10, 50_000 + 1000 * k)], T_UTC + k)
    out += a.add([StepCountReading(3, 1_000)], T_UTC + 190)  # reboot: counter and clock restart
    out += a.add([StepCountReading(23, 11_000)], T_UTC + 200)
    out += a.flush()
    steps = [e for e in out if isinstance(e, ActivityInterval)]
    assert [s.steps for s in steps] == [120, 120, 120, 20]
    assert a.stats.counter_resets == 1
    assert all(s.end > s.start for s in steps) and len({s.id for s in steps}) == 4


def test_cadence_integrates_to_steps() -> None:
    a = Assembler(IDENT, step_interval_s=60.0)
    out = []
    for k in range(121):  # 120 steps/min for 120 s, one notification per second
        out += a.add([CadenceReading(1.2, 120, None, None, False)], T_UTC + k)
    out += a.flush()
    assert sum(e.steps for e in out if isinstance(e, ActivityInterval)) == 240


def test_spool_dedups_evicts_oldest_and_reports(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=1000)
    assert spool.put([(f"e{i}", "d", "imu_batch", b"x" * 300) for i in range(3)]) == 3
    assert spool.put([("e0", "d", "imu_batch", b"x" * 300)]) == 0  # same id: one copy
    spool.put([("e3", "d", "imu_batch", b"x" * 300), ("e4", "d", "imu_batch", b"x" * 300)])
    assert spool.bytes() <= 1000 and spool.evicted() == 2
    assert [s.event_id for s in spool.peek(10)] == ["e2", "e3", "e4"]
    evicted = sqlite3.connect(tmp_path / "s.db").execute("select event_id from evictions order by rowid").fetchall()
    assert evicted == [("e0",), ("e1",)]
    spool.ack(["e2"])
    spool.reject("d", [("e3", 422, "invalid: bad")])
    assert spool.depth() == 1 and spool.rejected() == 1
    spool.close()
    again = Spool(tmp_path / "s.db", max_bytes=1000)  # reopened: still there
    assert [s.event_id for s in again.peek(10)] == ["e4"]
    assert again.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_event_body_round_trips_through_the_contract() -> None:
    a = Assembler(IDENT, batch_s=0.01)
    (b,) = a.add([imu(10**9, 4)], T_UTC)
    doc = event_body(b)
    again = ImuBatch.model_validate_json(doc.replace(b',"kind":"imu_batch"', b""))
    assert again == b


def test_config_example_loads_and_bad_profile_is_named() -> None:
    from pydantic import ValidationError

    from device_adapters.hub.config import HubConfig

    root = Path(__file__).resolve().parents[2]
    cfg = HubConfig.load(root / "deploy" / "hub" / "hub.example.json")
    assert [d.profile for d in cfg.devices] == ["movesense-imu6", "nordic-thingy52"]
    doc = cfg.model_dump(mode="json")
    doc["devices"][0]["profile"] = "fitbit"
    doc["devices"][0]["token"] = "x"
    doc["devices"][1]["token"] = "x"
    with pytest.raises(ValidationError, match="unknown BLE profile 'fitbit'"):
        HubConfig.model_validate(doc)


def test_polar_acc_and_gyro_frames_become_one_six_axis_stream() -> None:
    a = Assembler(IDENT, batch_s=1.0)
    rate = 52.0
    out = []
    for k in range(12):  # 12 frames of 9 samples each stream; gyro frames stamped 3 ms later
        t_acc = 10**9 + np.round((k * 9 + np.arange(9)) * 1e9 / rate).astype(np.int64)
        t_gyr = t_acc + 3_000_000
        acc = np.tile(np.float32([0, 0, 1]), (9, 1))
        gyr = np.repeat(((k * 9 + np.arange(9)) * 1.0)[:, None], 3, axis=1).astype(np.float32)
        arrival = T_UTC + (k + 1) * 9 / rate
        out += a.add([ImuReading("acc", rate, acc, None, "g", "deg/s", t_acc)], arrival)
        out += a.add([ImuReading("gyro", rate, None, gyr, "g", "deg/s", t_gyr)], arrival + 0.001)
    out += a.flush()
    batches = [e for e in out if isinstance(e, ImuBatch)]
    n = sum(b.n_samples for b in batches)
    assert n + a.stats.acc_only_samples == 12 * 9
    assert a.stats.acc_only_samples == 1  # the first acc sample precedes the first gyro sample
    g = np.concatenate([b.gyr for b in batches])[:, 0]
    # the gyro ramp (one unit per sample) interpolated 3 ms earlier: value i - 3 ms * 52 Hz
    assert np.allclose(g, np.arange(1, 1 + n) - 0.003 * rate, atol=1e-3)
    assert all(b.stream_id == "ble-imu-e0" for b in batches)
