"""Each BLE profile decoder on exact byte sequences; bad frames counted and skipped; fuzzed."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_adapters.ble import profiles
from device_adapters.ble.profiles import movesense, polar_pmd, rsc, thingy52
from device_adapters.ble.profiles.base import (
    CadenceReading,
    ConfigReading,
    ImuReading,
    QuaternionReading,
    StepCountReading,
)


def test_registry() -> None:
    assert profiles.names() == ["movesense-imu6", "nordic-thingy52", "polar-pmd", "sig-rsc"]
    assert profiles.for_service("00001814-0000-1000-8000-00805F9B34FB") is rsc.RunningSpeedCadence
    with pytest.raises(KeyError, match="unknown BLE profile 'nope'"):
        profiles.get("nope")


# --- Running Speed and Cadence -------------------------------------------------------------------

def test_rsc_all_fields() -> None:
    # flags 0x07: stride + distance + running; 3.5 m/s = 896/256; cadence 172; stride 1.22 m; 1234.5 m
    frame = bytes([0x07, 0x80, 0x03, 172, 0x7A, 0x00, 0x39, 0x30, 0x00, 0x00])
    (r,) = rsc.RscDecoder().feed(rsc.MEASUREMENT, frame)
    assert r == CadenceReading(3.5, 172, 1.22, 1234.5, True)
    assert rsc.encode(3.5, 172, 1.22, 1234.5, True) == frame


def test_rsc_minimal_and_bad_frames_counted() -> None:
    dec = rsc.RscDecoder()
    assert dec.feed(rsc.MEASUREMENT, bytes([0x00, 0x00, 0x01, 100])) == [CadenceReading(1.0, 100, None, None, False)]
    assert dec.feed(rsc.MEASUREMENT, bytes([0x01, 0x00, 0x01, 100])) == []  # stride flagged, absent
    assert dec.feed(rsc.MEASUREMENT, bytes([0x00, 0x00])) == []
    assert dec.feed(rsc.MEASUREMENT, bytes([0x80, 0x00, 0x01, 100])) == []  # reserved flag bit
    assert dec.stats.frames == 4 and dec.stats.readings == 1
    assert dec.stats.bad == {"length": 1, "truncated": 1, "corrupt": 1}


# --- Thingy:52 -----------------------------------------------------------------------------------

def test_thingy_raw_motion_fixed_point() -> None:
    # acc Q6.10: 1024 = 1 g, -512 = -0.5 g; gyro Q11.5: 32 = 1 deg/s; compass ignored
    frame = struct.pack("<9h", 1024, -512, 0, 32, -64, 3200, 16, 16, 16)
    (r,) = thingy52.ThingyDecoder(motion_hz=100).feed(thingy52.RAW, frame)
    assert isinstance(r, ImuReading) and r.sample_rate_hz == 100 and r.t_device_ns is None
    assert r.acc is not None and r.gyr is not None
    np.testing.assert_array_equal(r.acc, [[1.0, -0.5, 0.0]])
    np.testing.assert_array_equal(r.gyr, [[1.0, -2.0, 100.0]])
    assert thingy52.encode_raw((1.0, -0.5, 0.0), (1.0, -2.0, 100.0), (1.0, 1.0, 1.0)) == frame


def test_thingy_step_quaternion_config() -> None:
    dec = thingy52.ThingyDecoder()
    assert dec.feed(thingy52.STEP_COUNTER, bytes.fromhex("2a000000" "e8030000")) == [StepCountReading(42, 1000)]
    (q,) = dec.feed(thingy52.QUATERNION, struct.pack("<4i", 1 << 30, 0, -(1 << 29), 0))
    assert q == QuaternionReading((1.0, 0.0, -0.5, 0.0))
    (c,) = dec.feed(thingy52.CONFIG, thingy52.encode_config(500, 500, 500, 20, 0))
    assert isinstance(c, ConfigReading) and c.values["motion_hz"] == 20
    assert dec.motion_hz == 20  # later raw samples are stamped at the configured rate
    assert dec.feed(thingy52.CONFIG, thingy52.encode_config(motion_hz=1000)) == []
    assert dec.feed(thingy52.RAW, b"\x00" * 17) == []
    assert dec.feed(thingy52.STEP_COUNTER, b"\x00" * 9) == []
    assert dec.stats.bad_total == 3


# --- Polar PMD -----------------------------------------------------------------------------------

def test_pmd_start_command_bytes() -> None:
    # [start, ACC, sample rate x1 = 52, resolution x1 = 16, range x1 = 8]
    assert polar_pmd.start_command(polar_pmd.ACC, 52, 16, 8) == bytes.fromhex("0202 0001 3400 0101 1000 0201 0800")
    assert polar_pmd.parse_start_command(polar_pmd.start_command(polar_pmd.ACC, 52, 16, 8)) == {0: 52, 1: 16, 2: 8}


def test_pmd_raw_acc_frame_times_backwards() -> None:
    ts = 599_529_600_000_000_000  # 2019-01-01T00:00:00Z in ns since 2000-01-01
    # frame type 1: i16 per axis, little-endian: (1000, -1000, 0), (10, 20, -30) mG
    frame = bytes([0x02]) + struct.pack("<Q", ts) + bytes([0x01]) + bytes.fromhex("e80318fc0000" "0a001400e2ff")
    (r,) = polar_pmd.PmdDecoder({polar_pmd.ACC: 50}).feed(polar_pmd.DATA, frame)
    assert isinstance(r, ImuReading) and r.acc is not None and r.t_device_ns is not None
    np.testing.assert_allclose(r.acc, [[1.0, -1.0, 0.0], [0.01, 0.02, -0.03]], rtol=1e-6)
    assert r.t_device_ns.tolist() == [ts - 20_000_000, ts]  # the stamp is the last sample's


def test_pmd_raw_8_and_24_bit() -> None:
    dec = polar_pmd.PmdDecoder({polar_pmd.ACC: 25})
    (r8,) = dec.feed(polar_pmd.DATA, bytes([2]) + bytes(8) + bytes([0]) + bytes([0xFF, 0x7F, 0x80]))
    assert r8.acc is not None
    np.testing.assert_allclose(r8.acc, [[-0.001, 0.127, -0.128]], rtol=1e-6)
    (r24,) = dec.feed(polar_pmd.DATA, bytes([2]) + bytes(8) + bytes([2]) + bytes.fromhex("ffffff 000080 010000"))
    assert r24.acc is not None
    np.testing.assert_allclose(r24.acc, [[-0.001, -8388.608, 0.001]], rtol=1e-6)


def test_pmd_delta_frame_exact_bytes() -> None:
    # reference (100, -100, 0); one block: width 3 bits, 2 samples, deltas (1,-1,2) then (-4,3,0)
    # bits LSB first: 1=001 -1=111 2=010 -4=100 3=011 0=000 -> 0b...packed little-endian
    deltas = [1, -1, 2, -4, 3, 0]
    bits = "".join(format(d & 0b111, "03b")[::-1] for d in deltas)  # each value LSB first
    packed = bytes(int(bits[i:i + 8][::-1], 2) for i in range(0, 24, 8))
    payload = struct.pack("<3h", 100, -100, 0) + bytes([3, 2]) + packed
    frame = bytes([2]) + struct.pack("<Q", 10**9) + bytes([0x80]) + payload
    (r,) = polar_pmd.PmdDecoder({polar_pmd.ACC: 100}).feed(polar_pmd.DATA, frame)
    assert r.acc is not None and r.t_device_ns is not None
    np.testing.assert_allclose(r.acc * 1000, [[100, -100, 0], [101, -101, 2], [97, -98, 2]], atol=1e-4)
    assert r.t_device_ns.tolist() == [980_000_000, 990_000_000, 1_000_000_000]
    samples = np.array([[100, -100, 0], [101, -101, 2], [97, -98, 2]])
    assert polar_pmd.encode_delta_frame(2, 10**9, samples) == frame


def test_pmd_encoder_round_trip_many_blocks() -> None:
    rng = np.random.default_rng(1)
    samples = np.cumsum(rng.integers(-300, 300, size=(37, 3)), axis=0)
    frame = polar_pmd.encode_delta_frame(polar_pmd.ACC, 5 * 10**9, samples, block=6)
    (r,) = polar_pmd.PmdDecoder({polar_pmd.ACC: 52}, {polar_pmd.ACC: 1000.0}).feed(polar_pmd.DATA, frame)
    assert r.acc is not None
    np.testing.assert_array_equal(r.acc, samples.astype(np.float32))


def test_pmd_bad_frames_counted() -> None:
    dec = polar_pmd.PmdDecoder({polar_pmd.ACC: 52})
    good = polar_pmd.encode_delta_frame(polar_pmd.ACC, 10**9, np.arange(30).reshape(10, 3))
    assert dec.feed(polar_pmd.DATA, good[:-1]) == []  # last block cut
    assert dec.feed(polar_pmd.DATA, good[:5]) == []
    assert dec.feed(polar_pmd.DATA, bytes([5]) + good[1:]) == []  # gyro never started
    assert dec.feed(polar_pmd.DATA, bytes([9]) + good[1:]) == []  # unknown type
    assert dec.feed(polar_pmd.DATA, good[:9] + bytes([0x01]) + bytes(5)) == []  # not whole samples
    assert dec.feed(polar_pmd.CONTROL_POINT, bytes([0xF0, 2, 2, 0, 0])) == [
        ConfigReading({"op": 2, "measurement": 2, "status": 0})]
    assert dec.stats.bad_total == 5 and dec.stats.readings == 1


# --- Movesense -----------------------------------------------------------------------------------

def test_movesense_imu6() -> None:
    acc = np.array([[0.0, 0.0, 9.81], [0.5, -0.5, 9.8]], dtype=np.float32)
    gyr = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]], dtype=np.float32)
    frame = bytes([2, 99]) + struct.pack("<I", 12_345) + acc.astype("<f4").tobytes() + gyr.astype("<f4").tobytes()
    assert movesense.encode_imu6(99, 12_345, acc, gyr) == frame
    dec = movesense.MovesenseDecoder(ref=99, rate_hz=52)
    (r,) = dec.feed(movesense.DATA, frame)
    assert isinstance(r, ImuReading) and r.acc_unit == "m/s^2" and r.t_device_ns is not None
    np.testing.assert_array_equal(r.acc, acc)
    np.testing.assert_array_equal(r.gyr, gyr)
    assert r.t_device_ns.tolist() == [12_345_000_000, 12_345_000_000 + round(1e9 / 52)]
    assert movesense.MovesenseImu(52).start_commands()[0].payload == b"\x01\x63/Meas/IMU6/52"


def test_movesense_bad_frames_counted() -> None:
    dec = movesense.MovesenseDecoder(ref=99, rate_hz=52)
    ok = movesense.encode_imu6(99, 1, np.zeros((1, 3)), np.zeros((1, 3)))
    assert dec.feed(movesense.DATA, ok[:-3]) == []  # held as a first part ...
    assert dec.feed(movesense.DATA, bytes([2, 7]) + ok[2:]) == []  # ... whose second part never came
    assert dec.feed(movesense.DATA, bytes([3, 99]) + ok[2:]) == []  # a second part without a first
    assert dec.feed(movesense.DATA, ok[:6] + struct.pack("<6f", *([float("nan")] * 6))) == []
    assert dec.stats.bad == {"truncated": 1, "unexpected": 2, "corrupt": 1}
    with pytest.raises(ValueError, match="not one of"):
        movesense.MovesenseImu(50)


def test_movesense_two_part_packet_exact_bytes() -> None:
    # 7 samples: 6 + 7 * 24 = 174 bytes; at ATT MTU 100 a notification holds 97 bytes
    acc = np.arange(21, dtype=np.float32).reshape(7, 3)
    gyr = -np.arange(21, dtype=np.float32).reshape(7, 3) / 4
    packet = movesense.encode_imu6(99, 70_000, acc, gyr)
    first, second = movesense.split_packet(packet, 97)
    assert first == packet[:97] and second == bytes([3, 99]) + packet[97:] and len(second) == 2 + 174 - 97
    dec = movesense.MovesenseDecoder(99, 104)
    assert dec.feed(movesense.DATA, first) == [] and dec.pending == first
    (r,) = dec.feed(movesense.DATA, second)
    assert isinstance(r, ImuReading) and r.t_device_ns is not None
    np.testing.assert_array_equal(r.acc, acc)
    np.testing.assert_array_equal(r.gyr, gyr)
    assert r.t_device_ns[0] == 70_000_000_000 and r.n_samples == 7
    assert dec.stats.bad_total == 0 and dec.split_len == 97 and dec.pending is None


def test_movesense_first_part_of_whole_samples_is_held_once_the_split_is_known() -> None:
    # A first part of 6 + 24 * 4 = 102 bytes is whole samples: after one split of that length it
    # is held for its second part instead of being read as a 4-sample packet.
    rng = np.random.default_rng(1)
    acc, gyr = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    parts = movesense.split_packet(movesense.encode_imu6(99, 5, acc, gyr), 102)
    dec = movesense.MovesenseDecoder(99, 52)
    dec.split_len = 102
    assert dec.feed(movesense.DATA, parts[0]) == []
    (r,) = dec.feed(movesense.DATA, parts[1])
    assert isinstance(r, ImuReading)
    np.testing.assert_array_equal(r.gyr, gyr)


def test_movesense_split_packet_limits() -> None:
    packet = movesense.encode_imu6(99, 1, np.zeros((8, 3)), np.zeros((8, 3)))
    assert movesense.split_packet(packet, 244) == [packet]
    with pytest.raises(ValueError, match="two notifications"):
        movesense.split_packet(packet, 20)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 9), cut=st.integers(2, 200), t_ms=st.integers(0, 2**32 - 1), seed=st.integers(0, 99))
def test_fuzz_movesense_reassembly(n: int, cut: int, t_ms: int, seed: int) -> None:
    """Any split of any packet reassembles to exactly the packet's samples (or, when the first
    part is whole samples by chance and no split was seen yet, is counted, never misread twice)."""
    rng = np.random.default_rng(seed)
    acc, gyr = rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    packet = movesense.encode_imu6(99, t_ms, acc, gyr)
    cut = min(cut, len(packet) - 1)
    first, second = packet[:cut], bytes([3, 99]) + packet[cut:]
    dec = movesense.MovesenseDecoder(99, 52)
    out = dec.feed(movesense.DATA, first) + dec.feed(movesense.DATA, second)
    if cut >= 30 and (cut - 6) % 24 == 0:  # whole samples by chance: the documented limit
        assert dec.stats.bad == {"unexpected": 1} and len(out) == 1
        return
    (r,) = out
    assert isinstance(r, ImuReading) and r.t_device_ns is not None
    np.testing.assert_array_equal(r.acc, acc)
    np.testing.assert_array_equal(r.gyr, gyr)
    assert int(r.t_device_ns[0]) == t_ms * 1_000_000 and dec.stats.bad_total == 0


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.one_of(st.binary(max_size=80),
                                 st.builds(lambda k, b: bytes([k, 99]) + b, st.sampled_from([1, 2, 3]),
                                           st.binary(max_size=120))), max_size=8))
def test_fuzz_movesense_sequences(frames: list[bytes]) -> None:
    """Sequences of notifications (parts in any order): never raises; every frame is a reading,
    counted bad, held, or completes a held part."""
    dec = movesense.MovesenseDecoder(99, 52)
    for f in frames:
        for r in dec.feed(movesense.DATA, f):
            if isinstance(r, ImuReading):
                assert r.n_samples >= 1 and r.acc is not None and r.gyr is not None
                assert r.acc.shape == r.gyr.shape == (r.n_samples, 3)
    assert dec.stats.frames == len(frames)
    assert dec.stats.readings + dec.stats.bad_total + (dec.pending is not None) <= len(frames) + 1


# --- every decoder, fuzzed: never raises, every reading well-formed --------------------------------

DECODERS = [
    (rsc.RscDecoder, rsc.MEASUREMENT),
    (thingy52.ThingyDecoder, thingy52.RAW),
    (thingy52.ThingyDecoder, thingy52.STEP_COUNTER),
    (thingy52.ThingyDecoder, thingy52.CONFIG),
    (thingy52.ThingyDecoder, thingy52.QUATERNION),
    (lambda: polar_pmd.PmdDecoder({polar_pmd.ACC: 52, polar_pmd.GYRO: 52}), polar_pmd.DATA),
    (lambda: polar_pmd.PmdDecoder({polar_pmd.ACC: 52}), polar_pmd.CONTROL_POINT),
    (lambda: movesense.MovesenseDecoder(99, 52), movesense.DATA),
]


@pytest.mark.parametrize(("make", "char"), DECODERS)
@settings(max_examples=300, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=120),
    # frames that pass the header checks so the fuzz reaches the sample parsers
    st.builds(lambda t, ft, b: bytes([t]) + bytes(8) + bytes([ft]) + b, st.sampled_from([2, 5]),
              st.sampled_from([0, 1, 2, 0x80]), st.binary(max_size=100)),
    st.builds(lambda b: bytes([2, 99]) + b, st.binary(max_size=100)),
))
def test_fuzz_decoders(make, char, data: bytes) -> None:  # type: ignore[no-untyped-def]
    dec = make()
    out = dec.feed(char, data)
    held = getattr(dec, "pending", None) is not None  # a Movesense first part waiting for its second
    assert dec.stats.frames == 1 and dec.stats.readings + dec.stats.bad_total + held == 1 and len(out) <= 1
    for r in out:
        if isinstance(r, ImuReading):
            assert r.n_samples >= 1
            if r.t_device_ns is not None:
                assert r.t_device_ns.shape == (r.n_samples,) and (np.diff(r.t_device_ns) > 0).all()
