"""The generic repetition counter on the hard cases real recordings showed (synth_reps)."""

from __future__ import annotations

import numpy as np
import pytest

from motion import Exercise, analyze_exercise
from motion.analysis import JOINT_ANGLE, SEGMENT_ROTATION
from motion.reps import count_cycles
from simulation import synth
from simulation import synth_reps as hard


def _count_in_set(ses: synth.SyntheticSession, peaks: np.ndarray) -> tuple[int, int]:
    st = ses.sets[0]
    inside = (peaks >= st.start_s - 0.5) & (peaks <= st.end_s + 0.5)
    return int(inside.sum()), int((~inside).sum())


@pytest.mark.parametrize("case", hard.CASES)
def test_hard_cases_count_within_one(case: str) -> None:
    """Each case at three rates: at least two of three sets within +-1 rep (the whole suite,
    measured by the benchmark, does better), and no more than two reps outside the sets."""
    ok = 0
    outside_total = 0
    for seed, rate in ((1, 25.0), (2, 50.0), (3, 100.0)):
        name, ses = hard.simulate_case(np.random.default_rng(seed), case, synth.SensorModel(rate_hz=rate))
        res = analyze_exercise(ses.recording, name)
        found, outside = _count_in_set(ses, np.array([r.peak_s for r in res.reps]))
        ok += abs(found - len(ses.sets[0].reps)) <= 1
        outside_total += outside
    assert ok >= 2, case
    assert outside_total <= 2, case


def test_set_cut_close_counts_the_reps_at_both_ends() -> None:
    for seed in range(4):
        name, ses = hard.simulate_case(np.random.default_rng(10 + seed), "cut_close", synth.SensorModel(rate_hz=50.0))
        assert ses.recording.t[-1] - ses.sets[0].end_s < 0.1  # no rest after the last rep
        assert abs(analyze_exercise(ses.recording, name).n_reps - len(ses.sets[0].reps)) <= 1


def test_blocks_of_held_fast_and_low_reps() -> None:
    name, ses = hard.simulate_case(np.random.default_rng(5), "blocks", synth.SensorModel(rate_hz=25.0),
                                   exercise="knee_extension")
    res = analyze_exercise(ses.recording, name)
    truth = ses.sets[0].reps
    assert len(truth) == 30 and abs(res.n_reps - 30) <= 1
    # low-amplitude reps are counted and marked partial; the held reps are not
    low = [r for r in res.reps if r.peak_s > truth[20].start_s - 0.2]
    assert len(low) >= 9 and sum(r.partial for r in low) >= 8
    assert not any(r.partial for r in res.reps if r.peak_s < truth[9].end_s)
    # the hold at the top is not taken for the start posture: reps start when the movement does
    starts = np.array([r.start_s for r in res.reps])
    errors = [float(np.min(np.abs(starts - tr.start_s))) for tr in truth]
    assert float(np.median(errors)) < 0.5


def test_slow_tempo_with_wobble_and_bias_walk_keeps_rom() -> None:
    name, ses = hard.simulate_case(np.random.default_rng(7), "slow_wobble", synth.SensorModel(rate_hz=50.0),
                                   exercise="knee_extension")
    res = analyze_exercise(ses.recording, name)
    truth = ses.sets[0].reps
    assert res.n_reps == len(truth)
    errors = [abs(r.rom_deg - tr.rom_deg) for r, tr in zip(res.reps, truth, strict=True)]
    assert float(np.mean(errors)) < 5.0


def test_unknown_exercise_is_counted_and_rom_is_segment_rotation() -> None:
    name, ses = hard.simulate_case(np.random.default_rng(4), "vertical_axis", synth.SensorModel(rate_hz=50.0))
    res = analyze_exercise(ses.recording, name)  # "external_rotation": no kinematic model
    assert res.exercise is Exercise.OTHER and res.name == name
    assert res.rom_kind == SEGMENT_ROTATION and all(s.rom_kind == SEGMENT_ROTATION for s in res.sets)
    assert abs(res.n_reps - len(ses.sets[0].reps)) <= 1
    truth = np.median([r.rom_deg for r in ses.sets[0].reps])
    assert res.rom.median_deg == pytest.approx(truth, abs=6.0)
    assert analyze_exercise(ses.recording, None).n_reps == res.n_reps
    assert analyze_exercise(ses.recording, "other").n_reps == res.n_reps


