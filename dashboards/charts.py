"""Server-side SVG charts: a sparkline, a scatter with trend and target lines, daily bars.

Pure functions of numbers to markup (no JavaScript, nothing to download): they print, scale with
the page and carry a text alternative (role="img" with a title) for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
from markupsafe import Markup


def _scale(values: np.ndarray, lo: float, hi: float, out_lo: float, out_hi: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return out_lo + (values - lo) / span * (out_hi - out_lo)


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))


def sparkline(values: Sequence[float | None], label: str, width: int = 120, height: int = 28) -> Markup:
    """A small line of daily values; a missing day (None) breaks the line rather than reading as zero."""
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    head = (f'<svg class="spark" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
            f"<title>{escape(label)}</title>")
    if v.size == 0 or np.all(np.isnan(v)):
        return Markup(head + f'<line x1="0" y1="{height - 2}" x2="{width}" y2="{height - 2}" class="none"/></svg>')
    xs = _scale(np.arange(v.size, dtype=float), 0, max(v.size - 1, 1), 2, width - 2)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    ys = _scale(np.nan_to_num(v, nan=lo), lo, hi if hi > lo else lo + 1, height - 3, 3)
    segments, start = [], None
    for i, missing in enumerate([*np.isnan(v).tolist(), True]):  # runs of present days (at most ~90)
        if not missing and start is None:
            start = i
        elif missing and start is not None:
            segments.append(f'<polyline points="{_points(xs[start:i], ys[start:i])}"/>')
            start = None
    last = int(np.flatnonzero(~np.isnan(v))[-1])
    dot = f'<circle cx="{xs[last]:.1f}" cy="{ys[last]:.1f}" r="2"/>'
    return Markup(head + "".join(segments) + dot + "</svg>")


def scatter_trend(
    days: Sequence[float], values: Sequence[float], label: str, *, slope: float | None = None,
    intercept: float | None = None, target: float | None = None, x_max: float | None = None,
    width: int = 560, height: int = 200, unit: str = "°",
) -> Markup:  # fmt: skip
    """Points (x in days), an optional trend line y = intercept + slope·x and a dashed target line."""
    x = np.asarray(days, dtype=float)
    y = np.asarray(values, dtype=float)
    left, right, top, bottom = 44, width - 8, 10, height - 24
    head = (f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
            f'preserveAspectRatio="xMinYMin meet"><title>{escape(label)}</title>')
    if x.size == 0:
        return Markup(head + f'<text x="{left}" y="{height / 2:.0f}">no data yet</text></svg>')
    xmax = max(float(x.max()), x_max or 0.0, 1.0)
    extra = [target] if target is not None else []
    lo = min(float(y.min()), *extra) if extra else float(y.min())
    hi = max(float(y.max()), *extra) if extra else float(y.max())
    pad = max((hi - lo) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad
    px = _scale(x, 0, xmax, left, right)
    py = _scale(y, lo, hi, bottom, top)
    parts = [head, f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>']
    for tick in np.linspace(lo, hi, 4):
        ty = _scale(np.array([tick]), lo, hi, bottom, top)[0]
        parts.append(f'<text class="tick" x="{left - 4}" y="{ty + 4:.1f}" text-anchor="end">{tick:.0f}{unit}</text>')
    parts.append(f'<text class="tick" x="{left}" y="{height - 6}">day 0</text>'
                 f'<text class="tick" x="{right}" y="{height - 6}" text-anchor="end">day {xmax:.0f}</text>')
    parts += [f'<circle class="pt" cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>' for a, b in zip(px.tolist(), py.tolist(),
                                                                                      strict=True)]
    if target is not None:
        ty = _scale(np.array([target]), lo, hi, bottom, top)[0]
        parts.append(f'<line class="target" x1="{left}" y1="{ty:.1f}" x2="{right}" y2="{ty:.1f}"/>'
                     f'<text class="tick" x="{right}" y="{ty - 4:.1f}" text-anchor="end">target {target:.0f}{unit}</text>')
    if slope is not None and intercept is not None:
        ends = np.array([0.0, xmax])
        ty2 = _scale(intercept + slope * ends, lo, hi, bottom, top)
        parts.append(f'<line class="trend" x1="{left}" y1="{ty2[0]:.1f}" x2="{right}" y2="{ty2[1]:.1f}"/>')
    return Markup("".join(parts) + "</svg>")


def bars(values: Sequence[float], label: str, width: int = 560, height: int = 120) -> Markup:
    """Daily bars (e.g. steps), the largest labelled."""
    v = np.asarray(values, dtype=float)
    head = (f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
            f'preserveAspectRatio="xMinYMin meet"><title>{escape(label)}</title>')
    if v.size == 0:
        return Markup(head + "</svg>")
    top, bottom = 14, height - 4
    hi = max(float(v.max()), 1.0)
    bw = width / v.size
    hs = _scale(v, 0, hi, 0, bottom - top)
    rects = [f'<rect x="{i * bw + 0.5:.1f}" y="{bottom - h:.1f}" width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}"/>'
             for i, h in enumerate(hs.tolist())]
    return Markup(head + "".join(rects) + f'<text class="tick" x="2" y="11">max {hi:,.0f}</text></svg>')
