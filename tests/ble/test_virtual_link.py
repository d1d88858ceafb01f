"""The BLE session against virtual peripherals over bumble's real ATT/GATT stack: scan, connect,
subscribe, start, receive, MTU, and reconnect after the link drops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from device_adapters.ble.profiles import movesense, polar_pmd, rsc, thingy52
from device_adapters.ble.profiles.base import CadenceReading, ConfigReading, ImuReading, Reading, StepCountReading
from device_adapters.ble.session import BleSession
from device_adapters.ble.testing import peripherals
from device_adapters.ble.testing.virtual import Air, BumbleClient, BumbleScanner, VirtualPeripheral
from rtm.retrying import Backoff


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


class Run:
    def __init__(self, air: Air, profile: object, periph: VirtualPeripheral, mtu: int | None = 247) -> None:
        self.got: list[Reading] = []
        self.stop = asyncio.Event()
        self.session = BleSession(
            profile, "dev-1", lambda _d, rs: self.got.extend(rs), address=periph.address,  # type: ignore[arg-type]
            scan_timeout_s=2.0, backoff=Backoff(0.05, 0.2), scanner_backend=BumbleScanner,
            client_backend=BumbleClient, backend_kwargs={"air": air, "mtu": mtu})
        self.task = asyncio.ensure_future(self.session.run(self.stop))

    def data(self) -> list[Reading]:
        return [r for r in self.got if not isinstance(r, ConfigReading)]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 5)


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def test_rsc_scan_connect_receive_reconnect() -> None:
    async def main() -> None:
        air = Air()
        dev = VirtualPeripheral(air, "RSC", rsc.SERVICE, {rsc.MEASUREMENT: "notify"}, battery_pct=87)
        decoy = peripherals.Rsc(air, "RSC-other")  # same profile, not enrolled: never connected
        await decoy.start()
        await dev.start()
        r = Run(air, rsc.RunningSpeedCadence(), dev)
        await asyncio.wait_for(r.session.connected.wait(), 5)
        await until(lambda: dev.subscribed(rsc.MEASUREMENT))
        assert decoy.connections() == []
        assert r.session.stats.battery_pct == 87  # the SIG Battery Service, read on connecting
        await dev.notify(rsc.MEASUREMENT, rsc.encode(2.0, 120, 1.0))
        await until(lambda: len(r.data()) == 1)
        assert r.data() == [CadenceReading(2.0, 120, 1.0, None, False)]
        await dev.drop()
        await until(lambda: r.session.stats.connects == 2 and dev.subscribed(rsc.MEASUREMENT))
        assert r.session.stats.disconnects == 1
        await dev.notify(rsc.MEASUREMENT, rsc.encode(2.5, 130))
        await until(lambda: len(r.data()) == 2)
        await r.close()
        assert dev.connections() == []
    run(main())


def test_thingy_configures_then_streams() -> None:
    async def main() -> None:
        air = Air()
        dev = peripherals.Thingy(air, "Thingy")
        await dev.start()
        r = Run(air, thingy52.Thingy52Motion(motion_hz=20), dev)
        await asyncio.wait_for(r.session.connected.wait(), 5)
        assert dev.motion_hz == 20  # the start command wrote the configuration characteristic
        await until(lambda: dev.subscribed(thingy52.RAW) and dev.subscribed(thingy52.STEP_COUNTER))
        await dev.notify(thingy52.STEP_COUNTER, bytes.fromhex("0a000000" "10270000"))
        await dev.notify(thingy52.RAW, thingy52.encode_raw((0.0, 0.0, 1.0), (0.0, 90.0, 0.0)))
        await until(lambda: len(r.data()) == 2)
        step, raw = r.data()
        assert step == StepCountReading(10, 10_000)
        assert isinstance(raw, ImuReading) and raw.sample_rate_hz == 20
        np.testing.assert_array_equal(raw.gyr, [[0.0, 90.0, 0.0]])
        await r.close()
    run(main())


def test_polar_start_command_answer_and_delta_frames_over_gatt() -> None:
    async def main() -> None:
        air = Air()
        dev = peripherals.Polar(air, "Polar Sense")
        await dev.start()
        r = Run(air, polar_pmd.PolarPmd(acc_hz=52), dev)
        await asyncio.wait_for(r.session.connected.wait(), 5)
        await until(lambda: polar_pmd.ACC in dev.started)
        assert dev.started[polar_pmd.ACC] == {0: 52, 1: 16, 2: 8}
        await until(lambda: any(isinstance(x, ConfigReading) for x in r.got))  # the indicated answer
        rng = np.random.default_rng(3)
        samples = np.cumsum(rng.integers(-40, 40, size=(36, 3)), axis=0) + 1000
        await dev.stream_acc(123 * 10**9, samples)
        await until(lambda: len(r.data()) == 1)
        (acc,) = r.data()
        assert isinstance(acc, ImuReading) and acc.acc is not None and acc.t_device_ns is not None
        np.testing.assert_allclose(acc.acc * 1000, samples, atol=1e-3)
        assert acc.t_device_ns[-1] == 123 * 10**9
        await r.close()
        assert polar_pmd.ACC not in dev.started  # the stop command was sent before disconnecting
    run(main())


@pytest.mark.parametrize("mtu", [None, 247])
def test_movesense_notifications_are_cut_at_the_default_mtu(mtu: int | None) -> None:
    async def main() -> None:
        air = Air()
        dev = peripherals.Movesense(air, "Movesense 1")
        await dev.start()
        r = Run(air, movesense.MovesenseImu(52), dev, mtu=mtu)
        await asyncio.wait_for(r.session.connected.wait(), 5)
        await until(lambda: dev.subscriptions == {99: "/Meas/IMU6/52"})
        acc = np.tile([0.0, 0.0, 9.81], (4, 1))
        gyr = np.zeros((4, 3))
        await dev.stream_imu6(1000, acc, gyr)  # 6 + 4 * 24 = 102 bytes
        await dev.stream_imu6(1077, acc, gyr)
        await until(lambda: r.session.stats.notifications >= 3)  # the command result, then the data
        await asyncio.sleep(0.05)
        stats = r.session.decoder.stats
        if mtu is None:
            # Cut to 20 bytes, each looks like a first part: the next notification shows it was not.
            assert r.session.stats.mtu == 23 and r.data() == [] and stats.bad["truncated"] == 1
        else:
            assert r.session.stats.mtu == 247 and stats.bad_total == 0
            assert [x.n_samples for x in r.data() if isinstance(x, ImuReading)] == [4, 4]
        await r.close()
    run(main())


def test_movesense_two_part_packets_over_a_small_mtu() -> None:
    """The peripheral splits packets longer than ATT MTU - 3 into DATA and DATA_PART2, as the
    firmware does; the session's decoder reassembles them exactly."""
    async def main() -> None:
        air = Air()
        dev = peripherals.Movesense(air, "Movesense 2")
        await dev.start()
        r = Run(air, movesense.MovesenseImu(104), dev, mtu=100)
        await asyncio.wait_for(r.session.connected.wait(), 5)
        await until(lambda: dev.subscriptions == {99: "/Meas/IMU6/104"})
        rng = np.random.default_rng(3)
        sent = [(rng.normal(size=(7, 3)).astype(np.float32), rng.normal(size=(7, 3)).astype(np.float32))
                for _ in range(3)]
        for k, (acc, gyr) in enumerate(sent):
            await dev.stream_imu6(1000 + 67 * k, acc, gyr, split=True)  # 174 bytes: 97 + 79
        await until(lambda: len(r.data()) == 3)
        assert r.session.stats.mtu == 100 and r.session.decoder.stats.bad_total == 0
        for got, (acc, gyr) in zip(r.data(), sent, strict=True):
            assert isinstance(got, ImuReading)
            np.testing.assert_array_equal(got.acc, acc)
            np.testing.assert_array_equal(got.gyr, gyr)
        await r.close()
    run(main())


