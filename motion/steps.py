"""Steps from one raw accelerometer worn or carried anywhere, and device-counted steps as given.

Method: windowed periodicity gate + peak count (Brajdic & Harle 2013, "Walk detection and step
counting on unconstrained smartphones", UbiComp; Salvi et al. 2018, EMBC, the Oxford step
counter). The orientation-free acceleration magnitude is resampled to a uniform grid and
band-passed; every half second an 8 s window's autocorrelation, averaged over +-2 s, gives the
lag at which the signal repeats best. A positive autocorrelation peak at half that lag marks it
as a stride (limb-worn signals such as a thigh/pocket repeat once per stride, trunk signals once
per step), so no placement is needed; a slow, vigorous cycle without that half-lag peak is a
foot's swing and stands for two steps, and a cycle over 1.5 s is a stride. Walking starts where
the window and its context repeat clearly and keeps going (hysteresis) while the cadence stays
steady, through turns of up to 3 s. Steps are the band-passed peaks inside walking, at most one
per 0.6 step periods, whose cycle resembles the previous or next cycle in shape and size, in
bouts of at least 4.
Device steps are validated and passed through with their own intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from .errors import NonFiniteSampleError, ShapeError, SignalInputError
from .recording import AccRecording

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class StepParams:
    """Parameters of :func:`count_steps` (none is fitted to a data set)."""

    grid_hz: float = 50.0  # uniform grid: 16x the highest gait frequency kept
    band_hz: tuple[float, float] = (0.5, 3.0)  # step frequencies of 30-180 steps/min
    window_s: float = 8.0  # periodicity window: >= 2.5 strides at 40 steps/min; short bouts dominate it
    hop_s: float = 0.5  # one walking/period decision per half second
    min_lag_s: float = 0.3  # 200 steps/min
    max_lag_s: float = 3.0  # a stride at 40 steps/min
    context_windows: int = 8  # period decided on +-2 s of energy-weighted autocorrelation
    min_periodicity: float = 0.5  # autocorrelation at the period that starts walking
    max_step_s: float = 1.5  # slowest walking step (40 steps/min): a longer cycle is a stride
    min_stride_s: float = 0.8  # cycles this long may be strides (<= 75 cycles/min)
    swing_rms_ms2: float = 3.0  # band RMS of a foot's swing; slow trunk/arm gait stays near 1-2 m/s²
    keep_periodicity: float = 0.25  # walking continues while the autocorrelation stays above this
    max_period_change: float = 0.15  # cycle-to-cycle change of walking: CV of step time <= ~10 %
    min_rms_ms2: float = 0.25  # band-passed magnitude RMS: more than sensor noise and sway
    min_prominence: float = 0.5  # peak prominence relative to the window's RMS
    min_step_share: float = 0.6  # two peaks closer than this share of a step are one step
    max_bridge_s: float = 3.0  # a turn breaks the rhythm for 2-3 steps, not the walking
    min_cycle_similarity: float = 0.5  # a step's cycle resembles a neighbour's in shape and size
    cycle_tolerance: float = 0.15  # neighbour cycles may be this much shorter or longer
    min_bout_steps: int = 4  # fewer periodic peaks in a row are movements, not walking
    max_gap_s: float = 1.0  # grid points further than this from a sample are missing
    slot_s: float = 4.0  # steps are reported per slot; slots tile minutes exactly
    chunk_windows: int = 1200  # windows per vectorised batch (10 min), bounds memory


DEFAULT_STEPS = StepParams()


@dataclass(frozen=True)
class StepResult:
    """Counted steps: their instants, and per slot (``slot_start_s`` aligned to multiples of
    ``slot_s``) the step count, cadence (steps/min, NaN when not walking) and the share of the
    slot with data."""

    step_times_s: FloatArray
    slot_start_s: FloatArray
    steps: FloatArray
    cadence_spm: FloatArray
    coverage: FloatArray
    slot_s: float

    @property
    def total(self) -> float:
        return float(np.sum(self.steps))


def _uniform_magnitude(rec: AccRecording, t0: float, params: StepParams) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Grid times, acceleration magnitude on the grid and its validity."""
    a = rec.acc.T
    mag = np.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])
    n = int(np.ceil((rec.t[-1] - t0) * params.grid_hz)) + 1
    grid = t0 + np.arange(n) / params.grid_hz
    vals = np.interp(grid, rec.t, mag)
    # grid points inside gaps or outside the recording are missing
    idx = np.clip(np.searchsorted(rec.t, grid), 1, max(rec.t.size - 1, 1))
    lo = rec.t[np.minimum(idx - 1, rec.t.size - 1)]
    hi = rec.t[np.minimum(idx, rec.t.size - 1)]
    near = np.minimum(np.abs(grid - lo), np.abs(hi - grid))
    valid = (grid >= rec.t[0]) & (grid <= rec.t[-1]) & ((hi - lo <= params.max_gap_s) | (near < 0.5 / params.grid_hz))
    return grid, vals, valid