def test_modelled_exercise_reports_joint_angle_and_plausibility() -> None:
    rng = np.random.default_rng(8)
    style = hard.CLEAN
    traj = synth.rep_trajectory(rng, n_reps=8, rom_deg=60.0, tempo_hz=0.5, style=style)
    ses = synth.simulate_session(rng, "heel_slide", synth.SessionPlan(style=style), trajectories=[traj])
    res = analyze_exercise(ses.recording, "heel_slide")
    assert res.rom_kind == JOINT_ANGLE and res.sets[0].rom_plausible
    assert res.rom.median_deg == pytest.approx(60.0, abs=4.0)  # the joint angle, twice the shank's rotation


def test_handling_the_device_walking_or_fidgeting_is_rarely_counted() -> None:
    """Six two-minute recordings of handling the device, walking and fidgeting hold no rep."""
    clean = 0
    for i, ex in enumerate(("elbow_flexion", "knee_extension", "shoulder_flexion", "squat", "heel_slide",
                            "straight_leg_raise")):
        day = hard.simulate_donning(np.random.default_rng(30 + i), ex, 120.0, synth.SensorModel(rate_hz=50.0))
        clean += analyze_exercise(day.recording, ex).n_reps == 0
    assert clean == 6


def test_start_posture_is_where_partial_reps_start() -> None:
    # full reps held 3 s at the top, then reps of 40 %: all start from 0; the top level is not rest
    rate = 50.0
    parts = []
    for amp, hold in [(60.0, 3.0)] * 5 + [(24.0, 0.0)] * 5:
        up = np.linspace(0.0, np.pi, int(rate))
        parts += [amp * (1 - np.cos(up)) / 2, np.full(int(hold * rate), amp), amp * (1 + np.cos(up)) / 2]
    angle = np.concatenate(parts)
    t = np.arange(angle.size) / rate
    reps = count_cycles(t, -angle, period_s=2.0)  # any sign
    assert len(reps) == 10
    assert all(r.rom_deg == pytest.approx(a, abs=1.0) for r, a in zip(reps, [60.0] * 5 + [24.0] * 5, strict=True))
    assert reps[0].start_s < 0.3 and reps[0].held and not reps[-1].held


def test_set_with_many_partial_reps_is_counted_and_they_are_marked() -> None:
    """Half the reps partial: the full ones are alike, so it is one set, and the small ones are
    counted and flagged partial (not a reason to reject the set). The generator's partial reps
    reach 35-65 % of a full one, the flag is below 70 %: a partial rep near 65 % may go either
    way, hence +-2 on the flags."""
    ok = 0
    for seed in range(4):
        rng = np.random.default_rng(40 + seed)
        style = synth.RepStyle(p_partial=0.5, p_pause=0.0, p_hold=0.0)
        traj = synth.rep_trajectory(rng, n_reps=10, rom_deg=60.0, tempo_hz=0.5, style=style)
        ses = synth.simulate_session(rng, "knee_extension", synth.SessionPlan(style=style), trajectories=[traj],
                                     sensor=synth.SensorModel(rate_hz=50.0))
        res = analyze_exercise(ses.recording, "knee_extension")
        truth = ses.sets[0].reps
        n_partial = sum(r.partial for r in truth)
        ok += abs(res.n_reps - len(truth)) <= 1 and abs(sum(r.partial for r in res.reps) - n_partial) <= 2
    assert ok >= 3


