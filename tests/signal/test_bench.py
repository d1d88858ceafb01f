from __future__ import annotations

import json

import pytest

from tools.bench import signal_processing as bench

KEYS = ["reps_within1_pct", "false_reps_per_10min", "rom_mae_deg",
        "hard_within1_pct", "hard_false_reps_per_10min",
        "spar_within1_pct", "spar_mae_reps", "spar_baseline_within1_pct",
        "broad_incl_rmse_deg", "broad_total_rmse_deg",
        "gaitmap_stride_err_max", "gaitmap_rom_rmse_deg", "steps_mape_pct", "steps_courses_mape_pct",
        "steps_still_count", "real_steps_mape_pct", "real_steps_baseline_mape_pct",
        "real_steps_slowed_mape_pct", "msamples_per_s", "ratio_vs_vqf"]


def test_bench_quick_prints_table_and_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(["--quick", "--repeats", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert [k for k in summary if k in KEYS] == KEYS  # the headline figures, in this order
    # per exercise and per case: where the counter holds and where not
    assert "reps_knee_extension_within1_pct" in summary and "hard_surrounded_within1_pct" in summary
    if summary["spar_within1_pct"] is not None:
        assert {f"spar_pendulum_{k}" for k in ("within1_pct", "mae_reps")} <= set(summary)
    assert any(line.startswith("measured") for line in out)
    assert code in (0, 1, 2)
    assert summary["steps_mape_pct"] is not None and summary["msamples_per_s"] > 0