def _bandpass(x: FloatArray, valid: BoolArray, band_hz: tuple[float, float], fs: float) -> FloatArray:
    """Zero-phase band-pass along the last axis; missing points are zero before and after."""
    y = x - (x[..., valid].mean(axis=-1, keepdims=True) if valid.any() else 0.0)
    y = np.where(valid, y, 0.0)
    sos = signal.butter(4, band_hz, btype="bandpass", fs=fs, output="sos")
    y = signal.sosfiltfilt(sos, y, axis=-1) if y.shape[-1] > 3 * (2 * len(sos) + 1) else np.zeros_like(y)
    return np.asarray(np.where(valid, y, 0.0))


def _local_peak(r: FloatArray, lo: int, hi: int) -> tuple[IntArray, FloatArray]:
    """Lag (in ``lo..hi``) of each row's strongest local maximum and its value (-inf if none)."""
    seg = r[:, lo:hi + 1]
    is_peak = np.zeros_like(seg, dtype=bool)
    is_peak[:, 1:-1] = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] > seg[:, 2:])
    masked = np.where(is_peak, seg, -np.inf)
    j = np.argmax(masked, axis=1)
    return np.asarray(j + lo, dtype=np.intp), masked[np.arange(r.shape[0]), j]


def _autocorr(xp: FloatArray, vp: BoolArray, idx: IntArray, nfft: int) -> tuple[FloatArray, FloatArray]:
    """Raw autocorrelation (lags 0..w-1) of the mean-removed windows ``xp[idx]`` and their valid counts."""
    w = idx.shape[1]
    ok = vp[idx]
    n_ok = ok.sum(axis=1).astype(np.float64)
    win = xp[idx]
    x = np.where(ok, win - win.sum(axis=1, keepdims=True) / np.maximum(n_ok, 1.0)[:, None], 0.0)
    spec = np.fft.rfft(x, nfft, axis=1)
    return np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, :w], n_ok


def _context(ac: FloatArray, k: int) -> FloatArray:
    """Energy-weighted mean of the normalised autocorrelations of each window and its k neighbours a side."""
    cw = np.concatenate((np.zeros((1, ac.shape[1])), np.cumsum(ac, axis=0)))
    i = np.arange(ac.shape[0])
    j0, j1 = np.clip(i - k, 0, i.size), np.clip(i + k + 1, 0, i.size)
    c = cw[j1] - cw[j0]
    return np.asarray(c / np.maximum(c[:, :1], 1e-12))


def _near(r: FloatArray, lag: IntArray, reach: int) -> FloatArray:
    """Values of each row of ``r`` within ``reach`` lags of ``lag`` (rows x 2*reach+1)."""
    cols = np.clip(lag[:, None] + np.arange(-reach, reach + 1)[None, :], 0, r.shape[1] - 1)
    return np.asarray(r[np.arange(r.shape[0])[:, None], cols])


