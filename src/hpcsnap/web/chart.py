"""The chart of a task page: snapshot size and files changed over time, as an inline SVG.

Drawn here from the snapshot rows (successful ones), so the page needs no charting script; the
page's script only swaps in a fresh copy. Colours are SVG attributes (the pages' CSP forbids
inline styles).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from hpcsnap.server.db import Snapshot
from hpcsnap.web.render import fmt_datetime, human_duration, human_size, render

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 72, 64, 28, 46
#: Most snapshots drawn; longer histories are sampled evenly (first and last always drawn).
MAX_POINTS = 300
STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    bar_y: float
    bar_h: float
    title: str


@dataclass(frozen=True)
class Tick:
    pos: float
    text: str


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times 10^k that is at least ``value`` (>0)."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= value * (1 - 1e-9):
            return float(m * 10**exp)
    return float(10 ** (exp + 1))  # pragma: no cover


def size_axis(max_bytes: int) -> tuple[float, list[Tick]]:
    """The top of the size axis (bytes) and 5 ticks labelled in one binary unit."""
    unit, scale = "B", 1
    for name, factor in (("KiB", 1024), ("MiB", 1024**2), ("GiB", 1024**3), ("TiB", 1024**4)):
        if max_bytes >= factor:
            unit, scale = name, factor
    top = nice_ceiling(max(max_bytes, 1) / scale)
    ticks = [Tick(0, "0")] + [
        Tick(top * i / 4 * scale, f"{top * i / 4:g} {unit}") for i in range(1, 5)
    ]
    return top * scale, ticks


def clock(seconds: float) -> str:
    s = round(seconds)
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def time_ticks(span: float) -> list[float]:
    step = next((s for s in STEPS if span / s <= 6), 86400 * max(1, math.ceil(span / 86400 / 6)))
    return [i * step for i in range(int(span // step) + 1)]


def chart_svg(snapshots: Sequence[Snapshot], start: dt.datetime | None) -> str:
    """The chart of ``snapshots`` (only successful ones are drawn) since ``start``."""
    done = [s for s in snapshots if s.status == "Success"]
    done.sort(key=lambda s: s.trigger_date)
    if len(done) > MAX_POINTS:
        stride = math.ceil(len(done) / MAX_POINTS)
        done = [*done[:-1:stride], done[-1]]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = HEIGHT - BOTTOM
    if not done:
        return render(
            "chart.svg",
            width=WIDTH,
            height=HEIGHT,
            empty=True,
            desc="No successful snapshot yet.",
            left=LEFT,
            right=WIDTH - RIGHT,
            top=TOP,
            base=base,
            points=[],
            size_ticks=[],
            file_ticks=[],
            x_ticks=[],
            line="",
            bar_w=0,
        )
    t0 = min(start or done[0].trigger_date, done[0].trigger_date)
    times = [(s.trigger_date - t0).total_seconds() for s in done]
    span = max(times[-1], 1.0)
    size_top, size_ticks = size_axis(max(s.bytes_total for s in done))
    files_top = nice_ceiling(max(max(s.files_read for s in done), 1))
    if files_top < 4:
        files_top = 4.0

    def x_of(t: float) -> float:
        return LEFT + plot_w * t / span

    bar_w = max(3.0, min(18.0, plot_w / max(len(done), 1) * 0.5))
    points = []
    for s, t in zip(done, times, strict=True):
        bar_h = plot_h * s.files_read / files_top
        label = f" “{s.label}”" if s.label else ""
        points.append(
            Point(
                x=round(x_of(t), 1),
                y=round(base - plot_h * s.bytes_total / size_top, 1),
                bar_y=round(base - bar_h, 1),
                bar_h=round(bar_h, 1),
                title=(
                    f"{fmt_datetime(s.trigger_date)}, {s.kind}{label}: "
                    f"{human_size(s.bytes_total)} in {s.files_total} files, "
                    f"{s.files_read} changed"
                ),
            )
        )
    first, last = done[0], done[-1]
    desc = (
        f"{len(done)} successful snapshots over {human_duration(span)}: size from "
        f"{human_size(first.bytes_total)} to {human_size(last.bytes_total)}; the latest changed "
        f"{last.files_read} of its {last.files_total} files."
    )
    return render(
        "chart.svg",
        width=WIDTH,
        height=HEIGHT,
        empty=False,
        desc=desc,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        base=base,
        points=points,
        line=" ".join(f"{p.x},{p.y}" for p in points),
        bar_w=round(bar_w, 1),
        size_ticks=[Tick(round(base - plot_h * t.pos / size_top, 1), t.text) for t in size_ticks],
        file_ticks=[
            Tick(round(base - plot_h * i / 4, 1), f"{files_top * i / 4:g}") for i in range(5)
        ],
        x_ticks=[Tick(round(x_of(t), 1), clock(t)) for t in time_ticks(span)],
    )
