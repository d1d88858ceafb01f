"""`rtm bench encoding`: encode+decode of a 10 s, 100 Hz, 6-axis IMU batch, binary frame vs JSON."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from rtm.contract import ImuBatch, Provenance, decode, encode


def sample_batch(seconds: float = 10.0, rate_hz: float = 100.0, seed: int = 0) -> ImuBatch:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    return ImuBatch(
        patient_id="bench-patient",
        provenance=Provenance(adapter="bench", vendor="synthetic", device_id="bench-device"),
        stream_id="bench-stream",
        body_site="thigh_left",
        t0=datetime(2026, 1, 1, tzinfo=UTC),
        sample_rate_hz=rate_hz,
        acc=rng.normal(0, 2, (n, 3)) + np.array([0.0, 0.0, 9.81]),  # noise around gravity on z
        gyr=rng.normal(0, 0.5, (n, 3)),
    )


def _best_us(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtm bench encoding")
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    batch = sample_batch()

    binary = encode(batch)
    as_json = batch.model_dump_json().encode()
    assert decode(binary) == batch  # exact round trip

    bin_us = _best_us(lambda: decode(encode(batch)), args.repeat)
    json_us = _best_us(lambda: ImuBatch.model_validate_json(batch.model_dump_json()), max(args.repeat // 10, 5))

    print(f"IMU batch: {batch.n_samples} samples x 6 axes (10 s at 100 Hz), encode + decode with validation")
    print(f"{'encoding':<24}{'bytes':>10}{'µs / round trip':>18}")
    print(f"{'binary frame (float32)':<24}{len(binary):>10}{bin_us:>18.1f}")
    print(f"{'JSON lists of floats':<24}{len(as_json):>10}{json_us:>18.1f}")
    print(f"binary is {len(as_json) / len(binary):.1f}x smaller and {json_us / bin_us:.1f}x faster")
    print(json.dumps({
        "samples": batch.n_samples,
        "binary_bytes": len(binary), "json_bytes": len(as_json),
        "binary_us": round(bin_us, 1), "json_us": round(json_us, 1),
        "speedup": round(json_us / bin_us, 1),
    }))
    return 0
