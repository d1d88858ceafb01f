"""Joint axis, joint angle and range of motion per repetition from fused orientation.

Method: the main joint axis is the principal axis of the angular-rate covariance during the
movement (hinge-axis identification as in Seel, Raisch & Schauer 2014, Sensors 14(4), and
McGrath et al. 2018, J Biomech 74 (PCA of gyroscope data)); because every supported
exercise turns about a horizontal axis, the segment angle is the direction of gravity
projected onto the plane normal to that axis (inclination about the axis), which is immune to
heading drift. Range of motion per repetition is the angle excursion, peak minus the lower of
the two surrounding troughs, scaled by the exercise's segment-to-joint gain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def principal_axis(cov: FloatArray) -> tuple[FloatArray, float]:
    """Unit principal axis of a 3x3 angular-rate second-moment matrix and its planarity.

    Planarity is the share of rotation energy about the axis (1 for a perfect hinge, 1/3 for
    isotropic motion). The sign is fixed so the largest-magnitude component is positive.
    """
    w, v = np.linalg.eigh(cov)
    axis = v[:, -1]
    axis = axis * np.sign(axis[np.argmax(np.abs(axis))])
    total = float(w.sum())
    return np.asarray(axis), (float(w[-1]) / total if total > 0 else 0.0)


def axis_basis(axis: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Two unit vectors completing ``axis`` to a right-handed orthonormal basis."""
    a = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u1 = np.cross(a, helper)
    u1 /= np.linalg.norm(u1)
    u2 = np.cross(a, u1)
    return u1, u2


def angle_about_axis(up: FloatArray, axis: FloatArray) -> FloatArray:
    """Segment rotation about a horizontal sensor-frame ``axis`` from the vertical ``up`` (N, 3).

    Returns degrees, unwrapped, with an arbitrary offset. Rotating the segment by +x about the
    axis turns the sensor-frame vertical by -x, hence the sign.
    """
    u1, u2 = axis_basis(axis)
    a = up @ u1
    b = up @ u2
    return np.asarray(-np.rad2deg(np.unwrap(np.arctan2(b, a))))


@dataclass(frozen=True)
class RomSummary:
    """Per-session range-of-motion summary (degrees of joint angle) and trend inputs."""

    n_reps: int
    n_full_reps: int
    median_deg: float
    max_deg: float
    mean_deg: float
    p90_deg: float
    slope_deg_per_rep: float  # least-squares trend of full-rep ROM within the session

    @classmethod
    def empty(cls) -> RomSummary:
        nan = float("nan")
        return cls(0, 0, nan, nan, nan, nan, nan)


def summarize_rom(rom_deg: Sequence[float] | FloatArray, partial: Sequence[bool] | NDArray[np.bool_]
                  ) -> RomSummary:
    """Median/max/mean/p90 over full reps (all reps if none is full) and the within-session slope."""
    rom = np.asarray(rom_deg, dtype=np.float64)
    part = np.asarray(partial, dtype=bool)
    if rom.size == 0:
        return RomSummary.empty()
    full = rom[~part] if np.any(~part) else rom
    if full.size >= 2:  # least-squares slope against rep number, closed form
        x = np.arange(full.size, dtype=np.float64) - 0.5 * (full.size - 1)
        slope = float(np.dot(x, full) / np.dot(x, x))
    else:
        slope = float("nan")
    return RomSummary(
        n_reps=int(rom.size),
        n_full_reps=int((~part).sum()),
        median_deg=float(np.median(full)),
        max_deg=float(rom.max()),
        mean_deg=float(full.mean()),
        p90_deg=float(np.percentile(full, 90)),
        slope_deg_per_rep=slope,
    )
