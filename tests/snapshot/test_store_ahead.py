"""store_ahead(): settled files stored before a capture, which then reads only the rest."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from hpcsnap.blobstore import ContentStore
from hpcsnap.snapshot import Entry, PathFilter, SnapshotTooLarge, capture, store_ahead

from .helpers import all_blobs, write_tree, xxh

SETTLED = {f"case/t{i}/f{i}.dat": bytes([i]) * (1000 + i) for i in range(6)}
LATE = {"case/t0/late.dat": b"still being written", "log": b"Time = 0.2\n"}


def ahead_of(job: Path, store: ContentStore, **options: Any) -> dict[str, Entry]:
    """store_ahead() with every file settled, never stopped and no parent, unless told."""
    defaults: dict[str, Any] = {
        "path_filter": PathFilter(),
        "parent": {},
        "settled_before": time.time_ns() + 10**9,
        "stop": lambda: False,
    }
    return store_ahead(job, store, **{**defaults, **options})


def _settled_then_late(job: Path) -> int:
    """Write SETTLED, then LATE strictly after; returns a cut-off between the two."""
    write_tree(job, SETTLED)
    cutoff = max(os.lstat(job / p).st_ctime_ns for p in SETTLED)
    time.sleep(0.05)  # file times come from a clock coarser than a nanosecond
    write_tree(job, LATE)
    assert min(os.lstat(job / p).st_ctime_ns for p in LATE) > cutoff
    return cutoff


def test_only_files_left_alone_are_stored_and_a_capture_then_reads_the_rest(
    job: Path, store: ContentStore
) -> None:
    cutoff = _settled_then_late(job)
    (job / "link").symlink_to("case")
    ahead = store_ahead(
        job, store, path_filter=PathFilter(), parent={}, settled_before=cutoff, stop=lambda: False
    )
    assert sorted(ahead) == sorted(SETTLED)
    assert {e.digest for e in ahead.values()} == {xxh(c) for c in SETTLED.values()}
    assert set(all_blobs(store).values()) == set(SETTLED.values())

    result = capture(job, store, path_filter=PathFilter(), parent=ahead)
    assert result.files_reused == len(SETTLED)
    assert result.files_read == len(LATE) + 1  # the symlink is read by the capture
    assert result.bytes_read == sum(len(c) for c in LATE.values())
    assert set(result.manifest) == set(SETTLED) | set(LATE) | {"link"}


def test_a_file_changed_after_it_was_stored_ahead_is_read_again(
    job: Path, store: ContentStore
) -> None:
    write_tree(job, SETTLED)
    ahead = ahead_of(job, store)
    assert len(ahead) == len(SETTLED)
    changed = next(iter(SETTLED))
    time.sleep(0.05)
    (job / changed).write_bytes(b"new content")
    result = capture(job, store, path_filter=PathFilter(), parent=ahead)
    assert result.files_read == 1
    entry = result.manifest.lookup(changed)
    assert entry is not None and entry.digest == xxh(b"new content")


def test_filters_and_parent_are_honoured(job: Path, store: ContentStore) -> None:
    write_tree(job, SETTLED)
    first = ahead_of(job, store, path_filter=PathFilter(blacklist=r"f[0-2]\.dat$"))
    assert sorted(first) == sorted(p for p in SETTLED if p[-5] not in "012")
    second = ahead_of(job, store, parent=first)
    assert sorted(second) == sorted(p for p in SETTLED if p[-5] in "012")


def test_it_stops_between_files_when_asked(job: Path, store: ContentStore) -> None:
    write_tree(job, SETTLED)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    ahead = ahead_of(job, store, stop=stop)
    assert len(ahead) == 2
    assert len(all_blobs(store)) == 2


def test_nothing_is_stored_past_the_hard_limit(job: Path, store: ContentStore) -> None:
    write_tree(job, SETTLED)
    with pytest.raises(SnapshotTooLarge):
        ahead_of(job, store, hard_limit=sum(len(c) for c in SETTLED.values()) - 1)
    assert all_blobs(store) == {}


def test_files_rewritten_since_the_parent_stored_them_are_left_to_the_capture(
    job: Path, store: ContentStore
) -> None:
    write_tree(job, SETTLED)
    first = capture(job, store, path_filter=PathFilter()).manifest
    grown = next(iter(SETTLED))
    time.sleep(0.05)
    with open(job / grown, "ab") as f:
        f.write(b"one more step")
    write_tree(job, {"new.dat": b"a new file"})
    ahead = ahead_of(job, store, parent=first)
    assert sorted(ahead) == ["new.dat"]
