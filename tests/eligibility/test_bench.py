"""The eligibility benchmark at a small size: it writes every result, measures the floor in the same
run, ends with one JSON line, and leaves no scratch database behind."""

from __future__ import annotations

import orjson

from rtm.stack import postgres
from tools.bench import eligibility as bench


def test_bench_reports_recompute_and_floor(stack_settings, capsys):
    before = _scratch(stack_settings)
    # Two processes and two rounds: the floor runs with the recompute's processes and batches.
    args = ["--patients", "40", "--days", "35", "--batch", "15", "--workers", "2", "--repeat", "2"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    last = orjson.loads(out[-1])
    assert set(last) == {"patients", "seconds", "floor_seconds", "ratio_to_floor"}
    assert last["patients"] == 40 and last["seconds"] > 0 and last["floor_seconds"] > 0
    ratio = last["seconds"] / last["floor_seconds"]  # both rounded to ms: allow for that
    assert abs(last["ratio_to_floor"] - ratio) <= 0.05 * ratio
    runs = next(line for line in out if line.startswith("runs:"))
    assert runs.count(" = ") == 3  # the header's, then one per round
    # Every result row is written (from an empty table), and the floor wrote the same rows.
    written = int(next(line for line in out if line.startswith("results written")).split()[-1])
    inserted = next(line for line in out if "rows inserted" in line).split()[-5]
    floor_rows = next(line for line in out if line.startswith("floor: result rows written")).split()[-3]
    assert written >= 40 * 4 and int(inserted.replace(",", "")) == written == int(floor_rows.replace(",", ""))
    assert _scratch(stack_settings) == before


def _scratch(settings) -> set[str]:
    with postgres.admin_connect(settings) as conn:
        rows = conn.execute("select datname from pg_database where datname like 'rtm_bench_%'").fetchall()
    return {r[0] for r in rows}
