"""Repeated timings with medians and ranges, warm or cold page cache."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    median: float
    low: float
    high: float
    runs: int

    def __str__(self) -> str:
        return f"{fmt_s(self.median)} ({fmt_s(self.low)}–{fmt_s(self.high)}, n={self.runs})"


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches() -> None:
    """Write back and drop the page cache (root only): the next reads come from the disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def measure(
    action: Callable[[], object],
    *,
    runs: int,
    cold: bool = False,
    before: Callable[[], object] | None = None,
    after: Callable[[], object] | None = None,
) -> Sample:
    """Time ``action`` ``runs`` times; ``before``/``after`` are not timed."""
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        if cold:
            drop_caches()
        else:
            os.sync()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
        if after is not None:
            after()
    return Sample(statistics.median(times), min(times), max(times), len(times))
