"""Exercise sets and repetitions from a single IMU: where the sets are, and each rep in them.

Method: sliding-window segmentation of exercise bouts by rotation energy, planarity of the
angular-rate covariance (single dominant, horizontal hinge axis) and absence of heel-strike
transients, then repetition detection as prominent excursions of the segment angle about the
bout's axis from its resting (start) posture. This follows RecoFit (Morris et al., CHI 2014:
segmentation of exercise vs. non-exercise, then counting on a 1-D projection of the motion)
with peak detection by topographic prominence (scipy.signal.find_peaks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.signal import find_peaks

from .filters import Blocks, highpass, keep_long_runs, lowpass_zero_phase, runs
from .rom import angle_about_axis, principal_axis

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class RepParams:
    """Thresholds of set segmentation and repetition detection (segment angles in degrees)."""

    block_rate_hz: float = 10.0
    window_s: float = 5.0
    hop_s: float = 1.0
    min_rate_dps: float = 8.0  # RMS angular rate of an active window
    min_planarity: float = 0.8  # share of rotation energy about the main axis
    max_axis_vertical: float = 0.6  # |cos| between main axis and vertical (axes are horizontal)
    impact_hz: float = 12.0  # high-pass of |acc| isolating heel-strike transients
    max_impact_ms2: float = 1e9  # RMS of those transients during a rep above which it is gait (off)
    max_window_impact_ms2: float = 0.5  # same, mean over a window ...
    walk_min_windows: int = 3  # ... in this many consecutive windows is walking
    min_impact_rate_hz: float = 40.0  # below this rate transients are not resolved: not used
    edge_impact_ms2: float = 0.15  # leading/trailing reps of a set with transients above this ...
    edge_impact_ratio: float = 3.0  # ... and this many times the set's median is a step
    axis_agree_deg: float = 25.0  # consecutive windows of one bout share their axis
    merge_gap_s: float = 10.0  # windows closer than this join one bout
    margin_s: float = 1.0  # context added to both ends of a bout
    smooth_hz: float = 10.0  # zero-phase low-pass of the angle before peak picking (<= 0.4 x rate)
    rest_rate_dps: float = 15.0  # angle rate below which the segment counts as resting ...
    min_rest_s: float = 0.4  # ... for at least this long
    rest_cluster_deg: float = 10.0  # rests closer than this are one resting posture
    min_rest_share: float = 0.5  # postures resting at least this share of the longest are tried
    min_edge_run: int = 4  # this many small excursions in a row are not part of a set
    trim_to_rest: bool = True  # sets start after and end before a rest at the start posture
    set_rest_gap_s: float = 2.0  # a set starts/ends within this time of a rest at its start posture
    min_rom_deg: float = 10.0  # smallest excursion counted as a (partial) rep
    rel_prominence: float = 0.25  # ... and at least this share of a typical full rep
    min_rep_s: float = 0.3
    max_rep_s: float = 15.0
    min_reps: int = 3  # fewer reps in a bout is not a set
    max_trough_offset: float = 0.25  # a rep starts or ends within this share of ROM of rest
    min_typical_rom_frac: float = 0.5  # median full-rep ROM >= this share of the exercise's range
    onset_frac: float = 0.05  # rep starts/ends where it leaves/returns within this share of ROM
    rest_context_s: float = 0.5  # the start/end level of a rep is the lowest angle this close to it
    partial_frac: float = 0.7  # ROM below this share of the set median is a partial rep
    pause_s: float = 2.0  # rest between reps longer than this is a pause
    hold_s: float = 1.5  # time within 10 % of the peak longer than this is a hold


DEFAULT_REPS = RepParams()


@dataclass(frozen=True)
class Rep:
    """One repetition: times in s (recording clock), ROM in degrees of segment angle."""

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
class Bout:
    """A stretch of hinge-like motion about one axis: candidate exercise set."""

    start: int  # sample indices into the analysed recording
    stop: int
    axis: FloatArray  # unit main axis in the sensor frame
    planarity: float


@dataclass(frozen=True)
class RepDetection:
    """Sets of reps found in one bout, with the angle trace they were found on."""

    sets: tuple[tuple[Rep, ...], ...]
    angle_deg: FloatArray = field(repr=False)  # polarity-corrected segment angle over the bout
    baseline_deg: float = 0.0

    @property
    def reps(self) -> tuple[Rep, ...]:
        return tuple(r for group in self.sets for r in group)


def _window_sums(xb: FloatArray, w: int, hop: int) -> FloatArray:
    """Sums over ``w`` consecutive blocks, evaluated every ``hop`` blocks -> (C, n_windows)."""
    c = np.concatenate((np.zeros((xb.shape[0], 1)), np.cumsum(xb, axis=1)), axis=1)
    starts = np.arange(0, max(xb.shape[1] - w, 0) + 1, hop)
    stops = np.minimum(starts + w, xb.shape[1])
    return np.asarray(c[:, stops] - c[:, starts])


def impact_signal(acc: FloatArray, rate_hz: float, params: RepParams = DEFAULT_REPS) -> FloatArray:
    """High-passed magnitude of the specific force (m/s²): heel-strike transients, not motion."""
    a = acc.T
    amag = np.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])
    return highpass(amag[:, None], min(params.impact_hz, 0.25 * rate_hz), rate_hz)[:, 0]


def detect_bouts(t: FloatArray, gyr: FloatArray, impact: FloatArray, up: FloatArray, rate_hz: float,
                 params: RepParams = DEFAULT_REPS) -> list[Bout]:
    """Candidate exercise sets: windows of planar, smooth rotation about a horizontal axis.

    ``gyr`` (rad/s, bias-corrected) and ``up`` (unit vertical) are (N, 3) in the sensor frame,
    ``impact`` is :func:`impact_signal` (N,). Windows are evaluated on ~``block_rate_hz`` block sums.
    """
    n = t.size
    blocks = Blocks.make(n, rate_hz, params.block_rate_hz)
    nb = blocks.starts.size
    block_rate = rate_hz / blocks.size
    w = max(round(params.window_s * block_rate), 1)
    hop = max(round(params.hop_s * block_rate), 1)
    if nb < w:
        w = nb
    g = np.ascontiguousarray(gyr.T)
    prods = np.stack((g[0] * g[0], g[1] * g[1], g[2] * g[2], g[0] * g[1], g[0] * g[2], g[1] * g[2]))
    mom_b = np.add.reduceat(prods, blocks.starts, axis=1)
    jerk_b = np.sqrt(blocks.mean((impact * impact)[None, :])[0])
    up_b = np.add.reduceat(np.ascontiguousarray(up.T), blocks.starts, axis=1)

    mom = _window_sums(mom_b, w, hop)
    cnt = _window_sums(blocks.counts[None, :], w, hop)[0]
    jerk = _window_sums(jerk_b[None, :], w, hop)[0] / w
    upw = _window_sums(up_b, w, hop)
    upw /= np.maximum(np.linalg.norm(upw, axis=0), 1e-12)
    nw = mom.shape[1]
    cov = np.empty((nw, 3, 3))
    cov[:, 0, 0], cov[:, 1, 1], cov[:, 2, 2] = mom[0], mom[1], mom[2]
    cov[:, 0, 1] = cov[:, 1, 0] = mom[3]
    cov[:, 0, 2] = cov[:, 2, 0] = mom[4]
    cov[:, 1, 2] = cov[:, 2, 1] = mom[5]
    evals, evecs = np.linalg.eigh(cov)
    axes = evecs[:, :, -1]
    trace = np.maximum(evals.sum(axis=1), 1e-300)
    planarity = evals[:, -1] / trace
    rms_dps = np.rad2deg(np.sqrt(trace / np.maximum(cnt, 1.0)))
    vertical = np.abs(np.einsum("ij,ji->i", axes, upw))
    # sustained heel-strike transients (walking) are never part of a set and separate sets
    walking = keep_long_runs(jerk > params.max_window_impact_ms2, params.walk_min_windows)
    if rate_hz < params.min_impact_rate_hz:
        walking[:] = False
    cand = ((rms_dps >= params.min_rate_dps) & (planarity >= params.min_planarity)
            & (vertical <= params.max_axis_vertical) & ~walking)
    idx = np.flatnonzero(cand)
    if idx.size == 0:
        return []
    # group consecutive candidate windows sharing their axis and close in time
    win_start_b = np.arange(nw) * hop
    agree = np.abs(np.einsum("ij,ij->i", axes[idx[1:]], axes[idx[:-1]]))
    gap_b = (win_start_b[idx[1:]] - (win_start_b[idx[:-1]] + w)) / block_rate
    # never bridge across windows with heel-strike transients (walking between sets)
    impacts = np.concatenate(([0], np.cumsum(walking)))
    walked = (impacts[idx[1:]] - impacts[idx[:-1] + 1]) > 0
    new = ((agree < np.cos(np.deg2rad(params.axis_agree_deg))) | (gap_b > params.merge_gap_s)
           | walked)
    label = np.concatenate(([0], np.cumsum(new)))
    bouts: list[Bout] = []
    margin_b = round(params.margin_s * block_rate)
    for lab in range(int(label[-1]) + 1):
        members = idx[label == lab]
        c = cov[members].sum(axis=0)
        axis, plan = principal_axis(c)
        b0 = max(int(win_start_b[members[0]]) - margin_b, 0)
        b1 = min(int(win_start_b[members[-1]]) + w + margin_b, nb)
        start = int(blocks.starts[b0])
        stop = int(blocks.starts[b1]) if b1 < nb else n
        if bouts and start < bouts[-1].stop:  # overlapping margins: split the overlap
            mid = (start + bouts[-1].stop) // 2
            prev = bouts[-1]
            bouts[-1] = Bout(prev.start, mid, prev.axis, prev.planarity)
            start = mid
        bouts.append(Bout(start, stop, axis, plan))
    return bouts


def _first_at_or_below(x: FloatArray, level: float, reverse: bool = False) -> int:
    """Index of the first (or, with ``reverse``, last) sample of ``x`` at or below ``level``."""
    hit = np.flatnonzero(x <= level)
    if hit.size == 0:
        return 0 if not reverse else x.size - 1
    return int(hit[-1] if reverse else hit[0])


def detect_reps(t: FloatArray, angle_deg: FloatArray, params: RepParams = DEFAULT_REPS,
                impact: FloatArray | None = None) -> RepDetection:
    """Repetitions in one bout from its segment angle (degrees, any offset and sign).

    The resting posture is the median angle while the segment is still; reps are excursions
    away from it with prominence of at least ``min_rom_deg`` and ``rel_prominence`` of a typical
    full rep, which start from and return to the resting posture (swings about it, as in gait,
    are not reps). Each rep spans from leaving its preceding trough to returning to its
    following trough; ROM is the peak minus the lower of the two troughs. Partial and pause
    flags are set later, per set (:func:`group_reps`).
    """
    n = t.size
    empty = RepDetection((), np.zeros(0), 0.0)
    if n < 3:
        return empty
    rate = (n - 1) / float(t[-1] - t[0])
    theta = lowpass_zero_phase(angle_deg[:, None], min(params.smooth_hz, 0.4 * rate), rate)[:, 0]
    speed = np.abs(np.gradient(theta, t))
    # resting = slow for a sustained time (turning points of a swing are not rest)
    still = keep_long_runs(speed < params.rest_rate_dps, max(int(params.min_rest_s * rate), 1))
    if not np.any(still) or np.all(still):
        return empty
    # candidate resting postures: levels of the sustained rests, longest total first
    levels = _rest_levels(theta, still, params.rest_cluster_deg, params.min_rest_share)
    r0, r1 = runs(still)
    ct = np.concatenate(([0.0], np.cumsum(theta)))
    rest_lv = (ct[r1] - ct[r0]) / (r1 - r0)
    rest_t = list(zip(t[r0].tolist(), t[r1 - 1].tolist(), rest_lv.tolist(), strict=True))
    # each resting posture and direction is a hypothesis for the start posture; sets must begin
    # or end resting there. The hypothesis with most sets doing both wins; ties go to the one
    # whose sets rest longest at it between reps, then to more reps.
    scored: list[tuple[tuple[int, float, int, int], RepDetection]] = []
    for rank, level in enumerate(levels):
        for polarity in (1.0, -1.0):
            det = _reps_from_rest(t, theta, level, polarity, rate, params, impact)
            sets = []
            strict = 0
            inner = 0.0
            for run in det.sets:
                for g in group_reps(run, params):
                    at_start, at_end = _rests_around(g, rest_t, level, params)
                    if at_start or at_end:
                        sets.append(g)
                        strict += int(at_start and at_end)
                        inner += sum(b - a for a, b, lev in rest_t
                                     if g[0].start_s < a and b < g[-1].end_s and abs(lev - level) <= 10.0)
            loose = sum(len(g) for g in sets)
            scored.append(((strict, round(inner, 1), loose, -rank),
                           RepDetection(tuple(sets), det.angle_deg, level)))
    if not scored:
        return empty
    best = max(scored, key=lambda x: x[0])[1]
    if not params.trim_to_rest:
        return best
    trimmed = tuple(g for g in (_trim_to_rest(g, rest_t, best.baseline_deg, params) for g in best.sets)
                    if len(g) >= params.min_reps)
    return RepDetection(trimmed, best.angle_deg, best.baseline_deg)


def _trim_to_rest(group: tuple[Rep, ...], rests: list[tuple[float, float, float]], level: float,
                  params: RepParams) -> tuple[Rep, ...]:
    """Drop leading reps not preceded, and trailing reps not followed, by a rest at the start
    posture (a swing of a step just before/after the set), keeping at least one rep each side."""
    lo, hi = 0, len(group)
    while hi - lo > 1 and not _rests_around(group[lo:hi], rests, level, params)[0]:
        lo += 1
    while hi - lo > 1 and not _rests_around(group[lo:hi], rests, level, params)[1]:
        hi -= 1
    if not any(_rests_around(group[lo:hi], rests, level, params)):
        return group
    return group[lo:hi]


def _rests_around(group: tuple[Rep, ...], rests: list[tuple[float, float, float]], level: float,
                  params: RepParams) -> tuple[bool, bool]:
    """Whether the set begins / ends with the segment resting at its start posture."""
    med = float(np.median([r.rom_deg for r in group]))
    tol = max(params.rest_cluster_deg, params.max_trough_offset * med)
    first, last = group[0].start_s, group[-1].end_s
    at_start = at_end = False
    for a, b, lev in rests:
        if abs(lev - level) > tol:
            continue
        at_start |= first - params.set_rest_gap_s <= b <= first + 0.5
        at_end |= last - 0.5 <= a <= last + params.set_rest_gap_s
    return at_start, at_end


def _rest_levels(theta: FloatArray, still: BoolArray, tol_deg: float, min_share: float) -> list[float]:
    """Distinct angle levels of the sustained rests, longest total rest first.

    Leader clustering: the rest with the most time not yet assigned is a new level, and every
    rest within ``tol_deg`` of it joins it (no chaining through intermediate levels). Levels
    holding less than ``min_share`` of the longest level's rest time are dropped.
    """
    starts, stops = runs(still)
    c = np.concatenate(([0.0], np.cumsum(theta)))
    dur = (stops - starts).astype(np.float64)
    lv = (c[stops] - c[starts]) / dur  # mean angle of each rest
    free = np.ones(lv.size, dtype=bool)
    centres: list[float] = []
    totals: list[float] = []
    while np.any(free):
        lead = int(np.argmax(np.where(free, dur, -1.0)))
        member = free & (np.abs(lv - lv[lead]) <= tol_deg)
        centres.append(float(np.average(lv[member], weights=dur[member])))
        totals.append(float(dur[member].sum()))
        free &= ~member
    tot = np.asarray(totals)
    order = np.argsort(-tot, kind="stable")
    return [centres[i] for i in order if tot[i] >= min_share * tot.max()]


def _reps_from_rest(t: FloatArray, theta: FloatArray, baseline: float, polarity: float, rate: float,
                    params: RepParams, impact: FloatArray | None = None) -> RepDetection:
    """Reps as excursions of ``theta`` from the resting level ``baseline`` towards ``polarity``."""
    n = t.size
    p = polarity * (theta - baseline)
    min_dist = max(int(params.min_rep_s * rate * 0.5), 1)
    peaks, props = find_peaks(p, prominence=params.min_rom_deg, distance=min_dist)
    if peaks.size == 0:
        return RepDetection((), p, baseline)
    prom = props["prominences"]
    big = np.sort(prom)[prom.size // 2:]
    peaks = peaks[prom >= params.rel_prominence * float(np.median(big))]

    # troughs between consecutive peaks (and before the first / after the last)
    edges = np.concatenate(([0], peaks, [n - 1]))
    troughs = np.empty(peaks.size + 1, dtype=np.intp)
    for i in range(peaks.size + 1):
        lo, hi = int(edges[i]), int(edges[i + 1])
        troughs[i] = lo + int(np.argmin(p[lo:hi + 1]))
    ctx = max(int(params.rest_context_s * rate), 1)
    reps: list[Rep] = []
    impacts: list[float] = []
    groups: list[list[Rep]] = [[]]
    for i, pk in enumerate(peaks):
        tl, tr = int(troughs[i]), int(troughs[i + 1])
        top = float(p[pk])
        # the segment must both rise into and fall out of the peak (a posture change is not a rep)
        if top <= 0.0 or max(float(p[tl]), float(p[tr])) > 0.5 * top:
            continue
        # movement onset/offset: leaving / regaining the trough, or rest if the trough lies below it
        base_l = max(float(p[tl]), 0.0)
        base_r = max(float(p[tr]), 0.0)
        s = tl + _first_at_or_below(p[tl:pk + 1], base_l + params.onset_frac * (top - base_l), reverse=True)
        e = pk + _first_at_or_below(p[pk:tr + 1], base_r + params.onset_frac * (top - base_r))
        # the level the rep starts from / ends at: lowest point just before onset / after offset
        low_l = float(p[max(tl, s - ctx):s + 1].min())
        low_r = float(p[e:min(tr, e + ctx) + 1].min())
        tol = params.max_trough_offset * top
        ok_l = abs(low_l) <= tol
        ok_r = abs(low_r) <= tol
        if not (ok_l or ok_r):
            # a swing that never comes back to rest (gait, fidgeting) ends the current set
            if groups[-1]:
                groups.append([])
            continue
        rom = top - min(low_l if ok_l else np.inf, low_r if ok_r else np.inf)
        dur = float(t[e] - t[s])
        if not params.min_rep_s <= dur <= params.max_rep_s:
            continue
        rep_impact = (float(np.sqrt(np.mean(impact[s:e + 1] ** 2)))
                      if impact is not None and rate >= params.min_impact_rate_hz else 0.0)
        if rep_impact > params.max_impact_ms2:
            # heel strikes during the excursion: a gait cycle, which also ends the current set
            if groups[-1]:
                groups.append([])
            continue
        near_top = p[s:e + 1] >= top - 0.1 * rom
        held = float(np.count_nonzero(near_top)) / rate > params.hold_s
        rep = Rep(float(t[s]), float(t[pk]), float(t[e]), rom, False, False, held)
        reps.append(rep)
        groups[-1].append(rep)
        impacts.append(rep_impact)
    # the first/last "rep" of a run with heel strikes well above the run's own is the swing of a
    # step taken just before or after the set
    out: list[tuple[Rep, ...]] = []
    k = 0
    for g in groups:
        imp = np.asarray(impacts[k:k + len(g)])
        k += len(g)
        lo, hi = 0, len(g)
        while hi - lo >= 3:
            limit = max(params.edge_impact_ms2, params.edge_impact_ratio * float(np.median(imp[lo:hi])))
            if imp[lo] > limit:
                lo += 1
            elif imp[hi - 1] > limit:
                hi -= 1
            else:
                break
        g = g[lo:hi]
        if g:
            out.append(tuple(g))
    return RepDetection(tuple(out), p, baseline)


def _split_small_runs(group: tuple[Rep, ...], params: RepParams) -> list[tuple[Rep, ...]]:
    """Remove runs of ``min_edge_run`` or more consecutive small excursions (steps, fidgeting
    next to or between sets) and split the set there; shorter runs stay, as partial reps.

    Small means below ``partial_frac`` of the typical full rep, taken as the median of the reps
    reaching at least half the largest excursion (robust to many small swings).
    """
    if len(group) < params.min_reps:
        return [group]
    rom = np.array([r.rom_deg for r in group])
    ref = float(np.median(rom[rom >= 0.5 * rom.max()]))
    small = rom < params.partial_frac * ref
    keep = np.ones(rom.size, dtype=bool)
    starts, stops = runs(small)
    for a, b in zip(starts, stops, strict=True):
        if b - a >= params.min_edge_run:
            keep[a:b] = False
    out: list[tuple[Rep, ...]] = []
    ks, ke = runs(keep)
    for a, b in zip(ks, ke, strict=True):
        out.append(group[int(a):int(b)])
    return out


def group_reps(reps: tuple[Rep, ...], params: RepParams = DEFAULT_REPS) -> list[tuple[Rep, ...]]:
    """Split consecutive reps into sets at rests longer than ``merge_gap_s``; flag partial reps
    (ROM below ``partial_frac`` of the set median) and pauses; drop sets of fewer than
    ``min_reps`` reps."""
    if not reps:
        return []
    starts = np.array([r.start_s for r in reps])
    ends = np.array([r.end_s for r in reps])
    breaks = np.flatnonzero(starts[1:] - ends[:-1] > params.merge_gap_s) + 1
    out: list[tuple[Rep, ...]] = []
    pieces = [piece
              for a, b in zip(np.concatenate(([0], breaks)), np.concatenate((breaks, [len(reps)])), strict=True)
              for piece in _split_small_runs(reps[int(a):int(b)], params)]
    for group in pieces:
        if len(group) < params.min_reps:
            continue
        med = float(np.median([r.rom_deg for r in group]))
        flagged = []
        for i, r in enumerate(group):
            paused = i > 0 and r.start_s - group[i - 1].end_s > params.pause_s
            flagged.append(Rep(r.start_s, r.peak_s, r.end_s, r.rom_deg,
                               r.rom_deg < params.partial_frac * med, bool(paused), r.held))
        out.append(tuple(flagged))
    return out


def bout_angle(up: FloatArray, bout: Bout) -> FloatArray:
    """Segment angle (degrees) over a bout about the bout's axis."""
    return angle_about_axis(up[bout.start:bout.stop], bout.axis)
