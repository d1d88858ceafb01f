"""Steps from raw accelerometry (wrist, hip or foot), and device-counted steps kept as given.

Method: orientation-free acceleration magnitude, low-passed and resampled to a uniform grid;
the step period of each window is the lag of the strongest autocorrelation peak (with
parabolic refinement), disambiguated between step and stride by the wear placement, as in
autocorrelation step counters (Zijlstra & Hof 2003, Gait Posture 18(2); Moe-Nilssen & Helbostad
2004, J Biomech 37(1)); steps = cadence x walking time within each 4 s slot, so minutes hold
whole slots. Device steps are validated and passed through with their own intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import NonFiniteSampleError, ShapeError, SignalInputError
from .filters import lowpass_zero_phase
from .recording import AccRecording

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

PLACEMENTS = ("wrist", "hip", "foot")


@dataclass(frozen=True)
class StepParams:
    """Parameters of :func:`count_steps`."""

    grid_hz: float = 50.0  # uniform resampling rate of the magnitude signal
    lowpass_hz: float = 6.0
    slot_s: float = 4.0  # steps are reported per slot; slots tile minutes exactly
    window_s: float = 8.0  # autocorrelation window centred on each slot
    min_lag_s: float = 0.3
    max_lag_s: float = 2.2
    max_step_s: float = 1.1  # longest plausible step period (~55 steps/min)
    min_stride_s: float = 0.9  # shortest plausible stride period (~133 steps/min)
    min_periodicity: float = 0.6  # normalised autocorrelation at the period
    first_peak_frac: float = 0.85  # earliest peak within this share of the strongest is the period
    min_std_ms2: float = 0.25  # magnitude SD of a walking window
    active_std_ms2: float = 0.15  # 1 s magnitude SD of samples counted as moving
    edge_moving_share: float = 0.2  # a slot next to walking and moving this much is walking
    max_gap_s: float = 1.0  # grid points further than this from a sample are missing
    chunk_slots: int = 900  # slots per vectorised batch (1 h), bounds memory


DEFAULT_STEPS = StepParams()


@dataclass(frozen=True)
class StepResult:
    """Steps per slot: ``slot_start_s`` (aligned to multiples of ``slot_s``), steps (0 when not
    walking), cadence (steps/min, NaN when not walking), and the share of the slot with data."""

    slot_start_s: FloatArray
    steps: FloatArray
    cadence_spm: FloatArray
    coverage: FloatArray
    slot_s: float

    @property
    def total(self) -> float:
        return float(np.sum(self.steps))


def _uniform_magnitude(rec: AccRecording, params: StepParams) -> tuple[FloatArray, FloatArray, BoolArray]:
    a = rec.acc.T
    mag = np.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])
    if rec.t.size > 12:
        mag = lowpass_zero_phase(mag[:, None], min(params.lowpass_hz, 0.4 * rec.rate_hz), rec.rate_hz)[:, 0]
    t0 = np.floor(rec.t[0] / params.slot_s) * params.slot_s
    n = int(np.ceil((rec.t[-1] - t0) * params.grid_hz)) + 1
    grid = t0 + np.arange(n) / params.grid_hz
    vals = np.interp(grid, rec.t, mag)
    # grid points inside gaps or outside the recording are missing
    idx = np.clip(np.searchsorted(rec.t, grid), 1, rec.t.size - 1)
    near = np.minimum(np.abs(grid - rec.t[idx - 1]), np.abs(rec.t[idx] - grid))
    span = rec.t[idx] - rec.t[idx - 1]
    valid = (grid >= rec.t[0]) & (grid <= rec.t[-1]) & ((span <= params.max_gap_s) | (near < 0.5 / params.grid_hz))
    return grid, vals, valid


def _parabolic_peak(r: FloatArray, i: NDArray[np.intp]) -> FloatArray:
    """Sub-sample location of peaks at integer lags ``i`` of rows of ``r``."""
    rows = np.arange(r.shape[0])
    im = np.clip(i, 1, r.shape[1] - 2)
    y0, y1, y2 = r[rows, im - 1], r[rows, im], r[rows, im + 1]
    den = y0 - 2 * y1 + y2
    off = np.where(np.abs(den) > 1e-12, 0.5 * (y0 - y2) / np.where(den == 0, 1.0, den), 0.0)
    return np.asarray(im + np.clip(off, -0.5, 0.5))


def _window_periods(ext: FloatArray, starts: NDArray[np.intp], w: int, params: StepParams
                    ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Dominant autocorrelation lag (s), its correlation and the SD of each window."""
    fs = params.grid_hz
    idx = starts[:, None] + np.arange(w)[None, :]
    win = ext[idx]
    x = win - win.mean(axis=1, keepdims=True)
    sd = x.std(axis=1)
    nfft = 1 << int(np.ceil(np.log2(2 * w)))
    spec = np.fft.rfft(x, nfft, axis=1)
    ac = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, :w]
    ac /= np.maximum(ac[:, :1], 1e-12)
    # unbiased normalisation so long lags are not penalised
    ac *= w / np.maximum(w - np.arange(w), 1)[None, :]
    lo = int(params.min_lag_s * fs)
    hi = min(int(params.max_lag_s * fs), w - 2)
    seg = ac[:, lo:hi + 1]
    is_peak = np.zeros_like(seg, dtype=bool)
    is_peak[:, 1:-1] = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] > seg[:, 2:])
    masked = np.where(is_peak, seg, -np.inf)
    r_max = masked.max(axis=1)
    # the shortest lag whose peak is nearly as strong as the strongest (later peaks are multiples)
    strong = masked >= params.first_peak_frac * r_max[:, None]
    best = np.argmax(strong, axis=1)
    r_best = masked[np.arange(starts.size), best]
    lag = _parabolic_peak(ac, best + lo) / fs
    return lag, r_best, sd