def _window_stats(y: FloatArray, valid: BoolArray, centres: IntArray, params: StepParams
                  ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray, FloatArray]:
    """Per window centred on ``centres``: step period (s), periodicity, RMS, data share, steps per
    seen step, and the lag (s) at which the signal repeats best (a step or a stride)."""
    fs = params.grid_hz
    w = round(params.window_s * fs)
    half = w // 2
    k = params.context_windows // 2
    period = np.empty(centres.size)
    periodicity = np.empty(centres.size)
    rms = np.empty(centres.size)
    share = np.empty(centres.size)
    per_cycle = np.ones(centres.size, dtype=np.intp)
    cycle = np.empty(centres.size)
    lo = round(params.min_lag_s * fs)
    hi = min(round(params.max_lag_s * fs), w - 2)
    nfft = 1 << int(np.ceil(np.log2(2 * w)))
    yp = np.concatenate((np.zeros(half), y, np.zeros(w)))
    vp = np.concatenate((np.zeros(half, dtype=bool), valid, np.zeros(w, dtype=bool)))
    for c0 in range(0, centres.size, params.chunk_windows):  # bounded memory on day-long input
        # neighbours on both sides feed the context autocorrelation
        a0, a1 = max(c0 - k, 0), min(c0 + params.chunk_windows + k, centres.size)
        idx = centres[a0:a1, None] + np.arange(w)[None, :]
        ac, n_ok = _autocorr(yp, vp, idx, nfft)
        energy = ac[:, 0].copy()
        # biased (energy-normalised) autocorrelation: a short bout amid stillness still scores high
        r = ac / np.maximum(energy, 1e-12)[:, None]
        ctx = _context(ac, k)
        lag, _ = _local_peak(ctx, lo, hi)
        # a positive peak near half the lag: the two halves of the cycle are alike, i.e. two
        # steps in a stride; at half a step period a step-periodic signal is in anti-phase
        h = np.round(lag / 2).astype(np.intp)
        cand = np.clip(h[:, None] + np.arange(-3, 4)[None, :], 1, w - 2)
        rows = np.arange(lag.size)[:, None]
        rc = ctx[rows, cand]
        ok = (rc >= ctx[rows, cand - 1]) & (rc >= ctx[rows, cand + 1]) & (cand >= lo)
        rcm = np.where(ok, rc, -np.inf)
        jh = np.argmax(rcm, axis=1)
        i = np.arange(lag.size)
        halve = rcm[i, jh] > 0.0
        step = np.where(halve, cand[i, jh], lag)
        # a slow cycle with vigorous acceleration is a foot's swing, once per stride (the trunk
        # and arms move that much only at a brisk step rate): the other foot's step is unseen
        wrms = np.sqrt(energy / np.maximum(n_ok, 1.0))
        swing = ~halve & (lag >= params.min_stride_s * fs) & (wrms >= params.swing_rms_ms2)
        # a cycle longer than the slowest walking step is a stride even when its halves differ
        step = np.where(~halve & ~swing & (lag > params.max_step_s * fs), h, step)
        # periodicity at the step or the cycle lag, whichever repeats best, in the window and in its
        # context alike: random movements may repeat once by chance, walking keeps repeating
        r_step = np.minimum(_near(r, step, 2).max(axis=1), _near(ctx, step, 2).max(axis=1))
        r_cycle = np.minimum(_near(r, lag, 2).max(axis=1), _near(ctx, lag, 2).max(axis=1))
        out = slice(c0 - a0, c0 - a0 + min(params.chunk_windows, centres.size - c0))
        sl = slice(c0, c0 + out.stop - out.start)
        period[sl] = step[out] / fs
        per_cycle[sl] = np.where(swing, 2, 1)[out]
        cycle[sl] = lag[out] / fs
        periodicity[sl] = np.maximum(r_step, r_cycle)[out]
        rms[sl] = np.sqrt(energy / np.maximum(n_ok, 1.0))[out]
        share[sl] = (n_ok / w)[out]
    return period, periodicity, rms, share, per_cycle, cycle


