"""Wear / non-wear of an accelerometer, per 15-minute block and per minute.

Method: van Hees et al. 2013 (PLoS ONE 8(4):e61691) as implemented in GGIR: a 15-minute block
is non-wear when a 60-minute window containing it (windows step by 15 minutes) has, on at least
two of the three axes, a standard deviation below 13 mg and a value range below 50 mg. Blocks
without enough data are reported as undecided (``covered`` is False), never as worn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .recording import GRAVITY, AccRecording

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class WearParams:
    """Thresholds of the van Hees non-wear rule (GGIR defaults)."""

    block_s: float = 900.0  # 15 min
    window_blocks: int = 4  # 60 min window centred on the block
    sd_mg: float = 13.0
    range_mg: float = 50.0
    min_axes: int = 2
    min_coverage: float = 0.25  # share of a window that must hold samples for a decision


DEFAULT_WEAR = WearParams()


@dataclass(frozen=True)
class WearResult:
    """Per 15-min block (aligned to multiples of ``block_s`` in epoch time): worn, covered."""

    block_start_s: FloatArray
    worn: BoolArray  # meaningful only where covered
    covered: BoolArray  # enough data to decide
    block_s: float

    def minutes(self, minute_start_s: FloatArray) -> tuple[BoolArray, BoolArray]:
        """(worn, decided) for minutes starting at ``minute_start_s`` (epoch s)."""
        i = np.floor((minute_start_s - self.block_start_s[0]) / self.block_s).astype(np.intp)
        inside = (i >= 0) & (i < self.block_start_s.size)
        ic = np.clip(i, 0, self.block_start_s.size - 1)
        decided = inside & self.covered[ic]
        return decided & self.worn[ic], decided


def detect_wear(rec: AccRecording, params: WearParams = DEFAULT_WEAR) -> WearResult:
    """Classify each 15-minute block of ``rec`` as worn or not (van Hees 2013)."""
    mg = rec.acc * (1000.0 / GRAVITY)
    t = rec.t
    b0 = np.floor(t[0] / params.block_s) * params.block_s
    blk = np.floor((t - b0) / params.block_s).astype(np.intp)
    nb = int(blk[-1]) + 1
    cnt = np.bincount(blk, minlength=nb).astype(np.float64)
    s1 = np.stack([np.bincount(blk, mg[:, i], nb) for i in range(3)]).astype(np.float64)
    s2 = np.stack([np.bincount(blk, mg[:, i] * mg[:, i], nb) for i in range(3)]).astype(np.float64)
    # per-block max/min via sorted segment reductions (blk is non-decreasing)
    starts = np.flatnonzero(np.diff(np.concatenate(([-1], blk))))
    present = blk[starts]
    mx = np.full((3, nb), -np.inf)
    mn = np.full((3, nb), np.inf)
    mx[:, present] = np.maximum.reduceat(mg, starts, axis=0).T
    mn[:, present] = np.minimum.reduceat(mg, starts, axis=0).T
    # 60-min window of whole blocks around block b: [b - 1, b + 2], centred to within half a block
    half_lo = (params.window_blocks - 1) // 2
    half_hi = params.window_blocks - 1 - half_lo
    pad_lo, pad_hi = half_lo, half_hi

    def window_sum(x: FloatArray) -> FloatArray:
        xp = np.concatenate((np.zeros((*x.shape[:-1], pad_lo)), x, np.zeros((*x.shape[:-1], pad_hi))), axis=-1)
        c = np.concatenate((np.zeros((*x.shape[:-1], 1)), np.cumsum(xp, axis=-1)), axis=-1)
        return np.asarray(c[..., params.window_blocks:] - c[..., :-params.window_blocks])

    def window_ext(x: FloatArray, fill: float, fn: np.ufunc) -> FloatArray:
        xp = np.concatenate((np.full((*x.shape[:-1], pad_lo), fill), x, np.full((*x.shape[:-1], pad_hi), fill)),
                            axis=-1)
        out = xp[..., : nb]
        for k in range(1, params.window_blocks):
            out = fn(out, xp[..., k:k + nb])
        return np.asarray(out)

    wc = window_sum(cnt)
    w1 = window_sum(s1)
    w2 = window_sum(s2)
    mean = w1 / np.maximum(wc, 1.0)
    sd = np.sqrt(np.maximum(w2 / np.maximum(wc, 1.0) - mean * mean, 0.0))
    rng = window_ext(mx, -np.inf, np.maximum) - window_ext(mn, np.inf, np.minimum)
    still_axes = ((sd < params.sd_mg) & (rng < params.range_mg)).sum(axis=0)
    expected = params.window_blocks * params.block_s * rec.rate_hz
    covered = wc >= params.min_coverage * expected
    # window i covers blocks [i - half_lo, i + half_hi]; every block of a non-wear window is
    # non-wear (so an unworn hour is flagged whole, not only its middle block)
    off_window = (still_axes >= params.min_axes) & covered
    off = np.zeros(nb, dtype=bool)
    for k in range(-half_lo, half_hi + 1):
        lo, hi = max(0, -k), min(nb, nb - k)
        off[lo + k:hi + k] |= off_window[lo:hi]
    covered_any = np.zeros(nb, dtype=bool)
    for k in range(-half_lo, half_hi + 1):
        lo, hi = max(0, -k), min(nb, nb - k)
        covered_any[lo + k:hi + k] |= covered[lo:hi]
    worn = ~off
    return WearResult(b0 + np.arange(nb) * params.block_s, worn, covered_any & (cnt > 0), params.block_s)