def test_a_device_missing_a_characteristic_is_dropped_and_retried() -> None:
    async def main() -> None:
        air = Air()
        # advertises the Movesense service but lacks the command characteristic
        dev = VirtualPeripheral(air, "Movesense odd", movesense.SERVICE, {movesense.DATA: "notify"})
        await dev.start()
        r = Run(air, movesense.MovesenseImu(52), dev)
        await until(lambda: r.session.stats.failed_attempts >= 3)
        assert r.session.stats.connects == 0 and "not found" in (r.session.stats.last_error or "")
        assert len(dev.connections()) <= 1  # each half-set-up link was dropped, not kept
        await r.close()
    run(main())


def test_polar_acc_and_gyro_over_gatt_become_imu_batches() -> None:
    from device_adapters.hub.assemble import Assembler, DeviceIdentity
    from rtm.contract import ImuBatch

    async def main() -> None:
        air = Air()
        dev = peripherals.Polar(air, "Polar Sense")
        await dev.start()
        assembler = Assembler(DeviceIdentity("polar-1", "pat-1", None, "polar", "polar-pmd"), batch_s=1.0)
        events: list[object] = []
        r = Run(air, polar_pmd.PolarPmd(acc_hz=52, gyro_hz=52), dev)
        r.session.sink = lambda _d, rs: events.extend(assembler.add(rs, 1_790_000_000.0 + len(events)))
        await asyncio.wait_for(r.session.connected.wait(), 5)
        await until(lambda: polar_pmd.ACC in dev.started and polar_pmd.GYRO in dev.started)
        period = round(1e9 / 52)
        for k in range(8):  # 8 frames of 13 samples a stream
            ts = 10**10 + (k + 1) * 13 * period
            await dev.stream_acc(ts, np.tile([0, 0, 1000], (13, 1)))
            await dev.stream_gyro(ts, np.tile([10, 0, 0], (13, 1)))
        await until(lambda: r.session.stats.notifications >= 2 + 16)
        await r.close()
        events.extend(assembler.flush())
        batches = [e for e in events if isinstance(e, ImuBatch)]
        assert sum(b.n_samples for b in batches) == 8 * 13 and assembler.stats.acc_only_samples == 0
        assert all(np.allclose(b.acc, [0, 0, 1]) and np.allclose(b.gyr, [10, 0, 0]) for b in batches)
    run(main())
