"""Readings of one device to canonical events: UTC sample times from the device clock map, IMU
batches of `batch_s`, step intervals of `step_interval_s`. Event ids are the contract's
deterministic ids (device, stream, first-sample time), so a re-sent batch is recognised downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from device_adapters.ble.profiles.base import CadenceReading, ImuReading, Reading, StepCountReading
from device_adapters.hub.clock import ClockMap
from rtm.contract import ActivityInterval, BodySite, Event, ImuBatch, Provenance

ADAPTER = "ble-hub"
MAX_CADENCE_GAP_S = 5.0  # RSC sensors notify about once a second; a longer silence is not walking
TIME_EPS_S = 1e-3  # float error of mapped instants: an interval of 59.9999 s is the full 60


def utc(seconds: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=round(seconds * 1e6))


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    patient_id: str
    episode_id: str | None
    vendor: str
    model: str
    body_site: BodySite = BodySite.UNKNOWN


@dataclass
class _ImuBuffer:
    epoch: int
    uniform: bool
    rate: float
    acc_unit: str
    gyr_unit: str
    times: list[npt.NDArray[np.float64]] = field(default_factory=list)
    acc: list[npt.NDArray[np.float32]] = field(default_factory=list)
    gyr: list[npt.NDArray[np.float32]] = field(default_factory=list)

    def span_s(self) -> float:
        return float(self.times[-1][-1] - self.times[0][0]) if self.times else 0.0


@dataclass
class AssemblyStats:
    samples: int = 0
    acc_only_samples: int = 0  # without gyroscope coverage: the contract's ImuBatch needs both
    counter_resets: int = 0


class Assembler:
    def __init__(self, ident: DeviceIdentity, batch_s: float = 10.0, step_interval_s: float = 60.0) -> None:
        self.ident = ident
        self.batch_s = batch_s
        self.step_interval_s = step_interval_s
        self.clock = ClockMap()
        self.stats = AssemblyStats()
        self._imu: dict[str, _ImuBuffer] = {}
        self._steps_last: tuple[int, float] | None = None  # counter, utc s
        self._steps_start: float | None = None
        self._steps_pending = 0
        self._cadence_last: float | None = None
        self._cadence_acc = 0.0
        # separate accelerometer / gyroscope frames waiting to be paired (device seconds, values)
        self._pend: dict[str, list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]]] = {"acc": [], "gyr": []}
        self._pend_epoch = 0
        self._gyr_meta: tuple[Literal["rad/s", "deg/s"], float] = ("deg/s", 0.0)

    @property
    def provenance(self) -> Provenance:
        return Provenance(adapter=ADAPTER, vendor=self.ident.vendor, device_id=self.ident.device_id,
                          model=self.ident.model)

    def add(self, readings: list[Reading], arrival_utc_s: float) -> list[Event]:
        out: list[Event] = []
        for r in readings:
            if isinstance(r, ImuReading):
                out += self._add_imu(r, arrival_utc_s)
            elif isinstance(r, StepCountReading):
                out += self._add_steps(r, arrival_utc_s)
            elif isinstance(r, CadenceReading):
                out += self._add_cadence(r, arrival_utc_s)
        return out

    # --- IMU ---------------------------------------------------------------------------------------
    def _add_imu(self, r: ImuReading, arrival: float) -> list[Event]:
        if r.t_device_ns is None:
            if r.acc is None or r.gyr is None:  # separate streams without device time cannot be aligned
                self.stats.acc_only_samples += r.n_samples
                return []
            # no device time: the arrival stamps the last sample, the rest follow the rate
            times = arrival - (r.n_samples - 1 - np.arange(r.n_samples)) / r.sample_rate_hz
            return self._append(r.stream, 0, True, r, times, r.acc, r.gyr)
        dev_s = r.t_device_ns.astype(np.float64) * 1e-9
        self.clock.observe(float(dev_s[-1]), arrival)
        if r.acc is not None and r.gyr is not None:
            return self._append(r.stream, self.clock.epoch, False, r, self.clock.to_utc_s(dev_s), r.acc, r.gyr)
        return self._pair(r, self.clock.epoch, dev_s)

    def _pair(self, r: ImuReading, epoch: int, times: npt.NDArray[np.float64]) -> list[Event]:
        """Separate accelerometer and gyroscope streams (Polar PMD) become one 6-axis stream: the
        gyroscope is linearly interpolated onto the accelerometer's sample times where it covers them.
        Paired on the device clock (`times`), mapped to UTC afterwards with one clock fit."""
        if self._pend_epoch != epoch:
            self.stats.acc_only_samples += sum(len(t) for t, _ in self._pend["acc"])
            self._pend = {"acc": [], "gyr": []}
            self._pend_epoch = epoch
        key = "acc" if r.acc is not None else "gyr"
        values = r.acc if r.acc is not None else r.gyr
        assert values is not None
        self._pend[key].append((times, values))
        if key == "gyr":
            self._gyr_meta = (r.gyr_unit, r.sample_rate_hz)
        if not self._pend["acc"] or not self._pend["gyr"]:
            horizon = times[-1] - 2 * self.batch_s  # no gyroscope at all: an accelerometer-only device
            while self._pend["acc"] and not self._pend["gyr"] and self._pend["acc"][0][0][-1] < horizon:
                self.stats.acc_only_samples += len(self._pend["acc"].pop(0)[0])
            return []
        at = np.concatenate([t for t, _ in self._pend["acc"]])
        av = np.concatenate([v for _, v in self._pend["acc"]])
        gt = np.concatenate([t for t, _ in self._pend["gyr"]])
        gv = np.concatenate([v for _, v in self._pend["gyr"]])
        before = at < gt[0]  # no gyroscope yet for these
        self.stats.acc_only_samples += int(before.sum())
        use = ~before & (at <= gt[-1])
        rest = at > gt[-1]
        self._pend["acc"] = [(at[rest], av[rest])] if rest.any() else []
        self._pend["gyr"] = [(gt[-1:], gv[-1:])]  # the last gyroscope sample bounds the next span
        if not use.any():
            return []
        gyr = np.stack([np.interp(at[use], gt, gv[:, k]) for k in range(3)], axis=1).astype(np.float32)
        merged = ImuReading("imu", r.sample_rate_hz if r.acc is not None else self._acc_rate(at),
                            av[use], gyr, r.acc_unit, self._gyr_meta[0])
        return self._append("imu", epoch, False, merged, self.clock.to_utc_s(at[use]), av[use], gyr)

    @staticmethod
    def _acc_rate(times: npt.NDArray[np.float64]) -> float:
        return float(1.0 / np.median(np.diff(times))) if times.size > 1 else 1.0

    def _append(self, stream: str, epoch: int, uniform: bool, r: ImuReading, times: npt.NDArray[np.float64],
                acc: npt.NDArray[np.float32], gyr: npt.NDArray[np.float32]) -> list[Event]:
        out: list[Event] = []
        buf = self._imu.get(stream)
        if buf is not None and (buf.epoch != epoch or times[0] <= buf.times[-1][-1]):
            out += self._flush_imu(stream)  # clock reset or overlap: the recording restarts
            buf = None
        if buf is None:
            buf = self._imu[stream] = _ImuBuffer(epoch, uniform, r.sample_rate_hz, r.acc_unit, r.gyr_unit)
        buf.times.append(times)
        buf.acc.append(acc)
        buf.gyr.append(gyr)
        self.stats.samples += len(times)
        if buf.span_s() >= self.batch_s:
            out += self._flush_imu(stream)
        return out

    def _flush_imu(self, stream: str) -> list[Event]:
        buf = self._imu.pop(stream, None)
        if buf is None or not buf.times:
            return []
        times = np.concatenate(buf.times)
        t0 = utc(float(times[0]))
        offsets = None
        if not buf.uniform:
            off = np.round((times - times[0]) * 1e6).astype(np.int64)
            if off.size == 1 or (np.diff(off) > 0).all():
                offsets = off
        batch = ImuBatch(
            patient_id=self.ident.patient_id, provenance=self.provenance, episode_id=self.ident.episode_id,
            stream_id=f"ble-{stream}-e{buf.epoch}", body_site=self.ident.body_site, t0=t0,
            sample_rate_hz=buf.rate, acc_unit=buf.acc_unit, gyr_unit=buf.gyr_unit,
            acc=np.concatenate(buf.acc), gyr=np.concatenate(buf.gyr), t_offsets_us=offsets)
        return [batch]

    # --- steps -------------------------------------------------------------------------------------
    def _interval(self, start: float, end: float, steps: int) -> ActivityInterval:
        return ActivityInterval(patient_id=self.ident.patient_id, provenance=self.provenance,
                                episode_id=self.ident.episode_id, source="device", start=utc(start),
                                end=utc(end), steps=steps)

    def _add_steps(self, r: StepCountReading, arrival: float) -> list[Event]:
        self.clock.observe(r.t_device_ms / 1000.0, arrival)
        now = float(self.clock.to_utc_s(np.array([r.t_device_ms / 1000.0]))[0])
        last = self._steps_last
        self._steps_last = (r.steps, now)
        if last is None or r.steps < last[0] or now <= last[1]:
            if last is not None:
                self.stats.counter_resets += 1
            out = self._flush_steps(last[1] if last else None)
            self._steps_start = now
            return out
        self._steps_pending += r.steps - last[0]
        assert self._steps_start is not None
        if now - self._steps_start >= self.step_interval_s - TIME_EPS_S:
            return self._flush_steps(now)
        return []

    def _flush_steps(self, end: float | None) -> list[Event]:
        out: list[Event] = []
        if end is not None and self._steps_start is not None and end > self._steps_start:
            out.append(self._interval(self._steps_start, end, self._steps_pending))
            self._steps_start = end
        self._steps_pending = 0
        return out

    def _add_cadence(self, r: CadenceReading, arrival: float) -> list[Event]:
        last, self._cadence_last = self._cadence_last, arrival
        if last is None or not 0 < arrival - last <= MAX_CADENCE_GAP_S:
            out = self._flush_steps(last) if last is not None else []
            self._steps_start = arrival
            self._cadence_acc = 0.0
            return out
        self._cadence_acc += r.cadence_spm * (arrival - last) / 60.0
        whole = int(self._cadence_acc)
        self._cadence_acc -= whole
        self._steps_pending += whole
        assert self._steps_start is not None
        if arrival - self._steps_start >= self.step_interval_s - TIME_EPS_S:
            return self._flush_steps(arrival)
        return []

    def flush(self) -> list[Event]:
        out: list[Event] = []
        self.stats.acc_only_samples += sum(len(t) for t, _ in self._pend["acc"])
        self._pend["acc"] = []
        for stream in list(self._imu):
            out += self._flush_imu(stream)
        if self._steps_last is not None:
            out += self._flush_steps(self._steps_last[1])
        elif self._cadence_last is not None:
            out += self._flush_steps(self._cadence_last)
        return out
