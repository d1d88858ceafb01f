"""`rtm bench encoding` runs, round-trips its batch exactly and ends with one JSON line."""

from __future__ import annotations

import json

import pytest

from tools.bench import encoding


def test_encoding_bench_runs_and_ends_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert encoding.main(["--repeat", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["samples"] == 1000
    assert result["binary_bytes"] < result["json_bytes"]


def test_sample_batch_is_gravity_plus_noise() -> None:
    batch = encoding.sample_batch()
    assert batch.acc.shape == (1000, 3)
    assert batch.acc[:, 2].mean() == pytest.approx(9.81, abs=0.3)
