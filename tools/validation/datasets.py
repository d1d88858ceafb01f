"""Loaders for the real validation recordings (the only module of the package that reads files).

The shared data folder is ``$RTM_SHARED_DATA`` or, when unset, ``<project root>/../shared/data``.
Sources: gaitmap example data (MaD-Lab, FAU Erlangen-Nürnberg, MIT licence), the Oxford Step
Counter data set (Salvi et al. 2018, EMBC, CC BY 4.0) and BROAD
(Laidig, Caruso, Cereatti, Seel 2021, Data 6(7):72, CC BY 4.0). Data are read in place,
never copied into the project.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from motion.errors import DatasetUnavailableError
from motion.recording import GRAVITY, AccRecording, ImuRecording

FloatArray = NDArray[np.float64]

ENV_VAR = "RTM_SHARED_DATA"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

BROAD_FILES = (
    "02_undisturbed_slow_rotation_B.hdf5",
    "07_undisturbed_fast_rotation_B.hdf5",
    "10_undisturbed_slow_translation_A.hdf5",
    "24_disturbed_tapping_A.hdf5",
)

GAITMAP_RATE_HZ = 204.8
GAITMAP_MOCAP_RATE_HZ = 100.0


def shared_data_dir() -> Path:
    """The shared data folder (may not exist)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else (PROJECT_ROOT / ".." / "shared" / "data").resolve()


def _require(path: Path) -> Path:
    if not path.exists():
        raise DatasetUnavailableError(f"{path} not found (set {ENV_VAR} to the shared data folder)")
    return path


@dataclass(frozen=True)
class BroadTrial:
    """One BROAD trial: IMU data, optical reference (ENU) and the movement mask."""

    name: str
    rate_hz: float
    gyr: FloatArray
    acc: FloatArray
    opt_quat: FloatArray
    movement: NDArray[np.bool_]

    def recording(self) -> ImuRecording:
        t = np.arange(self.gyr.shape[0]) / self.rate_hz
        return ImuRecording(t, self.acc, self.gyr)


def load_broad(name: str, root: Path | None = None) -> BroadTrial:
    """Read one BROAD HDF5 trial (needs ``h5py``)."""
    import h5py  # only the validation path needs it

    path = _require((root or shared_data_dir()) / "broad" / name)
    with h5py.File(path, "r") as f:
        return BroadTrial(
            name=name.removesuffix(".hdf5"),
            rate_hz=float(f.attrs["sampling_rate"]),
            gyr=np.ascontiguousarray(f["imu_gyr"][:], dtype=np.float64),
            acc=np.ascontiguousarray(f["imu_acc"][:], dtype=np.float64),
            opt_quat=np.asarray(f["opt_quat"][:], dtype=np.float64),
            movement=np.asarray(f["movement"][:], dtype=bool).reshape(-1),
        )


@dataclass(frozen=True)
class GaitmapFoot:
    """One foot of the gaitmap example: IMU, labelled strides and mocap heel/toe markers."""

    foot: str
    recording: ImuRecording
    stride_start: NDArray[np.intp]  # hand-labelled stride borders, IMU samples
    stride_end: NDArray[np.intp]
    heel_mm: FloatArray = field(repr=False)  # (M, 3) at 100 Hz
    toe_mm: FloatArray = field(repr=False)


def _two_row_header_csv(path: Path) -> tuple[list[tuple[str, str]], FloatArray]:
    with path.open() as fh:
        top = fh.readline().rstrip("\n").split(",")
        sub = fh.readline().rstrip("\n").split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=2)
    return list(zip(top, sub, strict=True)), data


def load_gaitmap(root: Path | None = None) -> dict[str, GaitmapFoot]:
    """Both feet of the gaitmap example (acc m/s², gyro converted from deg/s to rad/s)."""
    base = _require((root or shared_data_dir()) / "gaitmap")
    cols, imu = _two_row_header_csv(_require(base / "imu_sample.csv"))
    mcols, mocap = _two_row_header_csv(_require(base / "mocap_sample.csv"))
    idx = {c: i for i, c in enumerate(cols)}
    midx = {c: i for i, c in enumerate(mcols)}
    borders = np.genfromtxt(_require(base / "stride_borders_sample.csv"), delimiter=",", names=True,
                            dtype=None, encoding="utf-8")
    out: dict[str, GaitmapFoot] = {}
    for foot, prefix in (("left", "L"), ("right", "R")):
        sensor = f"{foot}_sensor"
        acc = np.stack([imu[:, idx[(sensor, f"acc_{a}")]] for a in "xyz"], axis=1)
        gyr = np.deg2rad(np.stack([imu[:, idx[(sensor, f"gyr_{a}")]] for a in "xyz"], axis=1))
        t = np.arange(acc.shape[0]) / GAITMAP_RATE_HZ
        sel = borders["foot"] == foot
        heel = np.stack([mocap[:, midx[(f"{prefix}_FCC", a)]] for a in "xyz"], axis=1)
        toe = np.stack([mocap[:, midx[(f"{prefix}_TOE", a)]] for a in "xyz"], axis=1)
        out[foot] = GaitmapFoot(foot, ImuRecording(t, acc, gyr),
                                np.asarray(borders["start"][sel], dtype=np.intp),
                                np.asarray(borders["end"][sel], dtype=np.intp), heel, toe)
    return out


