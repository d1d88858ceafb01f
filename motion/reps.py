"""Exercise sets and repetitions from a single IMU, for any exercise and any mounting.

Method (one generic path, no kinematic model needed): the bias-corrected angular rate is
low-passed and integrated into a rotation vector, whose residual drift is removed locally (per
window, and per candidate set as the median rate of its one-period mean). In sliding windows,
the principal axis of that integrated rotation is the dominant rotation (PCA of the motion, as
in RecoFit: Morris et al., CHI 2014, and McGrath et al. 2018) and its autocorrelation tells
whether the motion repeats and with what period (autocorrelation counters: Zijlstra & Hof 2003
for gait, Morris et al. 2014 for exercise). Repetitive windows with a consistent axis form
candidate sets; the segment rotation about the set's axis is then cut into repetitions by
topographic prominence (``scipy.signal.find_peaks``) with a minimum distance tied to the
estimated period and a prominence relative to the set's own typical rep, so that low-amplitude
reps are counted (and marked partial) while the wobble of a rep is not. Counting on the
integrated angle rather than the rate keeps slow reps with fast secondary motion countable;
needing no resting posture keeps sets cut close, sets without pauses and holds at either end
countable; reps cut by the recording's start or end count as the cycle fractions they show,
rounded. Walking is excluded by its step bounce.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.signal import find_peaks

from .filters import Blocks, highpass, keep_long_runs, moving_mean

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class RepParams:
    """Parameters of set segmentation and repetition counting (angles in degrees).

    The main ones (sensitivity reported by ``rtm bench signal --sensitivity``) are
    ``window_s``, ``min_periodicity``, ``rel_prominence``, ``period_distance`` and
    ``min_cycle_similarity``.
    """

    smooth_hz: float = 4.0  # smoothing of the rotation: reps are < 2 Hz, tremor and impacts are not
    block_rate_hz: float = 10.0  # rate of the block means the windows are computed on
    window_s: float = 12.0  # >= 2 cycles of the slowest rep (0.2 Hz) plus a hold
    hop_s: float = 1.0
    min_period_s: float = 0.5  # fastest rep cycle looked for (2 Hz)
    max_period_s: float = 8.0  # slowest (0.2 Hz with a hold)
    min_periodicity: float = 0.3  # autocorrelation at the period (3 alike cycles in a window: ~0.67)
    min_amplitude_deg: float = 4.0  # RMS rotation about the axis of a repetitive window (ROM ~ 11)
    reach: float = 0.75  # windows a candidate set extends beyond its repetitive windows
    merge_gap_s: float = 10.0  # repetitive stretches closer than this are one candidate set
    min_rom_deg: float = 10.0  # smallest typical rep of a set (below: tremor, fidgeting)
    rel_prominence: float = 0.2  # a rep reaches this share of the set's typical rep ...
    period_distance: float = 0.5  # ... and half a cycle from the last (a cycle includes pauses and holds)
    max_level_change: float = 0.5  # start and end levels of a rep differ by at most this x ROM
    min_rep_s: float = 0.3
    max_rep_s: float = 20.0
    min_reps: int = 3  # fewer reps is not a set
    min_windows: int = 3  # ... nor repetition seen in fewer window positions (hop_s apart)
    max_rom_dispersion: float = 0.25  # median |ROM - median| of a set's reps / median ROM (real sets <= 0.2)
    max_start_spread: float = 0.2  # same for the level reps start from (the start posture)
    # consecutive reps of one movement trace the same 3-D path (partial and held ones scaled or
    # stretched, correlation > 0.5); handling the device moves about changing axes (~0.2): see
    # cycle_similarity (self-similarity of cycles, as the autocorrelation counters use)
    min_cycle_similarity: float = 0.4
    shape_points: int = 32  # time-normalised samples per rep (>= 8 per quarter cycle)
    edge_tolerance: float = 0.3  # first/last reps off by this share, outside the repetitive windows, ...
    edge_larger: float = 1.5  # ... or this many times larger anywhere, are trimmed (see _unlike)
    spread_margin: float = 0.02  # level spread (share of ROM) telling the start posture from the peak
    dwell_margin: float = 0.05  # share of time resting more at one extreme than at the other
    onset_frac: float = 0.05  # a rep starts/ends where it leaves/regains its trough by this share
    partial_frac: float = 0.7  # ROM below this share of the set median is a partial rep
    pause_s: float = 2.0  # time between reps longer than this is a pause
    hold_s: float = 1.5  # time within 10 % of the peak longer than this is a hold
    bounce_hz: float = 0.5  # high-pass of the vertical acceleration (steps: 1.3-2.2 Hz)
    walk_bounce_corr: float = 0.55  # vertical-acceleration autocorrelation at half the period ...
    walk_bounce_ms2: float = 0.5  # ... with this RMS: steps, not an exercise (see rotation_windows) ...
    walk_period_s: tuple[float, float] = (0.8, 1.7)  # ... at a stride period of 70-150 steps/min


DEFAULT_REPS = RepParams()


@dataclass(frozen=True)
class Rep:
    """One repetition: times in s (recording clock), ROM in degrees of segment rotation."""

    start_s: float
    peak_s: float
    end_s: float
    rom_deg: float
    partial: bool
    paused_before: bool
    held: bool

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def up_s(self) -> float:
        """Time from movement onset to the peak (concentric phase for most exercises)."""
        return self.peak_s - self.start_s

    @property
    def down_s(self) -> float:
        return self.end_s - self.peak_s


@dataclass(frozen=True)
class RepSet:
    """Reps of one detected set, with the rotation axis (sensor frame) they were counted about."""

    reps: tuple[Rep, ...]
    axis: FloatArray = field(repr=False)
    period_s: float
    start: int  # sample span of the candidate set
    stop: int
    start_spread: float = 0.0  # spread of the rep start levels, share of the median ROM
    similarity: float = 1.0  # median correlation of consecutive reps' shapes (cycle_similarity)


@dataclass(frozen=True)
class Windows:
    """Sliding-window description of the dominant rotation."""

    start: IntArray  # first sample of each window
    stop: IntArray
    axis: FloatArray  # (W, 3) principal axis of the integrated rotation
    amplitude_deg: FloatArray  # RMS rotation about it
    planarity: FloatArray  # share of the rotation about it (1: one axis, 1/3: isotropic)
    rcov: FloatArray  # (W, 3, 3) lag-one-period covariance of the integrated rotation
    periodicity: FloatArray  # autocorrelation at the period (0..1)
    period_s: FloatArray
    walking: BoolArray
    n_samples: int


def integrated_rotation(t: FloatArray, gyr: FloatArray) -> FloatArray:
    """Integrated rotation (3, N, degrees) of the angular rate (N, 3, rad/s), mean removed.
    Residual drift is removed locally (each window, each candidate set: :func:`remove_drift`),
    never over the whole recording, where handling the device elsewhere would tilt the line."""
    dt = np.diff(t, prepend=t[0])
    x = np.array(gyr.T, order="C")  # one copy, then in place (a hot path over every sample)
    x *= dt
    np.cumsum(x, axis=1, out=x)
    np.rad2deg(x, out=x)
    x -= x.mean(axis=1, keepdims=True)
    return x


def remove_drift(theta: FloatArray, t: FloatArray, core: slice, period_n: int) -> FloatArray:
    """``theta`` (degrees) minus a linear drift: the median rate of change of its mean over one
    rep period, over ``core`` (where the set repeats). Averaging over a period cancels the reps;
    the median keeps a bias the fusion left (no rest seen: a ramp of the integral) and ignores
    the posture change, handling or walking next to the set, which tilt a least-squares line."""
    mean = moving_mean(theta, max(period_n, 1))[core]
    if mean.size < 3:
        return theta
    rate = np.diff(mean) / np.maximum(np.diff(t[core]), 1e-12)
    return np.asarray(theta - _med(rate) * (t - t[core][0]))


def vertical_acceleration(acc: FloatArray, up: FloatArray, rate_hz: float,
                          params: RepParams = DEFAULT_REPS) -> FloatArray:
    """Vertical specific force (m/s²) from ``up`` (N, 3) unit vectors, smoothed over one block
    (with the block means, a triangular filter: heel-strike transients would alias into the
    step band)."""
    a = np.einsum("ij,ij->i", acc, up)
    return moving_mean(a, max(int(rate_hz / params.block_rate_hz), 1))


def _autocorrelation(x: FloatArray, nfft: int) -> FloatArray:
    """Biased autocorrelation along the last axis (summed over axis 1 when 3-D) via the FFT."""
    spec = np.fft.rfft(x, n=nfft, axis=-1)
    power = spec.real * spec.real + spec.imag * spec.imag
    if power.ndim == 3:
        power = power.sum(axis=1)
    return np.asarray(np.fft.irfft(power, n=nfft, axis=-1)[:, :x.shape[-1]])


def _period(acf: FloatArray, lo: int, hi: int) -> tuple[FloatArray, FloatArray]:
    """Height of the autocorrelation's period peak and the period (in lags, sub-lag by parabolic
    interpolation): the earliest peak in ``lo..hi`` close to the best one when the best is a
    multiple of it (the period, not a multiple), else the best (not a faster secondary wobble)."""
    rows = np.arange(acf.shape[0])
    mid = acf[:, lo:hi + 1]
    is_pk = (mid > acf[:, lo - 1:hi]) & (mid >= acf[:, lo + 1:hi + 2])
    vals = np.where(is_pk, mid, -np.inf)
    best = vals.max(axis=1)
    k_best = lo + np.argmax(vals, axis=1)
    k_first = lo + np.argmax(vals >= best[:, None] - 0.1 * np.abs(best[:, None]), axis=1)
    ratio = k_best / np.maximum(k_first, 1)
    k = np.where(np.abs(ratio - np.rint(ratio)) <= 0.15, k_first, k_best)
    ym, y0, yp = acf[rows, k - 1], acf[rows, k], acf[rows, k + 1]
    den = ym - 2.0 * y0 + yp
    safe = np.abs(den) > 1e-12
    frac = np.where(safe, 0.5 * (ym - yp) / np.where(safe, den, 1.0), 0.0)
    found = np.isfinite(best)
    return np.where(found, best, 0.0), np.where(found, k + np.clip(frac, -0.5, 0.5), np.nan)


def rotation_windows(phi: FloatArray, vert_acc: FloatArray, rate_hz: float,
                     params: RepParams = DEFAULT_REPS) -> Windows:
    """Dominant axis, amplitude, periodicity and period of ``phi`` (3, N) in sliding windows, and
    whether the window is walking (``vert_acc``: vertical specific force, m/s²). Windows are
    computed on ~``block_rate_hz`` block means (themselves a low-pass); periodicity only where
    the rotation is large enough to be a rep."""
    n = phi.shape[1]
    blocks = Blocks.make(n, rate_hz, params.block_rate_hz)
    block_rate = rate_hz / blocks.size
    xb = blocks.mean(phi)  # (3, B)
    nb = xb.shape[1]
    w = min(max(round(params.window_s * block_rate), 4), nb)
    hop = max(round(params.hop_s * block_rate), 1)
    starts = np.arange(0, nb - w + 1, hop)
    nw = starts.size
    # total rotation energy of every window after removing its mean and linear trend, from
    # prefix sums (O(blocks)): only windows with enough rotation are examined further
    ramp = np.arange(w, dtype=np.float64) - 0.5 * (w - 1)
    idx_b = np.arange(nb, dtype=np.float64)
    pre = np.concatenate((np.zeros((3, 3, 1)), np.cumsum(np.stack((xb, xb * xb, xb * idx_b)), axis=2)), axis=2)
    s1, s2, si = (pre[k][:, starts + w] - pre[k][:, starts] for k in range(3))
    sr = si - (starts + 0.5 * (w - 1)) * s1  # sum of ramp * x
    energy_all = (s2 - s1 * s1 / w - sr * sr / float(ramp @ ramp)).sum(axis=0)
    amplitude = np.sqrt(np.maximum(energy_all, 0.0) / w)  # upper bound of the RMS about the axis
    axis = np.zeros((nw, 3))
    planarity = np.zeros(nw)
    periodicity = np.zeros(nw)
    period = np.full(nw, np.nan)
    rcov = np.zeros((nw, 3, 3))
    walking = np.zeros(nw, dtype=bool)
    act = np.flatnonzero(amplitude >= params.min_amplitude_deg)
    if act.size:
        win = np.lib.stride_tricks.sliding_window_view(xb, w, axis=1)[:, starts[act], :].transpose(1, 0, 2)
        win = win - win.mean(axis=2, keepdims=True)
        win = win - ramp * ((win * ramp).sum(axis=2, keepdims=True) / float(ramp @ ramp))
        evals, evecs = np.linalg.eigh(np.matmul(win, win.transpose(0, 2, 1)) / w)
        axis[act] = evecs[:, :, -1]
        amplitude[act] = np.sqrt(np.maximum(evals[:, -1], 0.0))
        planarity[act] = evals[:, -1] / np.maximum(evals.sum(axis=1), 1e-12)
        keep = amplitude[act] >= params.min_amplitude_deg
        act, win = act[keep], win[keep]
    lo = max(int(params.min_period_s * block_rate), 1)
    hi = min(int(np.ceil(params.max_period_s * block_rate)), w - 2)
    if act.size and hi > lo + 1:
        nfft = 1 << int(np.ceil(np.log2(2 * w)))
        # vector autocorrelation (orientation-free), biased so that few cycles score low
        acf = _autocorrelation(win, nfft)
        per, lag_f = _period(acf / np.maximum(acf[:, :1], 1e-12), lo, hi)
        # the period is that of the rotation about the principal axis where that repeats (as
        # RecoFit counts on the first principal component): a smaller, faster secondary
        # motion about another axis may repeat more regularly but is not the rep
        # (only where the motion repeats at all: elsewhere no period is used)
        rp = np.flatnonzero(per >= params.min_periodicity)
        if rp.size:
            acf1 = _autocorrelation(np.einsum("wct,wc->wt", win[rp], axis[act[rp]]), nfft)
            per1, lag1 = _period(acf1 / np.maximum(acf1[:, :1], 1e-12), lo, hi)
            lag_f[rp] = np.where(per1 >= params.min_periodicity, lag1, lag_f[rp])
        periodicity[act] = per
        period[act] = lag_f / block_rate
        # a period found at the edge of the searched lags and interpolated below it is faster
        # than any rep (tremor, fidgeting, a shaken device), not a rep cycle
        rep = (per >= params.min_periodicity) & (lag_f >= params.min_period_s * block_rate)
        act, lag_f = act[rep], lag_f[rep]
    if act.size and hi > lo + 1:
        # the rotation that repeats: covariance of the window's angular rate with itself one
        # period later (symmetrised); a posture change or a secondary wobble hardly adds to it
        rate_b = np.diff(xb, axis=1, prepend=xb[:, :1])
        rwin = np.lib.stride_tricks.sliding_window_view(rate_b, w, axis=1)[:, starts[act], :].transpose(1, 0, 2)
        lag = np.clip(np.rint(lag_f).astype(np.intp), 0, w - 1)
        tt = np.arange(w)
        valid = tt[None, :] + lag[:, None] < w
        later = np.where(valid, tt[None, :] + lag[:, None], 0)
        shifted = np.take_along_axis(rwin, np.broadcast_to(later[:, None, :], rwin.shape), axis=2)
        lagged = np.matmul(rwin * valid[:, None, :], shifted.transpose(0, 2, 1)) / w
        rcov[act] = 0.5 * (lagged + lagged.transpose(0, 2, 1))
        # walking: the body bounces once per step, i.e. twice per limb-swing cycle, so the
        # vertical acceleration repeats after half the rotation period (an exercise's does not)
        vb = highpass(blocks.mean(vert_acc[None, :]).T, params.bounce_hz, block_rate)[:, 0]
        vw = np.lib.stride_tricks.sliding_window_view(vb, w)[starts[act]]
        vacf = _autocorrelation(vw - vw.mean(axis=1, keepdims=True), nfft)
        energy = np.maximum(vacf[:, 0], 1e-12)
        half = np.clip(0.5 * lag_f, 1.0, w - 2.0)
        h0 = np.floor(half).astype(np.intp)
        rows = np.arange(act.size)
        bounce = (vacf[rows, h0] * (h0 + 1 - half) + vacf[rows, h0 + 1] * (half - h0)) / energy
        stride = lag_f / block_rate
        walking[act] = ((bounce >= params.walk_bounce_corr) & (np.sqrt(energy / w) >= params.walk_bounce_ms2)
                        & (stride >= params.walk_period_s[0]) & (stride <= params.walk_period_s[1]))
    # a walk goes on for a while: a lone window with a bounce is a rep's own vertical motion
    walking = keep_long_runs(walking, params.min_windows)
    stop_b = starts + w
    stop = np.where(stop_b < nb, blocks.starts[np.minimum(stop_b, nb - 1)], n)
    return Windows(blocks.starts[starts], stop, axis, amplitude, planarity, rcov, periodicity, period,
                   walking, n)


@dataclass(frozen=True)
class Candidate:
    """A stretch of repetitive rotation: sample span, period and the windows that describe it."""

    start: int
    stop: int
    period_s: float
    windows: IntArray  # indices of its repetitive windows


def _covered(start: IntArray, stop: IntArray, x: IntArray) -> IntArray:
    """Samples before each ``x`` inside the union of the spans ``start..stop`` (both increasing),
    from the merged spans (not a per-sample mask)."""
    if start.size == 0:
        return np.zeros(x.size, dtype=np.intp)
    first = np.concatenate(([True], start[1:] > np.maximum.accumulate(stop)[:-1]))  # a merged span begins
    begin = start[first]
    length = np.maximum.reduceat(stop, np.flatnonzero(first)) - begin
    before = np.concatenate(([0], np.cumsum(length)))
    k = np.searchsorted(begin, x, side="right") - 1
    inside = np.minimum(x - begin[np.maximum(k, 0)], length[np.maximum(k, 0)])
    return np.asarray(np.where(k >= 0, before[np.maximum(k, 0)] + inside, 0))


def repetitive_spans(win: Windows, params: RepParams = DEFAULT_REPS) -> list[Candidate]:
    """Candidate sets: runs of repetitive, non-walking windows, split at gaps and walking."""
    # a window mostly inside walking windows sees the walk's swing, even where its bounce faded
    ws, we = win.start[win.walking], win.stop[win.walking]
    in_walk = (_covered(ws, we, win.stop) - _covered(ws, we, win.start)) / np.maximum(win.stop - win.start, 1)
    ok = ((win.amplitude_deg >= params.min_amplitude_deg) & ~win.walking & (in_walk <= 0.5)
          & (win.periodicity >= params.min_periodicity) & (win.period_s >= params.min_period_s))
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return []
    span = float(np.median(win.stop - win.start))
    gap_s = (win.start[idx[1:]] - win.stop[idx[:-1]]).astype(np.float64) * params.window_s / max(span, 1.0)
    walked = np.concatenate(([0], np.cumsum(win.walking)))
    crossed = (walked[idx[1:]] - walked[idx[:-1] + 1]) > 0
    label = np.concatenate(([0], np.cumsum((gap_s > params.merge_gap_s) | crossed)))
    half = round(0.5 * span)
    out: list[Candidate] = []
    for lab in range(int(label[-1]) + 1):
        members = idx[label == lab]
        period = float(np.min(win.period_s[members]))
        # a set's first and last reps sit at the edge of its repetitive windows: look half a
        # window further on both sides, never into walking
        first, last = int(members[0]), int(members[-1])
        reach = round(params.reach * span)
        a = max(int(win.start[first]) - reach, 0)
        b = min(int(win.stop[last]) + reach, win.n_samples)
        prev_walk = np.flatnonzero(win.walking[:first])
        if prev_walk.size:
            a = max(a, int(win.stop[prev_walk[-1]]) - half // 3)
        next_walk = np.flatnonzero(win.walking[last + 1:])
        if next_walk.size:
            b = min(b, int(win.start[last + 1 + next_walk[0]]) + half // 3)
        if out and a < out[-1].stop:  # overlapping reach of two candidates: split the overlap
            mid = (a + out[-1].stop) // 2
            prev = out[-1]
            out[-1] = Candidate(prev.start, mid, prev.period_s, prev.windows)
            a = mid
        if b - a < 3:
            continue
        out.append(Candidate(a, b, period, members))
    return out


def candidate_axis(win: Windows, cand: Candidate, phi: FloatArray, rate_hz: float) -> FloatArray:
    """The movement axis of a candidate: principal axis of the second moments of its angular
    rate smoothed over half a period (the rate of ``phi``, (3, N) degrees), over its repetitive
    windows: the reps dominate it, and a faster secondary wobble, even one in step with the
    reps, is smoothed out."""
    periods = win.period_s[cand.windows]
    period = _med(periods[np.isfinite(periods)])  # np.nanmedian's value, without its overhead
    a, b = int(win.start[cand.windows[0]]), int(win.stop[cand.windows[-1]])
    lag = round(period * rate_hz)
    if not np.isfinite(period) or b - a < 2 * lag + 3:
        _, vecs = np.linalg.eigh(win.rcov[cand.windows].sum(axis=0))
        return np.asarray(vecs[:, -1])
    x = np.ascontiguousarray(phi[:, a:b].T)
    rate = np.diff(moving_mean(x, max(lag // 2, 1)), axis=0)
    _, vecs = np.linalg.eigh(rate.T @ rate)
    return np.asarray(vecs[:, -1])


def cycle_similarity(t: FloatArray, phi: FloatArray, reps: list[Rep], points: int = 32) -> FloatArray:
    """Pearson correlation of each rep's 3-D rotation path (``phi`` (3, N), degrees) with the
    next rep's, both resampled to ``points`` from start to end (time-normalised, as in
    cycle-to-cycle similarity of gait: the same movement correlates whatever its tempo, ROM or
    hold; unrelated excursions about changing axes do not)."""
    if len(reps) < 2:
        return np.ones(0)
    s = np.searchsorted(t, [r.start_s for r in reps])
    e = np.minimum(np.searchsorted(t, [r.end_s for r in reps]), t.size - 1)
    idx = np.rint(s[:, None] + (e - s)[:, None] * np.linspace(0.0, 1.0, points)[None, :]).astype(np.intp)
    x = phi[:, idx].transpose(1, 0, 2)  # (reps, 3, points)
    x = (x - x.mean(axis=2, keepdims=True)).reshape(len(reps), -1)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.asarray(np.einsum("ij,ij->i", x[1:], x[:-1]))


def _first_at_or_below(x: FloatArray, level: float, reverse: bool = False) -> int:
    at = x[::-1] <= level if reverse else x <= level
    k = int(np.argmax(at))  # the first True (boolean argmax stops there)
    if not at[k]:
        return 0 if not reverse else x.size - 1
    return x.size - 1 - k if reverse else k


def count_cycles(t: FloatArray, angle_deg: FloatArray, period_s: float | None = None,
                 params: RepParams = DEFAULT_REPS, polarity: float | None = None,
                 open_ends: tuple[bool, bool] = (False, False),
                 level_deg: FloatArray | None = None, core: tuple[int, int] | None = None) -> list[Rep]:
    """Repetitions in a 1-D segment rotation (degrees, any offset and sign) of one candidate set.

    Peaks (by topographic prominence, at least ``period_distance`` x ``period_s`` apart and
    ``rel_prominence`` of the set's typical rep) are excursions away from the start posture,
    whose side is chosen by :func:`_start_side` unless ``polarity`` is given. Each rep spans
    from leaving its preceding trough to regaining its following one; ROM is the peak minus
    the lower trough on ``level_deg`` (default ``angle_deg``), the unsmoothed rotation, on
    which a rep must also end where it started (a posture change does not). ``open_ends`` says
    whether the recording was cut at the start / end: the reps cut there are fractions of a
    cycle (:func:`_edge_rep`), and they add as many reps as their sum rounds to. ``core``
    (samples) is where the windows saw repetition: the start posture is decided there.
    Partial and pause flags: :func:`flag_reps`.
    """
    n = t.size
    if n < 3 or float(np.ptp(angle_deg)) < params.min_rom_deg:
        return []
    rate = (n - 1) / float(t[-1] - t[0])
    level_all = angle_deg if level_deg is None else level_deg
    p_period = period_s if period_s and np.isfinite(period_s) else 2.0 * params.min_period_s
    dist = max(int(params.period_distance * p_period * rate), int(0.5 * params.min_rep_s * rate), 1)
    span = max(int(p_period * rate), dist)
    known = None
    if polarity is None:
        found = _peaks_and_troughs(angle_deg, dist, params, n)
        if found is None:
            polarity = -1.0
        else:
            # the start posture is a property of the repetitive part (``core``, samples), not of
            # the handling or posture change the reach may catch next to it
            c0, c1 = core if core is not None else (0, n)
            pk_in, tr_in = found[0], found[1]
            pk_c, tr_c = pk_in[(pk_in >= c0) & (pk_in < c1)], tr_in[(tr_in >= c0) & (tr_in < c1)]
            if pk_c.size < params.min_reps or tr_c.size < params.min_reps:
                c0, c1, pk_c, tr_c = 0, n, pk_in, tr_in
            side = _start_side(angle_deg[c0:c1], level_all[c0:c1], pk_c - c0, tr_c - c0, rate, params)
            polarity = 1.0 if side <= 0 else -1.0
            if polarity > 0:  # the same trace: its peaks are found already
                known = (found[0], found[2])
    p, lv = polarity * angle_deg, polarity * level_all
    found = _peaks_and_troughs(p, dist, params, span, known)
    if found is None:
        return []
    peaks, troughs, typical = found
    # where the recording itself is cut inside the set, the reps cut there are fractions of a cycle
    cut_start = open_ends[0] and troughs[0] == 0  # starts in the first rep's rise
    cut_end = open_ends[1] and troughs[-1] == n - 1  # ends in the last rep's fall
    lo, hi = int(cut_start), peaks.size - int(cut_end)
    reps = _reps(t, p, lv, peaks[lo:hi], troughs[lo:hi + 1], typical, rate, params) if hi > lo else []
    # a cut rep is a fraction of the whole rep next to it, measured alike (its way up and down,
    # halved): rep size drifts over a set, so the set's median, or the upper-half typical rep used
    # to find peaks, would make a cut rep look smaller than it is
    if hi > lo:
        first, last = (float(p[peaks[i]] - 0.5 * (p[troughs[i]] + p[troughs[i + 1]])) for i in (lo, hi - 1))
    else:
        first = last = typical
    # ... over one cycle at most (the set's longest peak-to-peak interval, as for the first and
    # last troughs): a posture held or changed before (after) the set is not part of a cut rep
    cycle = max(span, int(np.diff(peaks).max())) if peaks.size > 1 else span
    edges = []
    if open_ends[0]:
        b0 = int(troughs[lo])
        edges.append(_edge_rep(t, p, lv, max(b0 - cycle, 0), b0, first, at_start=True))
    if open_ends[1]:
        a1 = int(troughs[hi])
        edges.append(_edge_rep(t, p, lv, a1, min(a1 + cycle, n - 1), last, at_start=False))
    # the cycles seen are rounded, not the peaks counted: the two cut ends add a rep for each whole
    # cycle their fractions make up (a rep cut in its rise ~1, a fall seen alone < 0.5, rest ~0)
    keep = int(np.floor(sum(f for _, f in edges) + 0.5))
    kept = sorted(edges, key=lambda e: -e[1])[:keep]
    reps.extend(r for r, _ in kept if r is not None)
    return sorted(reps, key=lambda r: r.peak_s)


def _edge_rep(t: FloatArray, p: FloatArray, level: FloatArray, a: int, b: int,
              typical: float, at_start: bool) -> tuple[Rep | None, float]:
    """The part of a rep cut by the recording's start (``at_start``) or end (samples ``a..b``,
    one side toward the recording's edge, the other the trough of the adjacent whole rep) and
    the fraction of a cycle it is: the way up and back down it shows, over twice ``typical``
    (the adjacent whole rep's way up and down, halved)."""
    if b - a < 2:
        return None, 0.0
    seg = p[a:b + 1]
    k = int(np.argmax(seg))
    top = float(seg[k])
    frac = min(((top - float(seg[0])) + (top - float(seg[-1]))) / (2.0 * max(typical, 1e-9)), 1.0)
    low = float(min(level[a], level[b])) if 0 < k < seg.size - 1 else float(level[b] if at_start else level[a])
    rom = float(level[a + k]) - low
    return Rep(float(t[a]), float(t[a + k]), float(t[b]), rom, False, False, False), frac


def _peaks_and_troughs(p: FloatArray, dist: int, params: RepParams, span: int,
                       known: tuple[IntArray, float] | None = None) -> tuple[IntArray, IntArray, float] | None:
    """Peaks of ``p`` prominent relative to the typical one, the troughs between them, and the
    typical prominence (median of the upper half: robust to many small swings). ``known``: the
    peaks and typical prominence of a previous call on the same ``p`` and ``dist``."""
    n = p.size
    if known is not None:
        peaks, typical = known
    else:
        peaks, props = find_peaks(p, prominence=params.min_rom_deg * params.rel_prominence, distance=dist)
        prom = props["prominences"]
        if peaks.size == 0:
            return None
        typical = _med(np.sort(prom)[prom.size // 2:])
        if typical < params.min_rom_deg:
            return None
        peaks = peaks[prom >= params.rel_prominence * typical]
    # the first (last) rep's trough is no farther from its peak than the longest peak-to-peak
    # interval of the set (holds and pauses included), not a posture held before (after) the set
    if peaks.size > 1:
        span = max(span, int(np.diff(peaks).max()))
    edges = np.concatenate(([max(int(peaks[0]) - span, 0)], peaks, [min(int(peaks[-1]) + span, n - 1)]))
    troughs = np.array([int(edges[i]) + int(np.argmin(p[edges[i]:edges[i + 1] + 1]))
                        for i in range(peaks.size + 1)], dtype=np.intp)
    return peaks, troughs, typical


def _detrended(idx: IntArray, x: FloatArray) -> FloatArray:
    """``x`` minus its median and its least-squares line against ``idx`` (drift over the set)."""
    if idx.size < 3:
        return np.asarray(x - _med(x))
    i = idx - idx.mean()
    r = x - x.mean() - i * (float(i @ (x - x.mean())) / max(float(i @ i), 1e-12))
    return np.asarray(r - _med(r))


def _detrended_mad(idx: IntArray, x: FloatArray) -> float:
    """MAD of ``x`` after removing its least-squares line against ``idx`` (drift over the set)."""
    return _med(np.abs(_detrended(idx, x))) if x.size else 0.0


def _start_side(p: FloatArray, level: FloatArray, peaks: IntArray, troughs: IntArray, rate: float,
                params: RepParams) -> float:
    """Negative when the troughs of ``p`` are the start posture, positive when its peaks are.

    The start posture is the extreme every rep starts from: partial and low-amplitude reps
    change how far a rep goes, not where it starts, so the start levels vary least. With all
    reps alike, it is the extreme the segment rests at longer; with neither (reps back to back),
    where the trace starts and ends.
    """
    lo, hi = _med(level[troughs]), _med(level[peaks])
    span = max(hi - lo, 1e-9)
    # the troughs between peaks (the first and last may be a posture held before or after the set)
    inner = troughs[1:-1] if troughs.size >= 5 else troughs
    # a partial rep falls short of the others by more than 1 - partial_frac of a rep; no rep starts
    # that far from the start posture: count such outliers of either extreme, after drift
    far = (1.0 - params.partial_frac) * span
    n_far = (np.count_nonzero(np.abs(_detrended(inner, level[inner])) > far)
             - np.count_nonzero(np.abs(_detrended(peaks, level[peaks])) > far))
    if n_far:
        return float(n_far)
    spread = (_detrended_mad(inner, level[inner]) - _detrended_mad(peaks, level[peaks])) / span
    if abs(spread) >= params.spread_margin:
        return spread
    lo_p, hi_p = _med(p[troughs]), _med(p[peaks])
    near = 0.15 * (hi_p - lo_p)
    dwell = float(np.mean(p > hi_p - near)) - float(np.mean(p < lo_p + near))
    if abs(dwell) >= params.dwell_margin:
        return dwell
    k = max(int(0.5 * rate), 1)
    edge = 0.5 * (_med(p[:k]) + _med(p[-k:]))
    return (edge - lo_p) / max(hi_p - lo_p, 1e-9) - 0.5


def _reps(t: FloatArray, p: FloatArray, level: FloatArray, peaks: IntArray, troughs: IntArray,
          typical: float, rate: float, params: RepParams) -> list[Rep]:
    reps: list[Rep] = []
    near = max(int(0.05 * rate), 1)
    for i, pk in enumerate(peaks.tolist()):
        tl, tr = int(troughs[i]), int(troughs[i + 1])
        top = float(p[pk])
        low_l, low_r = float(p[tl]), float(p[tr])
        rom = top - min(low_l, low_r)
        # a rep rises from and falls back to near its start level on both sides (not a drift step)
        if top - max(low_l, low_r) < params.rel_prominence * typical:
            continue
        # ... and ends where it started: a change of posture (sitting down, lying down) does not
        if abs(float(level[tl] - level[tr])) > params.max_level_change * rom:
            continue
        s = tl + _first_at_or_below(p[tl:pk + 1], low_l + params.onset_frac * (top - low_l), reverse=True)
        e = pk + _first_at_or_below(p[pk:tr + 1], low_r + params.onset_frac * (top - low_r))
        if not params.min_rep_s <= float(t[e] - t[s]) <= params.max_rep_s:
            continue
        held = float(np.count_nonzero(p[s:e + 1] >= top - 0.1 * rom)) / rate > params.hold_s
        # ROM on the unsmoothed rotation: its extreme near the smoothed peak minus the trough
        lv_top = float(level[max(pk - near, 0):pk + near + 1].max())
        reps.append(Rep(float(t[s]), float(t[pk]), float(t[e]), lv_top - min(float(level[tl]), float(level[tr])),
                        False, False, held))
    return reps


def _med(x: FloatArray) -> float:
    """Median of a small array (np.median's overhead dominates at the sizes used here)."""
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    k = v.size // 2
    return float(v[k] if v.size % 2 else 0.5 * (v[k - 1] + v[k])) if v.size else float("nan")


def _mad(x: FloatArray) -> float:
    return _med(np.abs(x - _med(x))) if x.size else 0.0


def flag_reps(reps: list[Rep], params: RepParams = DEFAULT_REPS) -> tuple[Rep, ...]:
    """Mark partial reps (ROM below ``partial_frac`` of the set's typical full rep) and pauses before reps."""
    if not reps:
        return ()
    # the set's typical full rep, as in _peaks_and_troughs (median of the upper half): with many
    # partial reps the plain median would itself be partial
    roms = np.sort(np.array([r.rom_deg for r in reps]))
    med = _med(roms[roms.size // 2:])
    out = []
    for i, r in enumerate(reps):
        paused = i > 0 and r.start_s - reps[i - 1].end_s > params.pause_s
        out.append(Rep(r.start_s, r.peak_s, r.end_s, r.rom_deg, r.rom_deg < params.partial_frac * med,
                       bool(paused), r.held))
    return tuple(out)


def _unlike(rep: Rep, rom: float, params: RepParams, outside_core: bool) -> bool:
    """A rep at a set's edge unlike the set's typical one (ROM ``rom``): more than
    ``edge_larger`` times larger anywhere (a partial rep is smaller, never larger), or off by
    more than ``edge_tolerance`` outside the repetitive windows: the posture change, step,
    fidget or handling of the device next to the set, not one of its reps."""
    return (rep.rom_deg > params.edge_larger * rom
            or (outside_core and abs(rep.rom_deg - rom) > params.edge_tolerance * rom))


def split_sets(reps: list[Rep], params: RepParams = DEFAULT_REPS,
               core: tuple[float, float] = (-np.inf, np.inf),
               levels: FloatArray | None = None) -> list[list[Rep]]:
    """Split consecutive reps at gaps longer than ``merge_gap_s``, trim reps unlike the set's
    typical one from both ends (:func:`_unlike`; ``core`` is the time span of the repetitive
    windows; ``levels``, when given, the level each rep starts from) and drop runs under
    ``min_reps``."""
    if not reps:
        return []
    starts = np.array([r.start_s for r in reps])
    ends = np.array([r.end_s for r in reps])
    breaks = np.flatnonzero(starts[1:] - ends[:-1] > params.merge_gap_s) + 1
    bounds = np.concatenate(([0], breaks, [len(reps)]))
    out: list[list[Rep]] = []
    for a, b in itertools.pairwise(bounds):
        group = reps[int(a):int(b)]
        if len(group) < params.min_reps:
            continue
        rom = _med(np.array([r.rom_deg for r in group]))
        lv = np.zeros(len(group)) if levels is None else levels[int(a):int(b)]
        peak_s = np.array([r.peak_s for r in group])
        inner = np.flatnonzero((peak_s >= core[0]) & (peak_s <= core[1]))
        ref = (float(lv[inner[0]]), float(lv[inner[-1]])) if inner.size else (_med(lv), _med(lv))
        # outside the repetitive windows, a rep unlike the set's (in ROM, or in the posture it
        # starts from, by edge_tolerance of the ROM) is the neighbouring activity, and so is
        # everything beyond it: the set starts after the innermost such rep (ends before it)
        before = [i for i, r in enumerate(group) if r.peak_s < core[0] and (
            _unlike(r, rom, params, True) or abs(lv[i] - ref[0]) > params.edge_tolerance * rom)]
        after = [i for i, r in enumerate(group) if r.peak_s > core[1] and (
            _unlike(r, rom, params, True) or abs(lv[i] - ref[1]) > params.edge_tolerance * rom)]
        lo, hi = (max(before) + 1 if before else 0), (min(after) if after else len(group))
        if hi - lo < params.min_reps:
            continue
        while hi - lo > params.min_reps and _unlike(group[lo], rom, params, group[lo].peak_s < core[0]):
            lo += 1
        while hi - lo > params.min_reps and _unlike(group[hi - 1], rom, params, group[hi - 1].peak_s > core[1]):
            hi -= 1
        out.append(group[lo:hi])
    return out


def detect_sets(t: FloatArray, gyr: FloatArray, acc: FloatArray, up: FloatArray, rate_hz: float,
                params: RepParams = DEFAULT_REPS) -> list[RepSet]:
    """Sets of repetitions in one contiguous recording (``gyr`` bias-corrected, rad/s; ``up`` the
    fused vertical in the sensor frame). Rep ROMs are segment rotation about the movement axis.
    """
    raw = integrated_rotation(t, gyr)
    win = rotation_windows(raw, vertical_acceleration(acc, up, rate_hz, params), rate_hz, params)
    out: list[RepSet] = []
    for cand in repetitive_spans(win, params):
        a, b = cand.start, cand.stop
        axis = candidate_axis(win, cand, raw, rate_hz)
        w0 = min(max(int(win.start[cand.windows[0]]) - a, 0), b - a - 2)
        w1 = max(min(int(win.stop[cand.windows[-1]]) - a, b - a), w0 + 2)
        raw_theta = remove_drift(axis @ raw[:, a:b], t[a:b], slice(w0, w1), round(cand.period_s * rate_hz))
        # a centred moving mean over half a period of smooth_hz: -3 dB near smooth_hz
        theta = moving_mean(raw_theta, max(int(rate_hz / (2.0 * params.smooth_hz)), 1))
        # the recording starts (ends) inside the set when its first (last) window repeats
        open_ends = (int(cand.windows[0]) == 0, int(cand.windows[-1]) == win.start.size - 1)
        reps = count_cycles(t[a:b], theta, cand.period_s, params, open_ends=(a == 0 and open_ends[0],
                                                                             b == t.size and open_ends[1]),
                            level_deg=raw_theta, core=(w0, w1))
        core = (float(t[int(win.start[cand.windows[0]])]), float(t[int(win.stop[cand.windows[-1]]) - 1]))
        rep_idx = np.minimum(np.searchsorted(t[a:b], [r.start_s for r in reps]), b - a - 1)
        for group in split_sets(reps, params, core, raw_theta[rep_idx]):
            idx = np.minimum(np.searchsorted(t[a:b], [r.start_s for r in group]), b - a - 1)
            roms = np.array([r.rom_deg for r in group])
            rom = _med(roms)
            spread = _detrended_mad(idx, raw_theta[idx]) / max(rom, 1e-9)
            # a set is alike reps from one start posture, repeating for a while; bursts of
            # fidgeting or handling the device are not (their excursions vary in size and level)
            # partial reps are smaller by definition: the full ones (at least partial_frac of the
            # typical rep, the median of the upper half as in _peaks_and_troughs) must be alike
            full = roms[roms >= params.partial_frac * _med(np.sort(roms)[roms.size // 2:])]
            # ... and seen as repetition by windows over the set itself (not only over the reach)
            g0, g1 = np.searchsorted(t, [group[0].start_s, group[-1].end_s])
            seen = int(np.count_nonzero((win.start[cand.windows] < g1) & (win.stop[cand.windows] > g0)))
            # ... and its reps are cycles of one movement: alike in shape, not only in size
            similarity = _med(cycle_similarity(t, raw, group, params.shape_points))
            if (seen < params.min_windows or _mad(full) > params.max_rom_dispersion * _med(full)
                    or spread > params.max_start_spread or similarity < params.min_cycle_similarity):
                continue
            out.append(RepSet(flag_reps(group, params), axis, cand.period_s, a, b, spread, similarity))
    return out