def count_steps(rec: AccRecording, placement: str = "hip", params: StepParams = DEFAULT_STEPS) -> StepResult:
    """Steps per 4 s slot from a raw 3-axis accelerometer worn at ``placement``."""
    if placement not in PLACEMENTS:
        raise SignalInputError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    grid, mag, valid = _uniform_magnitude(rec, params)
    fs = params.grid_hz
    per_slot = round(params.slot_s * fs)
    n_slots = -(-grid.size // per_slot)
    pad = n_slots * per_slot - grid.size
    mag = np.concatenate((mag, np.full(pad, mag[-1])))
    valid = np.concatenate((valid, np.zeros(pad, dtype=bool)))
    half = round(params.window_s * fs / 2)
    # windows of window_s centred on each slot, edge-padded
    ext = np.concatenate((np.full(half, mag[0]), mag, np.full(half, mag[-1])))
    starts = np.arange(n_slots) * per_slot + per_slot // 2  # slot centre in ext coordinates
    lag = np.empty(n_slots)
    r_best = np.empty(n_slots)
    sd = np.empty(n_slots)
    for c0 in range(0, n_slots, params.chunk_slots):  # bounded memory for day-long recordings
        sl = slice(c0, min(c0 + params.chunk_slots, n_slots))
        lag[sl], r_best[sl], sd[sl] = _window_periods(ext, starts[sl], 2 * half, params)
    if placement == "hip":
        period = np.where(lag > params.max_step_s, lag / 2.0, lag)
    else:  # wrist and foot signals repeat once per stride
        period = np.where(lag >= params.min_stride_s, lag / 2.0, lag)
    walking = (r_best >= params.min_periodicity) & (sd >= params.min_std_ms2) & np.isfinite(r_best)
    # moving share of each slot (edges of walking bouts), from a 1 s moving SD
    k = int(fs)
    c1 = np.concatenate(([0.0], np.cumsum(mag)))
    c2 = np.concatenate(([0.0], np.cumsum(mag * mag)))
    i0 = np.clip(np.arange(mag.size) - k // 2, 0, mag.size)
    i1 = np.clip(i0 + k, 0, mag.size)
    cnt = np.maximum(i1 - i0, 1)
    m1 = (c1[i1] - c1[i0]) / cnt
    var = np.maximum((c2[i1] - c2[i0]) / cnt - m1 * m1, 0.0)
    moving = (np.sqrt(var) >= params.active_std_ms2) & valid
    moving_share = moving.reshape(n_slots, per_slot).mean(axis=1)
    coverage = valid.reshape(n_slots, per_slot).mean(axis=1)
    # a bout's first/last slot holds only part of a window of walking: borrow the neighbour's
    # period where the slot itself moves
    period = np.where(walking, period, np.nan)
    prev_p = np.concatenate(([np.nan], period[:-1]))
    next_p = np.concatenate((period[1:], [np.nan]))
    edge = ~walking & (moving_share >= params.edge_moving_share) & (np.isfinite(prev_p) | np.isfinite(next_p))
    period = np.where(edge, np.where(np.isfinite(prev_p), prev_p, next_p), period)
    walking = walking | edge
    cadence = np.where(walking, 60.0 / period, np.nan)
    steps = np.where(walking, params.slot_s * moving_share / np.where(walking, period, 1.0), 0.0)
    slot_start = grid[0] + np.arange(n_slots) * params.slot_s
    return StepResult(slot_start, steps, cadence, coverage, params.slot_s)


# ---------------------------------------------------------------------------- device steps


@dataclass(frozen=True)
class DeviceSteps:
    """Steps counted by a device or vendor, each over its own interval (epoch seconds)."""

    start_s: FloatArray
    end_s: FloatArray
    steps: FloatArray
    source: str

    @property
    def total(self) -> float:
        return float(self.steps.sum())


def device_steps(start_s: FloatArray | list[float], end_s: FloatArray | list[float],
                 steps: FloatArray | list[float], source: str) -> DeviceSteps:
    """Validate vendor step counts and keep them with their source intervals unchanged.

    Rejects non-finite or negative counts, empty or reversed intervals and overlapping
    intervals (which would double-count), naming the first offending record.
    """
    s = np.asarray(start_s, dtype=np.float64)
    e = np.asarray(end_s, dtype=np.float64)
    c = np.asarray(steps, dtype=np.float64)
    if not (s.ndim == e.ndim == c.ndim == 1 and s.size == e.size == c.size):
        raise ShapeError(f"start_s, end_s and steps must be 1-D of equal length, got {s.shape}, {e.shape}, {c.shape}")
    bad = ~(np.isfinite(s) & np.isfinite(e) & np.isfinite(c))
    if np.any(bad):
        raise NonFiniteSampleError(f"device steps from {source!r}: non-finite value in record {int(np.argmax(bad))}")
    if np.any(c < 0):
        raise SignalInputError(f"device steps from {source!r}: negative count in record {int(np.argmax(c < 0))}")
    if np.any(e <= s):
        i = int(np.argmax(e <= s))
        raise SignalInputError(f"device steps from {source!r}: interval end <= start in record {i}")
    order = np.argsort(s, kind="stable")
    s, e, c = s[order], e[order], c[order]
    overlap = s[1:] < e[:-1]
    if np.any(overlap):
        i = int(np.argmax(overlap))
        raise SignalInputError(
            f"device steps from {source!r}: intervals overlap ({s[i]}..{e[i]} and {s[i + 1]}..{e[i + 1]})")
    return DeviceSteps(s, e, c, source)
