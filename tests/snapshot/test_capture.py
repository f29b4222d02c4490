"""capture(): outputs, filters, incremental reuse, deduplication, limits, progress."""

from __future__ import annotations

import importlib
import io
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from hpcsnap.blobstore import Backend, ContentStore, Listed, LocalBackend, local
from hpcsnap.snapshot import (
    CaptureResult,
    Manifest,
    PathFilter,
    Progress,
    SnapshotTooLarge,
    capture,
    diff,
)
from hpcsnap.snapshot.limiter import RateLimiter

from .helpers import CountingOpener, all_blobs, blob, write_tree, xxh

NO_FILTER = PathFilter()

CASE = {
    "log.simpleFoam": b"Time = 0.1\n" * 100,
    "0.1/U": b"U field " * 1000,
    "0.1/p": b"p field " * 1000,
    "processor0/0.1/U": b"decomposed U " * 500,
    "system/controlDict": b"application simpleFoam;\n",
}


class CountingBackend:
    """A backend wrapper counting every call (to prove that none is made)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def put(self, key: str, src: BinaryIO) -> None:
        self.calls.append(f"put {key}")
        self.inner.put(key, src)

    def open(self, key: str) -> BinaryIO:
        self.calls.append(f"open {key}")
        return self.inner.open(key)

    def stat(self, key: str) -> int | None:
        self.calls.append(f"stat {key}")
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        self.calls.append(f"delete {key}")
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        self.calls.append(f"list {prefix}")
        return self.inner.list(prefix)

    def scan(self, prefix: str = "") -> Iterator[Listed]:
        self.calls.append(f"scan {prefix}")
        return self.inner.scan(prefix)

    def flush(self) -> None:
        self.calls.append("flush")
        self.inner.flush()

    def describe(self) -> dict[str, str]:
        return self.inner.describe()


@pytest.fixture
def counting(tmp_path: Path) -> CountingBackend:
    return CountingBackend(LocalBackend(tmp_path / "counted-store"))


def test_first_capture_stores_every_output(job: Path, store: ContentStore) -> None:
    write_tree(job, CASE)
    result = capture(job, store, path_filter=NO_FILTER)
    assert sorted(result.manifest) == sorted(CASE)
    for path, content in CASE.items():
        entry = result.manifest[path]
        assert (entry.kind, entry.size, entry.digest) == ("file", len(content), xxh(content))
        assert blob(store, xxh(content)) == content
        assert entry.mtime_ns == (job / path).stat().st_mtime_ns
    total = sum(map(len, CASE.values()))
    assert (result.files_total, result.files_read, result.files_reused) == (5, 5, 0)
    assert result.bytes_total == result.size_to_upload == result.bytes_stored == total
    assert result.bytes_read == total, "one read: hashed while stored"
    assert result.warnings == result.unstable == ()


def test_filters_apply(job: Path, store: ContentStore) -> None:
    write_tree(job, CASE)
    result = capture(job, store, path_filter=PathFilter(r"log\..*|/U$", r"processor\d+"))
    assert list(result.manifest) == ["0.1/U", "log.simpleFoam"]
    assert set(store.digests()) == {xxh(CASE["0.1/U"]), xxh(CASE["log.simpleFoam"])}


def test_unchanged_files_are_reused_without_any_io(
    job: Path, counting: CountingBackend, opener: CountingOpener
) -> None:
    store = ContentStore(counting, "alice")
    write_tree(job, CASE)
    first = capture(job, store, path_filter=NO_FILTER)
    counting.calls.clear()
    opener.opened.clear()
    second = capture(job, store, path_filter=NO_FILTER, parent=first.manifest, opener=opener)
    assert opener.opened == [], "unchanged files are not opened"
    assert counting.calls == [], "nor is the store asked anything"
    assert list(second.manifest.values()) == list(first.manifest.values())
    assert (second.files_reused, second.files_read, second.bytes_read, second.bytes_stored) == (
        5,
        0,
        0,
        0,
    )
    assert second.size_to_upload == 0


def test_changed_files_are_read_again(
    job: Path, store: ContentStore, opener: CountingOpener
) -> None:
    write_tree(job, CASE)
    first = capture(job, store, path_filter=NO_FILTER)
    (job / "log.simpleFoam").write_bytes(CASE["log.simpleFoam"] + b"Time = 0.2\n")
    # same size and mtime, new content: only ctime (and the content) tell
    st = (job / "0.1/p").stat()
    (job / "0.1/p").write_bytes(b"P" + CASE["0.1/p"][1:])
    os.utime(job / "0.1/p", ns=(st.st_atime_ns, st.st_mtime_ns))
    write_tree(job, {"0.2/U": b"new time step"})
    (job / "system/controlDict").unlink()
    second = capture(job, store, path_filter=NO_FILTER, parent=first.manifest, opener=opener)
    assert sorted(set(opener.opened)) == [b"0.1/p", b"0.2/U", b"log.simpleFoam"]
    assert second.files_reused == 2 and second.files_read == 3
    d = diff(first.manifest, second.manifest)
    assert [c.path for c in d.added] == ["0.2/U"]
    assert [c.path for c in d.removed] == ["system/controlDict"]
    assert [c.path for c in d.modified] == ["0.1/p", "log.simpleFoam"]
    assert blob(store, second.manifest["0.1/p"].digest or "") == b"P" + CASE["0.1/p"][1:]


@pytest.mark.parametrize(
    "change",
    [
        {"size": 1},
        {"mtime_ns": 1},
        {"ctime_ns": 1},
        {"ino": 1},
        {"mode": 0o100600},
        {"kind": "symlink", "digest": None, "target": "x"},
    ],
)
def test_any_metadata_difference_means_reading_again(
    job: Path, store: ContentStore, opener: CountingOpener, change: dict[str, object]
) -> None:
    write_tree(job, {"f": b"content"})
    first = capture(job, store, path_filter=NO_FILTER).manifest
    parent = Manifest([first["f"].replace(**change)])
    second = capture(job, store, path_filter=NO_FILTER, parent=parent, opener=opener)
    assert opener.opened == [b"f"], "hashed again (and found already stored)"
    assert second.manifest["f"] == first["f"]
    assert second.bytes_stored == 0


def test_a_replaced_file_is_read_even_with_identical_metadata(
    job: Path, store: ContentStore, opener: CountingOpener
) -> None:
    write_tree(job, {"out": b"v1"})
    first = capture(job, store, path_filter=NO_FILTER)
    st = (job / "out").stat()
    write_tree(job, {"tmp": b"v2"})
    os.utime(job / "tmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(job / "tmp", job / "out")  # new inode
    second = capture(job, store, path_filter=NO_FILTER, parent=first.manifest, opener=opener)
    assert opener.opened[0] == b"out"
    assert second.manifest["out"].digest == xxh(b"v2")


class RenamedOverOnClose(io.FileIO):
    """An opened file that a writer replaces (writes a temporary file and renames it over the
    path) right after the capture has read it to the end, before it looks at the path again."""

    def __init__(self, path: Path, new_content: bytes) -> None:
        super().__init__(path, "rb")
        self.path, self.new_content = path, new_content

    def close(self) -> None:
        if not self.closed:
            super().close()
            replace(self.path, self.new_content)


def replace(path: Path, content: bytes) -> None:
    (path.parent / ".tmp").write_bytes(content)
    os.replace(path.parent / ".tmp", path)


@pytest.mark.parametrize("when", ["after-read", "before-open"])
@pytest.mark.parametrize("two_pass", [False, True], ids=["local", "hash-then-upload"])
def test_a_file_renamed_over_while_captured_is_kept_as_read(
    job: Path, tmp_path: Path, two_pass: bool, when: str
) -> None:
    """The file read did not change from its opening to the end of its read, only the path
    did: what was read is a whole copy, recorded and not read again (which would also leave
    the content just stored referenced by nothing until the full sweep)."""
    inner = LocalBackend(tmp_path / "store")
    store = ContentStore(CountingBackend(inner) if two_pass else inner, "alice")
    old, new = b"step 3 " * 30_000, b"step 4 " * 30_000  # staged through a temporary copy
    write_tree(job, {"step.bin": old, "small": b"s"})
    opened: list[str] = []
    passes = 2 if two_pass else 1  # hashed, then uploaded: renamed after the second pass

    def opener(rel: bytes) -> BinaryIO:
        opened.append(os.fsdecode(rel))
        path = job / os.fsdecode(rel)
        if rel == b"step.bin" and opened.count("step.bin") == 1 and when == "before-open":
            replace(path, new)
        if rel == b"step.bin" and opened.count("step.bin") == passes and when == "after-read":
            return cast(BinaryIO, RenamedOverOnClose(path, new))
        return cast(BinaryIO, open(path, "rb", buffering=0))

    result = capture(job, store, path_filter=NO_FILTER, parent={}, opener=opener)

    kept = old if when == "after-read" else new
    assert result.unstable == () and result.warnings == ()
    assert result.manifest["step.bin"].digest == xxh(kept)
    assert opened.count("step.bin") == passes
    assert set(all_blobs(store)) == {xxh(kept), xxh(b"s")}, "nothing stored for no snapshot"
    again = capture(job, store, path_filter=NO_FILTER, parent=result.manifest)
    assert again.manifest["step.bin"].digest == xxh(new)
    assert again.files_read == (1 if when == "after-read" else 0)


def test_a_time_past_2262_is_captured_and_read_every_time(
    job: Path, store: ContentStore, opener: CountingOpener
) -> None:
    """Nanoseconds since 1970 past 2^63 do not fit the packed stamp: such a file is still
    captured, with its exact time, and read again by each snapshot instead of failing it."""
    write_tree(job, {"far": b"future", "near": b"now"})
    far = 11_000_000_000 * 10**9  # the year 2318
    os.utime(job / "far", ns=(far, far))
    first = capture(job, store, path_filter=NO_FILTER)
    assert first.manifest["far"].mtime_ns == far
    assert isinstance(first.manifest["far"].stamp, tuple)
    second = capture(job, store, path_filter=NO_FILTER, parent=first.manifest, opener=opener)
    assert opener.opened == [b"far"]
    assert second.manifest == first.manifest
    assert second.files_reused == 1


def test_identical_contents_are_stored_once(job: Path, store: ContentStore) -> None:
    content = b"same bytes in three places" * 1000
    write_tree(job, {"a": content, "b/c": content, "d/e/f": content, "other": b"x"})
    result = capture(job, store, path_filter=NO_FILTER)
    assert {e.digest for e in result.manifest.values()} == {xxh(content), xxh(b"x")}
    assert sorted(store.digests()) == sorted({xxh(content), xxh(b"x")})
    assert result.bytes_stored == len(content) + 1
    # another task of the same user producing the same file writes nothing
    other_job = job.parent / "job2"
    write_tree(other_job, {"copy": content})
    assert capture(other_job, store, path_filter=NO_FILTER).bytes_stored == 0


def test_large_outputs_are_written_behind_and_in_place_when_capture_returns(
    job: Path, tmp_path: Path
) -> None:
    """Contents that would wait for the disk are written by the store's background writer
    while the next files are read; capture returns once every one is in place (before any
    flush), and content met twice while still being written is stored once."""
    backend = LocalBackend(tmp_path / "behind-store")
    threads: list[str] = []
    real_put = backend.put

    def put(key: str, src: BinaryIO) -> None:
        threads.append(threading.current_thread().name)
        real_put(key, src)

    backend.put = put  # type: ignore[method-assign]
    store = ContentStore(backend, "alice")
    big = [os.urandom(local.DIRECT_MIN + 4096 * i + 1) for i in range(6)]
    write_tree(job, {f"run/field{i}": data for i, data in enumerate(big)})
    write_tree(job, {"run/copy": big[0], "log": b"small"})
    result = capture(job, store, path_filter=NO_FILTER, flush=False)
    assert "hpcsnap-write" in threads, "no content was handed to the background writer"
    assert result.bytes_stored == sum(map(len, big)) + len(b"small")
    for path, entry in result.manifest.items():
        assert entry.digest is not None
        assert blob(store, entry.digest) == (job / path).read_bytes(), path
    assert not [t for t in threading.enumerate() if t.name == "hpcsnap-write"]


def test_unchanged_inputs_are_not_outputs(job: Path, store: ContentStore) -> None:
    write_tree(job, {"mesh/points": b"P" * 100, "system/controlDict": b"endTime 1;"})
    baseline = capture(job, store, path_filter=NO_FILTER).manifest
    time.sleep(0.01)
    write_tree(job, {"system/controlDict": b"endTime 2;", "log.run": b"started"})
    result = capture(job, store, path_filter=NO_FILTER, baseline=baseline)
    assert sorted(result.manifest) == ["log.run", "system/controlDict"]
    everything = capture(
        job, store, path_filter=NO_FILTER, baseline=baseline, include_unchanged_inputs=True
    )
    assert sorted(everything.manifest) == ["log.run", "mesh/points", "system/controlDict"]


def test_hard_limit_fails_before_reading(
    job: Path, store: ContentStore, opener: CountingOpener
) -> None:
    write_tree(job, {"big": b"x" * 300_000, "small": b"y" * 10})
    with pytest.raises(SnapshotTooLarge) as info:
        capture(job, store, path_filter=NO_FILTER, hard_limit=200 * 1024, opener=opener)
    assert str(info.value).startswith(
        "snapshot would be 293.0 KiB, over the hard limit of 200.0 KiB"
    )
    assert (info.value.size, info.value.limit) == (300_010, 200 * 1024)
    assert opener.opened == []
    assert list(store.digests()) == []


def test_hard_limit_counts_reused_files_too(job: Path, store: ContentStore) -> None:
    write_tree(job, {"big": b"x" * 5000})
    first = capture(job, store, path_filter=NO_FILTER)
    write_tree(job, {"new": b"y" * 10})
    with pytest.raises(SnapshotTooLarge):
        capture(job, store, path_filter=NO_FILTER, parent=first.manifest, hard_limit=5000)


def test_soft_limit_warns(job: Path, store: ContentStore) -> None:
    write_tree(job, {"big": b"x" * (3 * 1024 * 1024)})
    result = capture(job, store, path_filter=NO_FILTER, soft_limit=2 * 1024 * 1024)
    assert list(result.manifest) == ["big"]
    assert result.warnings == (
        "snapshot is 3.0 MiB, over the soft limit of 2.0 MiB: consider narrowing the snapshot "
        "filters",
    )
    under = capture(job, store, path_filter=NO_FILTER, soft_limit=3 * 1024 * 1024)
    assert under.warnings == ()


def test_progress_and_bandwidth_cap(job: Path, store: ContentStore) -> None:
    write_tree(job, {f"f{i}": bytes([i]) * 300_000 for i in range(3)})
    reports: list[tuple[float, Progress]] = []
    start = time.monotonic()
    result = capture(
        job,
        store,
        path_filter=NO_FILTER,
        progress=lambda p: reports.append((time.monotonic(), p)),
        max_bytes_per_sec=1_500_000,
    )
    elapsed = time.monotonic() - start
    assert result.bytes_read == 900_000
    assert elapsed >= 0.4, "0.9 MB read at 1.5 MB/s takes about 0.6 s"
    progress = [p for _, p in reports]
    assert progress[0] == Progress(900_000, 0, 0, 3)
    assert progress[-1] == Progress(900_000, 900_000, 3, 3)
    assert len(progress) >= 3, "reported while reading, not only at both ends"
    transferred = [p.transferred for p in progress]
    assert transferred == sorted(transferred)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(reports[:-1])]
    assert all(gap >= 0.19 for gap in gaps)


def test_rate_limiter_sleeps_to_keep_the_average() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
    limiter.consume(500)
    assert slept == [0.5]
    now[0] += 10  # idle: at most one second of burst builds up
    limiter.consume(1500)
    assert slept == [0.5, 0.5]
    with pytest.raises(ValueError, match="must be positive"):
        RateLimiter(0)


def test_result_counts_are_consistent(job: Path, store: ContentStore) -> None:
    write_tree(job, CASE)
    first = capture(job, store, path_filter=NO_FILTER)
    write_tree(job, {"new": b"n"})
    r: CaptureResult = capture(job, store, path_filter=NO_FILTER, parent=first.manifest)
    assert r.files_total == len(r.manifest) == r.files_reused + r.files_read == 6
    assert r.bytes_total == r.manifest.total_size == first.bytes_total + 1
    assert r.size_to_upload == 1


def test_max_tries_must_be_positive(job: Path, store: ContentStore) -> None:
    with pytest.raises(ValueError, match="max_tries"):
        capture(job, store, path_filter=NO_FILTER, max_tries=0)


def test_stored_blobs_survive_reopening_the_store(job: Path, tmp_path: Path) -> None:
    write_tree(job, {"a": b"durable"})
    store = ContentStore(LocalBackend(tmp_path / "s"), "u")
    result = capture(job, store, path_filter=NO_FILTER)
    reopened = ContentStore(LocalBackend(tmp_path / "s"), "u")
    assert all_blobs(reopened) == {result.manifest["a"].digest: b"durable"}


def test_the_next_files_are_read_ahead_within_a_window_and_never_through_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one file is read, the kernel is asked to fetch the next ones (cold caches read a
    tree of small files one seek at a time otherwise): in reading order, never more than the
    window ahead of the reader, never the target of a symlink swapped in after the scan."""
    capture_module = importlib.import_module("hpcsnap.snapshot.capture")
    root = tmp_path / "job"
    root.mkdir()
    sizes = {f"f{i:02}": (i % 5 + 1) * 100_000 for i in range(30)}
    for name, size in sizes.items():
        (root / name).write_bytes(os.urandom(size))
    # the file read last (files are read in inode order) becomes a symlink after the scan
    last = max(sizes, key=lambda n: os.lstat(root / n).st_ino)
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 100_000)
    advised: list[tuple[int, int, int]] = []
    real_fadvise = os.posix_fadvise
    read: list[int] = []
    window = 600_000
    swapped = False

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        nonlocal swapped
        if advice == os.POSIX_FADV_DONTNEED:  # a store giving back its page cache
            # (a store of an earlier test may do so too, when it is collected meanwhile)
            assert not os.readlink(f"/proc/self/fd/{fd}").startswith(str(root))
            real_fadvise(fd, offset, length, advice)
            return
        assert advice == os.POSIX_FADV_WILLNEED
        ino = os.fstat(fd).st_ino
        assert ino != secret.stat().st_ino, "read ahead through a symlink"
        advised.append((ino, offset, length))
        ahead = sum(a[2] for a in advised) - sum(read)
        assert ahead <= window + capture_module._ADVICE_STEP, "advised beyond the window"
        if not swapped:  # the first advice comes after the scan
            swapped = True
            (root / last).unlink()
            (root / last).symlink_to(secret)
        real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(capture_module.os, "posix_fadvise", fadvise)
    monkeypatch.setattr(capture_module, "READ_AHEAD", window)
    store = ContentStore(LocalBackend(tmp_path / "store"), "u1")
    with CountingOpener(root) as opener:
        result = capture(
            root, store, path_filter=NO_FILTER, opener=lambda rel: _noting(read, opener(rel))
        )

    inodes = {os.lstat(root / n).st_ino for n in sizes if n != last}
    order = [ino for ino, _, _ in advised]
    assert set(order) == inodes, "every file to read, and nothing else, is read ahead"
    assert order == sorted(order), "in reading (inode) order"
    assert last not in result.manifest
    assert len(result.manifest) == 29


def _noting(sizes: list[int], src: BinaryIO) -> BinaryIO:
    from hpcsnap.blobstore.content import tap

    return tap(src, lambda chunk: sizes.append(len(chunk)))
