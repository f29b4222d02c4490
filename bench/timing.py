"""Repeated timings with medians and ranges, warm or cold page cache."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hpcsnap.blobstore.local import device_io


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


RECENTLY_DELETED_S = 65.0
"""How long ext4 keeps freshly deleted inodes out of reuse (60 s once written back): a file
created sooner costs a scan past every one of them, hundreds of µs each after deleting 10^4."""


def settle(seconds: float = RECENTLY_DELETED_S) -> None:
    """Let the file system forget what was just deleted, so a run that creates many files is not
    charged for the previous run's deletions (same for every side)."""
    os.sync()
    time.sleep(seconds)


def can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches() -> None:
    """Write back and drop the page cache (root only): the next reads come from the disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _prepare(cold: bool) -> None:
    if cold:
        drop_caches()
    else:
        os.sync()


def disk_written(path: Path) -> int | None:
    """Bytes written so far to the block device holding ``path``, or None where that is not
    known (no such device: tmpfs, overlay, a network file system)."""
    counters = device_io(path)()
    return None if counters is None else counters.written


def compare(
    sides: Mapping[str, Callable[[int], object]],
    *,
    runs: int,
    cold: bool = False,
    written: dict[str, list[int]] | None = None,
    device_of: Path | None = None,
) -> dict[str, Sample]:
    """Time each side ``runs`` times, interleaved (round 1: A, B, C; round 2: A, B, C...), so
    that a machine growing slower or faster during the measure weighs on every side alike.
    Each action gets the round number (e.g. to write to a fresh directory). With ``written``
    and ``device_of``, also what each run wrote to the disk holding ``device_of`` while it
    was timed (where the machine tells)."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(runs):
        for name, action in sides.items():
            _prepare(cold)
            before = disk_written(device_of) if device_of is not None else None
            start = time.perf_counter()
            action(round_)
            times[name].append(time.perf_counter() - start)
            after = disk_written(device_of) if device_of is not None else None
            if written is not None and before is not None and after is not None:
                written.setdefault(name, []).append(after - before)
    return {name: Sample(statistics.median(t), min(t), max(t), len(t)) for name, t in times.items()}


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
        _prepare(cold)
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
        if after is not None:
            after()
    return Sample(statistics.median(times), min(times), max(times), len(times))
