"""Strides and foot sagittal range of motion from a foot-mounted IMU.

Method: the foot's sagittal (medio-lateral) axis is the principal axis of the angular rate;
stride borders are the mid-swing peaks of the rate about it (the largest-magnitude peaks, one
per gait cycle), the convention of gaitmap's stride segmentation (Barth et al. 2015, Sensors
15(3):6419-6440); strides are kept when their duration is plausible for walking. The sagittal
foot angle is the inclination about that axis from the fused orientation
(:mod:`motion.fusion`), and its range per stride is max minus min.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.signal import find_peaks

from .fusion import DEFAULT_FUSION, FusionParams, OrientationResult, estimate_orientation
from .recording import ImuRecording
from .rom import angle_about_axis, principal_axis

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class StrideParams:
    """Parameters of :func:`detect_strides`."""

    min_peak_dps: float = 100.0  # mid-swing rate
    min_prominence_dps: float = 100.0
    min_peak_distance_s: float = 0.5
    min_stride_s: float = 0.5
    max_stride_s: float = 1.6
    fusion: FusionParams = DEFAULT_FUSION


DEFAULT_STRIDES = StrideParams()


@dataclass(frozen=True)
class StrideResult:
    """Strides as sample-index pairs ``[start, end]`` (end of one = start of the next)."""

    start: IntArray
    end: IntArray
    axis: FloatArray  # sagittal (medio-lateral) axis in the sensor frame
    angle_deg: FloatArray = field(repr=False)  # sagittal foot angle per sample
    orientation: OrientationResult = field(repr=False)

    @property
    def count(self) -> int:
        return int(self.start.size)

    def ranges_deg(self, start: IntArray | None = None, end: IntArray | None = None) -> FloatArray:
        """Sagittal range (max - min) per stride, or per given index intervals."""
        return interval_ranges(self.angle_deg, self.start if start is None else start,
                               self.end if end is None else end)


def interval_ranges(x: FloatArray, start: IntArray, end: IntArray) -> FloatArray:
    """max - min of ``x`` over each inclusive index interval [start, end] (vectorised)."""
    s = np.asarray(start, dtype=np.intp)
    e = np.asarray(end, dtype=np.intp)
    if s.size == 0:
        return np.zeros(0)
    out = np.full(s.size, np.nan)
    for j in range(s.size):  # one numpy reduction per interval (a stride or rep), not per sample
        seg = x[s[j]:e[j] + 1]
        if seg.size:
            out[j] = float(seg.max() - seg.min())
    return out


def detect_strides(rec: ImuRecording, params: StrideParams = DEFAULT_STRIDES) -> StrideResult:
    """Stride borders (mid-swing peaks) and the sagittal foot angle of a foot-worn IMU."""
    ori = estimate_orientation(rec, params.fusion)
    gyr = rec.gyr - ori.gyr_bias
    axis, _ = principal_axis(gyr.T @ gyr)
    rate = np.rad2deg(gyr @ axis)
    dist = max(int(params.min_peak_distance_s * rec.rate_hz), 1)
    best: tuple[float, IntArray] | None = None
    for sign in (1.0, -1.0):  # borders are the larger-magnitude (mid-swing) peaks
        pk, props = find_peaks(sign * rate, height=params.min_peak_dps,
                               prominence=params.min_prominence_dps, distance=dist)
        h = float(np.median(props["peak_heights"])) if pk.size else 0.0
        if best is None or h > best[0]:
            best = (h, pk)
    assert best is not None
    borders = best[1]
    dur = np.diff(rec.t[borders]) if borders.size > 1 else np.zeros(0)
    ok = (dur >= params.min_stride_s) & (dur <= params.max_stride_s)
    start = borders[:-1][ok] if borders.size > 1 else np.zeros(0, dtype=np.intp)
    end = borders[1:][ok] if borders.size > 1 else np.zeros(0, dtype=np.intp)
    angle = angle_about_axis(ori.up, axis)
    return StrideResult(np.asarray(start, dtype=np.intp), np.asarray(end, dtype=np.intp), axis, angle, ori)