def _cycle_similarity(y: FloatArray, peaks: IntArray, cycle: IntArray, tolerance: float) -> FloatArray:
    """Best similarity (cosine times the square root of the amplitude ratio) of the one-cycle
    segment centred on each peak with the segment one cycle (+-``tolerance``, for irregular
    steps) earlier or later."""
    if peaks.size == 0:
        return np.zeros(0)
    span = int(cycle.max())
    u = np.arange(-(span // 2), span // 2 + 1)
    inside = np.abs(u)[None, :] <= (cycle[:, None] // 2)
    n = y.size
    seg = np.where(inside, y[np.clip(peaks[:, None] + u[None, :], 0, n - 1)], 0.0)
    e0 = np.sqrt(np.sum(seg * seg, axis=1))
    best = np.full(peaks.size, -1.0)
    for f in np.linspace(1.0 - tolerance, 1.0 + tolerance, 7):  # 7 shifts, each vectorised over peaks
        for sign in (-1, 1):
            shift = sign * np.round(f * cycle).astype(np.intp)
            j = peaks[:, None] + shift[:, None] + u[None, :]
            ok = inside & (j >= 0) & (j < n)
            other = np.where(ok, y[np.clip(j, 0, n - 1)], 0.0)
            e1 = np.sqrt(np.sum(other * other, axis=1))
            # shape (cosine) times the square root of the amplitude ratio: a small movement after a bout is no step
            ratio = np.minimum(e0, e1) / np.maximum(np.maximum(e0, e1), 1e-12)
            c = np.sum(seg * other, axis=1) / np.maximum(e0 * e1, 1e-12) * np.sqrt(ratio)
            best = np.maximum(best, c)
    return best


def _bridge(walking: BoolArray, moving: BoolArray, period: FloatArray, per_cycle: IntArray, max_windows: int
            ) -> tuple[BoolArray, FloatArray, IntArray]:
    """Walking through short breaks of the rhythm (a turn) while the body keeps moving, with the
    period of the walking before the break."""
    n = walking.size
    if n == 0 or walking.all() or not walking.any():
        return walking, period, per_cycle
    gap = ~walking
    start = gap & np.concatenate(([True], walking[:-1]))
    label = np.cumsum(start) - 1
    n_runs = int(start.sum())
    length = np.bincount(label[gap], minlength=n_runs)
    still = np.bincount(label[gap], (~moving[gap]).astype(np.float64), n_runs)
    first = np.flatnonzero(start)
    last = first + length - 1
    inside = (first > 0) & (last < n - 1)
    ok = inside & (length <= max_windows) & (still == 0)
    fill = gap & ok[np.clip(label, 0, max(n_runs - 1, 0))]
    prev = np.maximum.accumulate(np.where(walking, np.arange(n), 0))
    return (walking | fill, np.where(fill, period[prev], period), np.where(fill, per_cycle[prev], per_cycle))


def _walking(period: FloatArray, periodicity: FloatArray, rms: FloatArray, share: FloatArray,
             per_cycle: IntArray, params: StepParams) -> tuple[BoolArray, FloatArray, IntArray]:
    """Walking windows (hysteresis on periodicity, steady cadence, turns bridged), with the step
    period and steps per seen step of each window."""
    n = periodicity.size
    moving = (rms >= params.min_rms_ms2) & (share >= 0.5)
    cyc = period / per_cycle  # the true step period
    # walking keeps its cadence from second to second; a random movement's best lag jumps about
    k = round(1.0 / params.hop_s)
    pad = np.concatenate((np.full(k, np.nan), cyc, np.full(k, np.nan)))
    steady = (np.abs(pad[:-2 * k] - cyc) <= params.max_period_change * cyc) | \
             (np.abs(pad[2 * k:] - cyc) <= params.max_period_change * cyc)
    starts_walking = moving & steady & (periodicity >= params.min_periodicity)
    # hysteresis: a clearly periodic stretch starts walking; irregular gait (walking aids, step
    # time CV ~10 %) keeps it going at a lower periodicity, at the cadence it started with (a
    # movement after a bout has a rhythm of its own)
    idx = np.arange(n)
    before = np.maximum.accumulate(np.where(starts_walking, idx, -1))
    after = np.minimum.accumulate(np.where(starts_walking, idx, n)[::-1])[::-1]
    ref_b = np.where(before >= 0, cyc[np.clip(before, 0, n - 1)], np.nan)
    ref_a = np.where(after < n, cyc[np.clip(after, 0, n - 1)], np.nan)
    tol = 2.0 * params.max_period_change
    same_cadence = (np.abs(cyc - ref_b) <= tol * ref_b) | (np.abs(cyc - ref_a) <= tol * ref_a)
    cand = moving & steady & same_cadence & (periodicity >= params.keep_periodicity)
    if not cand.any():
        return cand, period, per_cycle
    first = cand & np.concatenate(([True], ~cand[:-1]))
    run = np.cumsum(first) - 1
    n_runs = int(first.sum())
    started = np.bincount(run[cand], starts_walking[cand].astype(np.float64), n_runs) > 0
    walking = cand & started[np.clip(run, 0, n_runs - 1)]
    return _bridge(walking, rms >= params.min_rms_ms2, period, per_cycle, round(params.max_bridge_s / params.hop_s))


def _peaks_in_walking(y: FloatArray, valid: BoolArray, win_of: IntArray, walking: BoolArray, period: FloatArray,
                      cycle: FloatArray, rms: FloatArray, params: StepParams) -> IntArray:
    """Grid indices of the counted steps (see the module doc)."""
    fs = params.grid_hz
    peaks, props = signal.find_peaks(y, prominence=0.0)
    wi = win_of[peaks]
    keep = walking[wi] & valid[peaks] & (props["prominences"] >= params.min_prominence * rms[wi])
    peaks, wi = peaks[keep], wi[keep]
    if peaks.size == 0:
        return np.asarray(peaks, dtype=np.intp)
    # of two peaks closer than part of a step, keep the higher
    h = y[peaks]
    p = period[wi] * fs
    d = np.diff(peaks)
    close_prev = np.concatenate(([False], d < params.min_step_share * p[1:]))
    close_next = np.concatenate((d < params.min_step_share * p[:-1], [False]))
    h_prev = np.concatenate(([np.inf], h[:-1]))
    h_next = np.concatenate((h[1:], [np.inf]))
    drop = (close_prev & (h_prev > h)) | (close_next & (h_next >= h))
    peaks, wi = peaks[~drop], wi[~drop]
    # bouts: peaks in walking no further apart than two step periods
    new_bout = np.concatenate(([True], np.diff(peaks) > 2.0 * period[wi][1:] * fs))
    bout = np.cumsum(new_bout) - 1
    # each step's cycle (or step) must look like the one before or after it: the first and last
    # steps of a bout pass, a movement next to a bout (or a turn's push) does not
    sim = np.maximum(
        _cycle_similarity(y, peaks, np.round(cycle[wi] * fs).astype(np.intp), params.cycle_tolerance),
        _cycle_similarity(y, peaks, np.round(period[wi] * fs).astype(np.intp), params.cycle_tolerance))
    alike = sim >= params.min_cycle_similarity
    peaks, bout = peaks[alike], bout[alike]
    size = np.bincount(bout, minlength=int(new_bout.sum()))
    return np.asarray(peaks[size[bout] >= params.min_bout_steps], dtype=np.intp)


def detect_steps(rec: AccRecording, params: StepParams = DEFAULT_STEPS) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Step instants (s), and per window (every ``hop_s``) its start time and step period (NaN when
    not walking)."""
    t0 = float(np.floor(rec.t[0] / params.slot_s) * params.slot_s)
    fs = params.grid_hz
    grid, mag, valid = _uniform_magnitude(rec, t0, params)
    y = _bandpass(mag, valid, params.band_hz, fs)
    hop = round(params.hop_s * fs)
    centres = np.arange(0, y.size, hop, dtype=np.intp)
    period, periodicity, rms, share, per_cycle, cycle = _window_stats(y, valid, centres, params)
    walking, period, per_cycle = _walking(period, periodicity, rms, share, per_cycle, params)
    win_of = np.minimum((np.arange(y.size) + hop // 2) // hop, centres.size - 1)
    peaks = _peaks_in_walking(y, valid, win_of, walking, period, cycle, rms, params)
    times = grid[peaks]
    # the unseen step of a foot-swing cycle lies half a cycle after the seen one
    two = per_cycle[win_of[peaks]] == 2
    times = np.sort(np.concatenate((times, times[two] + 0.5 * period[win_of[peaks[two]]])))
    win_start = grid[0] + centres / fs - params.hop_s / 2
    return times, win_start, np.where(walking, period / per_cycle, np.nan)


def count_steps(rec: AccRecording, params: StepParams = DEFAULT_STEPS) -> StepResult:
    """Steps per ``slot_s`` slot from a raw 3-axis accelerometer worn or carried anywhere."""
    if not isinstance(params, StepParams):
        raise SignalInputError(f"params must be StepParams, got {type(params).__name__} "
                               "(the counter needs no placement)")
    times, win_start, period = detect_steps(rec, params)
    t0 = float(np.floor(rec.t[0] / params.slot_s) * params.slot_s)
    n_slots = int(np.floor((rec.t[-1] - t0) / params.slot_s)) + 1
    slot_start = t0 + params.slot_s * np.arange(n_slots)
    si = np.clip(np.floor((times - t0) / params.slot_s).astype(np.intp), 0, n_slots - 1)
    steps = np.bincount(si, minlength=n_slots).astype(np.float64)
    wsi = np.clip(np.floor((win_start + params.hop_s / 2 - t0) / params.slot_s).astype(np.intp), 0, n_slots - 1)
    ok = np.isfinite(period)
    cnt = np.bincount(wsi[ok], minlength=n_slots)
    mean_p = np.bincount(wsi[ok], period[ok], n_slots) / np.maximum(cnt, 1)
    cadence = np.asarray(np.where((cnt > 0) & (steps > 0), 60.0 / np.where(cnt > 0, mean_p, 1.0), np.nan),
                         dtype=np.float64)
    # share of each slot with samples
    ti = np.clip(np.floor((rec.t - t0) / params.slot_s).astype(np.intp), 0, n_slots - 1)
    coverage = np.minimum(np.bincount(ti, minlength=n_slots) / (params.slot_s * rec.rate_hz), 1.0)
    return StepResult(times, np.asarray(slot_start, dtype=np.float64), steps, cadence,
                      np.asarray(coverage, dtype=np.float64), params.slot_s)


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
