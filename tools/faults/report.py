"""The table a fault run prints and its closing JSON line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

MIN_FAULTS = 9  # the list: broker, database, worker, gateway, storm, order, poison, bomb, conflict


@dataclass
class Row:
    fault: str
    acknowledged: int
    stored: int
    missing: int
    duplicated: int
    derived_equal: bool | None  # None: nothing to compare with (soak)
    seconds: float
    notes: list[str] = field(default_factory=list)
    absent: int = 0  # of the missing: no row at all (the others are stored with other content)
    # Per worker killed during the fault: seconds until its replacement was ready (`ready_s`) and
    # from then until every acknowledged event was stored (`caught_up_s`); None: never.
    takeovers: list[dict[str, float | None]] = field(default_factory=list)

    def needs_recovery(self) -> bool:
        """Events absent or work left pending: the workers may be stuck."""
        return self.absent > 0 or any(n.startswith("not settled") for n in self.notes)


def table(rows: list[Row]) -> str:
    head = (f"{'fault':<20}{'acknowledged':>13}{'stored':>8}{'missing':>9}{'duplicated':>11}"
            f"{'derived equal':>15}{'s':>6}  notes")
    lines = [head, "-" * len(head)]
    for r in rows:
        eq = "n/a" if r.derived_equal is None else ("yes" if r.derived_equal else "NO")
        lines.append(f"{r.fault:<20}{r.acknowledged:>13,}{r.stored:>8,}{r.missing:>9,}{r.duplicated:>11,}"
                     f"{eq:>15}{r.seconds:>6.0f}  {'; '.join(r.notes)}")
    return "\n".join(lines)


def summary(rows: list[Row], min_faults: int, **extra: Any) -> dict[str, Any]:
    return {
        "faults": len(rows),
        "acknowledged": sum(r.acknowledged for r in rows),
        "missing": sum(r.missing for r in rows),
        "duplicated": sum(r.duplicated for r in rows),
        "derived_equal": all(r.derived_equal is not False for r in rows),
        "min_faults": min_faults,
        "takeovers": {r.fault: r.takeovers for r in rows if r.takeovers},
        **extra,
    }


def targets_met(s: dict[str, Any]) -> bool:
    return bool(s["faults"] >= s["min_faults"] and s["missing"] == 0 and s["duplicated"] == 0
                and s["derived_equal"])


def json_line(s: dict[str, Any]) -> str:
    return orjson.dumps(s).decode()


def memory_table(samples: list[tuple[float, dict[str, float]]], growth_limit_mib: float) -> tuple[str, dict[str, Any]]:
    """Per process: RSS at the start of the steady part, at the end, the peak, and whether it
    stayed flat (grew less than `growth_limit_mib` from the first to the last quarter)."""
    names = sorted({n for _, s in samples for n in s})
    lines = [f"{'process':<10}{'first MiB':>11}{'steady MiB':>12}{'last MiB':>10}{'peak MiB':>10}  flat"]
    verdict: dict[str, Any] = {}
    for name in names:
        series = [s[name] for _, s in samples if name in s]
        if len(series) < 4:
            continue
        q = max(1, len(series) // 4)
        early = sorted(series[q:2 * q])[len(series[q:2 * q]) // 2]  # median of the second quarter: warmed up
        late = sorted(series[-q:])[len(series[-q:]) // 2]
        flat = late - early <= growth_limit_mib
        verdict[name] = {"steady_mib": round(early, 1), "last_mib": round(late, 1), "peak_mib": round(max(series), 1),
                         "flat": flat}
        lines.append(f"{name:<10}{series[0]:>11.0f}{early:>12.0f}{late:>10.0f}{max(series):>10.0f}  "
                     f"{'yes' if flat else 'NO'}")
    return "\n".join(lines), verdict