# ---------------------------------------------------------------------------- oxford_steps

OXFORD_DOUBLE_TRIGGER_S = 0.4  # a pad re-triggering sooner is the same contact: a stride lasts >= 0.7 s
OXFORD_MIN_STEP_S = 0.25  # no walking step is shorter (240 steps/min): a later edge is a double trigger


@dataclass(frozen=True)
class OxfordWalk:
    """One walk of the Oxford Step Counter data set (Salvi et al. 2018, EMBC; CC BY 4.0)."""

    name: str
    carried: str  # InHand, SwingingArm, Armband, FrontPocket, BackPocket, NeckPouch, Purse
    walker: str
    t: FloatArray  # s on the phone's clock, cleaned to strictly increasing
    acc: FloatArray  # (N, 3) m/s² including gravity
    step_times: FloatArray  # reference steps within the accelerometer's span
    dropped_edges: int  # pad edges taken as double triggers

    def recording(self) -> AccRecording:
        return AccRecording(self.t, self.acc)


def oxford_reference_steps(pad_t: FloatArray, right: FloatArray, left: FloatArray, t0: float, t1: float
                           ) -> tuple[FloatArray, int]:
    """Steps = 0->1 edges of either pressure pad within ``[t0, t1]``, without double triggers."""
    kept = []
    raw = 0
    for pad in (right, left):
        e = pad_t[np.flatnonzero((pad[1:] > 0.5) & (pad[:-1] <= 0.5)) + 1]
        e = e[(e >= t0) & (e <= t1)]
        raw += e.size
        kept.append(e[np.concatenate(([True], np.diff(e) >= OXFORD_DOUBLE_TRIGGER_S))])
    s = np.sort(np.concatenate(kept))
    s = s[np.concatenate(([True], np.diff(s) >= OXFORD_MIN_STEP_S))]
    return s, raw - s.size


def load_oxford_steps(root: Path | None = None) -> list[OxfordWalk]:
    """Every walk of ``oxford_steps/`` (timestamps that repeat or step back are dropped)."""
    import gzip

    base = _require((root or shared_data_dir()) / "oxford_steps")
    walks = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        with gzip.open(_require(d / "accelerometer.csv.gz"), "rt") as fh:
            a = np.loadtxt(fh, delimiter=",", ndmin=2)
        t_ns = a[:, 0]
        keep = np.concatenate(([True], t_ns[1:] > np.maximum.accumulate(t_ns)[:-1]))
        a = a[keep]
        t = (a[:, 0] - a[0, 0]) * 1e-9
        pads = np.loadtxt(_require(d / "stepcounter.csv"), delimiter=",", ndmin=2)
        pad_t = (pads[:, 0] - a[0, 0]) * 1e-9
        steps, dropped = oxford_reference_steps(pad_t, pads[:, 1], pads[:, 2], float(t[0]), float(t[-1]))
        parts = d.name.split("_")
        walks.append(OxfordWalk(d.name, parts[3], parts[1], t, np.ascontiguousarray(a[:, 2:5]), steps, dropped))
    return walks


# ---------------------------------------------------------------------------- SPAR watch

SPAR_RATE_HZ = 50.0


@dataclass(frozen=True)
class SparSet:
    """One SPAR set: a wrist-worn watch, one shoulder exercise, repetitions by protocol."""

    file: str
    subject: int
    exercise: str  # SPAR's own exercise name (not the contract's vocabulary)
    side: str
    reps: int
    recording: ImuRecording


def load_spar(root: Path | None = None) -> list[SparSet]:
    """Every set of the SPAR smartwatch subset (Burns et al. 2018, Physiol Meas 39(7); BSD-3),
    acc converted from g to m/s², in the order of ``sets.csv``."""
    base = _require((root or shared_data_dir()) / "spar_watch")
    with _require(base / "sets.csv").open(newline="") as fh:
        index = list(csv.DictReader(fh))
    out: list[SparSet] = []
    for row in index:
        data = np.loadtxt(_require(base / str(row["file"])), delimiter=",", skiprows=1)
        rec = ImuRecording(data[:, 0], data[:, 1:4] * GRAVITY, data[:, 4:7])
        out.append(SparSet(str(row["file"]), int(row["subject"]), str(row["exercise"]),
                           str(row["side"]), int(row["repetitions_by_protocol"]), rec))
    return sorted(out, key=lambda s: s.file)