def _reps_signal(t0: float, t1: float, rate: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Back-to-back reps of 40 deg, one every 2 s (peaks at 1, 3, 5, ... s), seen from t0 to t1."""
    t = np.arange(round((t1 - t0) * rate) + 1) / rate + t0
    return t, 20.0 * (1.0 - np.cos(np.pi * t))


@pytest.mark.parametrize(("t0", "t1", "expected"), [
    (0.3, 19.7, 10),  # cut in the first rep's rise and the last rep's fall: both count
    (1.6, 20.0, 9),  # the first rep seen only as the end of its fall (< half a cycle): not a rep
    (1.6, 21.6, 10),  # two cut reps of about 0.3 cycle each do not make one
    (1.2, 20.8, 10),  # a fall from near the top and a rise nearly to it: together one cycle
])
def test_reps_cut_by_the_recording_count_as_rounded_cycle_fractions(t0: float, t1: float, expected: int) -> None:
    t, angle = _reps_signal(t0, t1)
    reps = count_cycles(t, angle, 2.0, polarity=1.0, open_ends=(True, True))
    assert len(reps) == expected


def test_a_cut_rep_is_a_fraction_of_the_whole_rep_next_to_it() -> None:
    """Reps growing from 30 to 60 deg over a clip cut just before the first peak (0.6 of a
    cycle) and 0.1 cycle after the last trough: 9 whole reps and 0.7 of a cycle make 10. Against
    the set's median rep (about 45 deg) the small cut one would look like 0.37 of a cycle and
    the count would be 9."""
    rate, t0, t1 = 50.0, 0.8, 20.2
    t = np.arange(round((t1 - t0) * rate) + 1) / rate + t0
    amp = 30.0 + 30.0 * (t - t0) / (t1 - t0)
    reps = count_cycles(t, amp * (1.0 - np.cos(np.pi * t)) / 2.0, 2.0, polarity=1.0, open_ends=(True, True))
    assert len(reps) == 10


def test_a_posture_changed_before_the_set_is_not_a_cut_rep() -> None:
    """The arm hanging 40 deg below the set's start posture and lifted to it before the reps
    (all within the first window, so the recording counts as starting inside the set), as the
    generator's pendulum does: what lies more than one cycle before the first rep is no part of
    a cut rep, so 10 reps, not 11 (the lift and settle taken for 0.6 of a cycle)."""
    rate = 50.0
    t = np.arange(round(27.0 * rate) + 1) / rate
    lift = np.clip((t - 3.0) / 2.5, 0.0, 1.0)
    before = -40.0 + 45.0 * (1.0 - np.cos(np.pi * lift)) / 2.0  # to 5 deg above it by 5.5 s
    settle = np.clip((t - 5.5) / 1.5, 0.0, 1.0)
    before -= 5.0 * (1.0 - np.cos(np.pi * settle)) / 2.0  # and down to the start posture by 7 s
    reps = 20.0 * (1.0 - np.cos(np.pi * np.clip(t - 7.0, 0.0, 20.0)))
    found = count_cycles(t, np.where(t < 7.0, before, reps), 2.0, polarity=1.0, open_ends=(True, False))
    assert len(found) == 10


def test_drift_is_estimated_where_the_set_repeats_not_from_the_handling_next_to_it() -> None:
    from motion.reps import remove_drift

    rate = 50.0
    t = np.arange(round(60 * rate)) / rate
    reps = 20.0 * (1.0 - np.cos(np.pi * t))
    drift = 1.5 * t  # a bias the fusion could not see: a ramp of the integral
    handling = np.where(t > 45.0, 90.0, 0.0)  # the device turned over after the set
    core = slice(0, round(44 * rate))
    out = remove_drift(reps + drift + handling, t, core, round(2.0 * rate))
    # the reps keep their levels to within a degree over the set, whatever happened after it
    resid = out[core] - reps[core]
    assert float(np.ptp(resid)) < 1.0
    # a least-squares line over a span that includes the handling would be tilted by it
    span = t[: round(50 * rate)]
    x = (reps + drift + handling)[: span.size]
    slope = np.polyfit(span, x, 1)[0]
    assert abs(slope - 1.5) > 0.3


def test_cycle_similarity_is_high_for_one_movement_and_low_for_handling() -> None:
    """Reps of one movement correlate after time normalisation whatever their ROM, tempo or hold;
    excursions about changing axes (handling the device) do not."""
    from motion.reps import DEFAULT_REPS, Rep, cycle_similarity

    rate = 50.0
    rng = np.random.default_rng(7)
    parts: list[np.ndarray] = []
    reps: list[Rep] = []
    axes_same, axes_random = [], []
    t0 = 0.0
    for amp, dur, hold in [(60.0, 2.0, 0.0), (20.0, 1.0, 0.0), (60.0, 3.0, 2.0), (40.0, 2.0, 0.0)]:
        up = np.linspace(0.0, np.pi, int(dur / 2 * rate))
        prof = np.concatenate((amp * (1 - np.cos(up)) / 2, np.full(int(hold * rate), amp), amp * (1 + np.cos(up)) / 2))
        parts.append(prof)
        n = prof.size
        reps.append(Rep(t0, t0 + n / (2 * rate), t0 + (n - 1) / rate, amp, False, False, hold > 0))
        t0 += n / rate
        axes_same.append(np.tile([[0.0], [0.0], [1.0]], (1, n)))
        ax = rng.normal(size=3)
        axes_random.append(np.tile((ax / np.linalg.norm(ax))[:, None], (1, n)))
    angle = np.concatenate(parts)
    t = np.arange(angle.size) / rate
    same = cycle_similarity(t, np.concatenate(axes_same, axis=1) * angle, reps)
    assert same.min() > 0.8
    # the same sizes, but each excursion about its own axis and with an uneven shape
    wobble = np.concatenate([np.sin(np.linspace(0, rng.uniform(2, 5) * np.pi, p.size)) * p.max() for p in parts])
    handled = cycle_similarity(t, np.concatenate(axes_random, axis=1) * wobble, reps)
    assert float(np.median(handled)) < DEFAULT_REPS.min_cycle_similarity



@pytest.mark.parametrize(("circles", "rate"), [(7.3, 50.0), (12.6, 25.0)])
def test_circles_by_phase_counts_a_circular_motion_cut_anywhere(circles: float, rate: float) -> None:
    """The independent circle count the SPAR pendulum row uses: 2-D phase over 2 pi."""
    from motion.recording import ImuRecording
    from tools.validation.validate import circles_by_phase

    f = 0.8
    t = np.arange(round(circles / f * rate)) / rate
    phase = 2 * np.pi * f * t + 0.9  # cut in the middle of a circle
    rng = np.random.default_rng(3)
    gyr = np.stack((2.0 * np.cos(phase), 1.2 * np.sin(phase), 0.1 * np.sin(2 * phase)), axis=1)
    gyr += 0.05 * rng.normal(size=gyr.shape)
    acc = np.tile([0.0, 0.0, 9.81], (t.size, 1))
    assert circles_by_phase(ImuRecording(t, acc, gyr)) == pytest.approx(circles, abs=0.25)


@pytest.mark.parametrize(("cycles", "rate"), [(7.3, 50.0), (19.6, 25.0)])
def test_cycles_by_period_counts_a_rhythm_cut_anywhere(cycles: float, rate: float) -> None:
    """The periodicity count of the SPAR rows: duration over the 3-D autocorrelation period."""
    from tools.validation.validate import cycles_by_period

    f = 0.7
    t = np.arange(round(cycles / f * rate)) / rate
    phase = 2 * np.pi * f * t + 2.0
    x = np.stack((np.cos(phase), 0.5 * np.sin(phase), 0.2 * np.cos(2 * phase)), axis=1)
    x += 0.05 * np.random.default_rng(4).normal(size=x.shape)
    assert cycles_by_period(t, x) == pytest.approx(cycles, abs=0.3)
