"""Home exercises the library recognises and the single-IMU kinematic model of each.

The exercise vocabulary is the contract's (:class:`rtm.contract.clinical.Exercise`);
:data:`MODELLED_EXERCISES` are those that have a model here.

Each exercise names the body segment carrying the IMU, the segment's start posture, the main
joint axis (always horizontal for these exercises, so the rotation about it is observable from
gravity), the usual range of motion, and the gain from segment rotation to joint angle
(1 except heel slides, where the shank turns by half the knee angle when hip and heel stay on
the bed and thigh and shank are equally long). Method: planar one-degree-of-freedom segment
models as used for single-IMU joint-angle estimation (Seel, Raisch & Schauer 2014, Sensors
14(4):6891-6909, Sec. 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from rtm.contract.clinical import Exercise as Exercise  # re-exported: the contract's vocabulary

FloatArray = NDArray[np.float64]

ML_AXIS = np.array([0.0, -1.0, 0.0])  # sagittal-plane rotation (flexion forward/up)
AP_AXIS = np.array([1.0, 0.0, 0.0])  # frontal-plane rotation (abduction)


class Segment(StrEnum):
    """Body segment carrying the IMU."""

    THIGH = "thigh"
    SHANK = "shank"
    UPPER_ARM = "upper_arm"
    FOREARM = "forearm"


class Posture(StrEnum):
    """Whole-body posture at the start of the exercise."""

    STANDING = "standing"
    SITTING = "sitting"
    SUPINE = "supine"


@dataclass(frozen=True)
class ExerciseSpec:
    """Kinematic model of one exercise for a single segment-mounted IMU.

    ``start_pitch_deg`` is the segment's distal direction at the start posture, measured from
    straight down, rotating about ``axis`` (world frame: x forward, y left, z up).
    ``joint_gain`` converts segment rotation into joint angle.
    """

    exercise: Exercise
    segment: Segment
    posture: Posture
    axis: FloatArray
    start_pitch_deg: float
    rom_range_deg: tuple[float, float]
    joint_gain: float = 1.0
    lever_m: float = 0.2  # IMU distance from the rotating joint along the segment


SPECS: dict[Exercise, ExerciseSpec] = {
    Exercise.SQUAT: ExerciseSpec(Exercise.SQUAT, Segment.THIGH, Posture.STANDING, ML_AXIS, 0.0,
                                 (50.0, 95.0)),
    Exercise.SIT_TO_STAND: ExerciseSpec(Exercise.SIT_TO_STAND, Segment.THIGH, Posture.SITTING,
                                        -ML_AXIS, 90.0, (60.0, 90.0)),
    Exercise.HEEL_SLIDE: ExerciseSpec(Exercise.HEEL_SLIDE, Segment.SHANK, Posture.SUPINE, -ML_AXIS,
                                      90.0, (50.0, 110.0), joint_gain=2.0, lever_m=0.25),
    Exercise.KNEE_EXTENSION: ExerciseSpec(Exercise.KNEE_EXTENSION, Segment.SHANK, Posture.SITTING,
                                          ML_AXIS, 0.0, (45.0, 90.0), lever_m=0.25),
    Exercise.STRAIGHT_LEG_RAISE: ExerciseSpec(Exercise.STRAIGHT_LEG_RAISE, Segment.THIGH,
                                              Posture.SUPINE, ML_AXIS, 90.0, (30.0, 70.0),
                                              lever_m=0.3),
    Exercise.SHOULDER_FLEXION: ExerciseSpec(Exercise.SHOULDER_FLEXION, Segment.UPPER_ARM,
                                            Posture.STANDING, ML_AXIS, 0.0, (80.0, 170.0),
                                            lever_m=0.15),
    Exercise.SHOULDER_ABDUCTION: ExerciseSpec(Exercise.SHOULDER_ABDUCTION, Segment.UPPER_ARM,
                                              Posture.STANDING, AP_AXIS, 0.0, (70.0, 160.0),
                                              lever_m=0.15),
    Exercise.ELBOW_FLEXION: ExerciseSpec(Exercise.ELBOW_FLEXION, Segment.FOREARM, Posture.STANDING,
                                         ML_AXIS, 0.0, (90.0, 140.0), lever_m=0.15),
}


# The exercises supported by rep counting and range-of-motion analysis: every exercise of the
# contract's vocabulary (``Exercise``) that has a kinematic model here, in the enum's order.
MODELLED_EXERCISES: tuple[Exercise, ...] = tuple(e for e in Exercise if e in SPECS)


def spec_for(exercise: Exercise | str) -> ExerciseSpec:
    """The kinematic model of an exercise (accepts the enum or its string value)."""
    ex = Exercise(exercise)
    if ex not in SPECS:
        raise ValueError(f"no kinematic model for exercise {ex.value!r}")
    return SPECS[ex]


def model_for(name: Exercise | str | None) -> ExerciseSpec | None:
    """The kinematic model of an exercise name, or None (unknown name, ``other``, no model)."""
    if name is None:
        return None
    try:
        return SPECS.get(Exercise(name))
    except ValueError:
        return None
