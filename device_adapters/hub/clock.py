"""Device clock to UTC: offset and drift estimated from (device time, arrival time) pairs.

Arrival = true time + a non-negative radio/stack latency, so the best estimate of the device's
clock is the lower envelope of the pairs: a least-squares line (offset + drift) through the
window's fastest deliveries, shifted down to its smallest residual. A device clock that goes
backwards, or jumps against the host clock by more than `reset_jump_s`, was reset (reboot, battery
swap): the estimate starts again and the epoch counter grows, so that event ids from the new
epoch never collide with the old one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ClockFit:
    epoch: int
    offset_s: float  # utc = offset_s + (1 + drift) * device_s  (device_s relative to the epoch's origin)
    drift: float
    origin_device_s: float
    pairs: int

    @property
    def drift_ppm(self) -> float:
        return self.drift * 1e6


class ClockMap:
    def __init__(self, window: int = 256, reset_jump_s: float = 5.0, max_drift_ppm: float = 500.0) -> None:
        # window: pairs kept (minutes at one frame per second; drift needs a long baseline)
        # reset_jump_s: a device/host disagreement larger than any plausible latency
        # max_drift_ppm: crystal oscillators are within ±100 ppm; beyond 500 the fit is noise
        self.window = window
        self.reset_jump_s = reset_jump_s
        self.max_drift = max_drift_ppm * 1e-6
        self.epoch = 0
        self._pairs: deque[tuple[float, float]] = deque(maxlen=window)
        self._fit: ClockFit | None = None
        self.resets = 0

    def observe(self, device_s: float, arrival_utc_s: float) -> None:
        if self._pairs:
            last_dev, last_arr = self._pairs[-1]
            if device_s < last_dev or abs((device_s - last_dev) - (arrival_utc_s - last_arr)) > self.reset_jump_s:
                self.epoch += 1
                self.resets += 1
                self._pairs.clear()
        self._pairs.append((device_s, arrival_utc_s))
        self._fit = None

    def fit(self) -> ClockFit:
        if self._fit is not None:
            return self._fit
        if not self._pairs:
            raise ValueError("no clock observation yet")
        pts = np.asarray(self._pairs, dtype=np.float64)
        origin = float(pts[0, 0])
        dev = pts[:, 0] - origin
        arr = pts[:, 1]
        drift = 0.0
        if len(pts) >= 8 and np.ptp(dev) > 10.0:  # too short a baseline resolves no drift
            # the line through the fastest delivery of each stretch: latency noise drops out
            # (a convex-hull lower envelope, cf. Moon, Skelly & Towsley, INFOCOM 1999, in its simplest form)
            lag = arr - dev
            blocks = np.array_split(np.arange(len(pts)), min(16, len(pts) // 4))
            best = np.array([b[np.argmin(lag[b])] for b in blocks])
            slope = np.polyfit(dev[best], lag[best], 1)[0]
            drift = float(np.clip(slope, -self.max_drift, self.max_drift))
        offset = float(np.min(arr - (1.0 + drift) * dev))  # the lower envelope
        self._fit = ClockFit(self.epoch, offset, drift, origin, len(pts))
        return self._fit

    def to_utc_s(self, device_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        f = self.fit()
        return f.offset_s + (1.0 + f.drift) * (device_s - f.origin_device_s)
