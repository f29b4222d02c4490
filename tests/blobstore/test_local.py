"""What the local backend adds to the common contract: layout, permissions, no leftovers."""

from __future__ import annotations

import errno
import fcntl
import gc
import io
import os
import random
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from hpcsnap.blobstore import LocalBackend, StorageFull, local, open_backend


def test_layout_and_permissions(tmp_path: Path) -> None:
    root = tmp_path / "store"
    backend = LocalBackend(root)
    backend.put("ns/ab/abc", io.BytesIO(b"data"))
    assert (root / "objects" / "ns" / "ab" / "abc").read_bytes() == b"data"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert backend.describe() == {"kind": "local", "root": str(root)}


def test_existing_root_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    LocalBackend(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_relative_root_is_described_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend = LocalBackend(Path("rel"))
    assert backend.describe()["root"] == str(tmp_path / "rel")


def test_failed_put_leaves_no_temporary_file(tmp_path: Path) -> None:
    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            raise OSError("disk on fire")

    backend = LocalBackend(tmp_path / "s")
    with pytest.raises(OSError, match="disk on fire"):
        backend.put("k", io.BufferedReader(Failing()))
    assert list((tmp_path / "s" / "tmp").iterdir()) == []
    assert list((tmp_path / "s" / "objects").iterdir()) == []


def test_list_walks_only_the_prefix_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path / "s")
    for key in ("ns/aa/aa1", "ns/ab/ab1", "ns/ab/ab2", "other/zz/zz1"):
        backend.put(key, io.BytesIO(b"x"))
    visited: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: str) -> object:
        visited.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)
    assert sorted(backend.list("ns/ab/ab")) == ["ns/ab/ab1", "ns/ab/ab2"]
    assert visited == [str(tmp_path / "s" / "objects" / "ns" / "ab")]


def test_scan_reports_the_files_mtime(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s")
    backend.put("ns/ab/old", io.BytesIO(b"12345"))
    backend.put("ns/ab/new", io.BytesIO(b"1"))
    os.utime(tmp_path / "s" / "objects" / "ns" / "ab" / "old", (1_000_000_000, 1_000_000_000))
    listed = {x.key: (x.size, x.modified) for x in backend.scan("ns/")}
    assert listed["ns/ab/old"] == (5, 1_000_000_000)
    assert listed["ns/ab/new"][1] > 1_000_000_000


def test_open_backend_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown blob store kind 's4'"):
        open_backend({"kind": "s4", "root": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown blob store kind None"):
        open_backend({})
    with pytest.raises(ValueError, match="needs a 'root'"):
        open_backend({"kind": "local"})


def test_leftovers_of_killed_puts_are_swept_when_old(tmp_path: Path) -> None:
    LocalBackend(tmp_path / "s")
    tmp = tmp_path / "s" / "tmp"
    old, fresh = tmp / "put-old", tmp / "put-fresh"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    os.utime(old, (0, 1_000_000))
    LocalBackend(tmp_path / "s")  # opening the store sweeps it (server start, each agent)
    assert sorted(p.name for p in tmp.iterdir()) == ["put-fresh"]


_SIZES = [0, 1, 4095, 4096, 4097, (1 << 18) - 1, 1 << 18, (1 << 18) + 4097, (1 << 20) - 1]
_SIZES += [1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 12345]


@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_objects_are_exact_around_every_block_and_direct_write_boundary(
    tmp_path: Path, where: str
) -> None:
    """Whole blocks of large objects go around the page cache (O_DIRECT) and the rest through
    it; on tmpfs, which may refuse O_DIRECT, everything goes through it. Bytes are the same."""
    if where == "tmpfs":
        if not os.path.isdir("/dev/shm"):
            pytest.skip("no /dev/shm")
        root = Path(tempfile.mkdtemp(dir="/dev/shm"))
    else:
        root = tmp_path / "store"
    try:
        backend = LocalBackend(root)
        for size in _SIZES:
            data = random.Random(size).randbytes(size)
            # odd read sizes: the writer must regroup them into aligned blocks
            backend.put(f"k{size}", _Dribble(data, 300_001))
            with backend.open(f"k{size}") as f:
                assert f.read() == data, size
    finally:
        shutil.rmtree(root)


class _Dribble(io.RawIOBase):
    """A stream that answers each read with at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self._src = io.BytesIO(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._src.read(self._step if size is None or size < 0 else min(size, self._step))


def test_a_file_system_refusing_direct_writes_gets_buffered_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems accept the O_DIRECT flag and then refuse the write (EINVAL): the rest
    of the object is written through the page cache instead, with nothing lost or repeated."""
    real_write = os.write
    refused = []

    def write(fd: int, data: bytes | memoryview) -> int:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if flags & os.O_DIRECT:
            refused.append(len(memoryview(data)))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(local.os, "write", write)
    backend = LocalBackend(tmp_path / "store")
    data = random.Random(1).randbytes(5 * (1 << 20) + 77)
    backend.put("big", io.BytesIO(data))
    assert refused, "the direct write was never attempted"
    assert len(refused) == 1, "a refused file system is not asked again for the same object"
    with backend.open("big") as f:
        assert f.read() == data


def test_the_route_follows_where_the_content_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large writes go around the page cache unless, over the last ROUTE_EVERY bytes staged,
    at least half as many were read from the store's disk; where the kernel does not tell,
    they do."""
    monkeypatch.setattr(local, "ROUTE_EVERY", 100)
    reads = [0]
    route = local._Route(lambda: local.DeviceIO(reads[0], 0))
    assert route.direct
    reads[0] += 100
    route.staged(50)  # not a whole period yet: no change
    assert route.direct
    route.staged(50)  # the first period came from a disk: that alone decides
    assert not route.direct
    route.staged(100)  # none of these: on average, half
    assert not route.direct
    route.staged(100)  # a quarter
    assert route.direct
    reads[0] += 200
    route.staged(100)  # a burst of read-ahead
    assert not route.direct
    route.staged(100)  # a pause in it does not change the route at once
    assert not route.direct
    route.staged(100)
    assert route.direct
    fed = [0]
    warm = local._Route(lambda: local.DeviceIO(fed[0], 0))
    fed[0] += 40
    warm.staged(100)  # a first period mostly from memory
    assert warm.direct
    unknown = local._Route(lambda: None)
    unknown.staged(1000)
    assert unknown.direct


def _cached(path: Path) -> int:
    """Bytes of ``path`` in the page cache (util-linux ``fincore``)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip())


@pytest.mark.skipif(
    not os.access("/proc/sys/vm/drop_caches", os.W_OK), reason="needs root to drop the page cache"
)
def test_content_read_from_a_disk_is_written_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Content that comes from memory is written around the page cache (the object is not
    cached); once it comes from a disk (cold cache), through it (the object is cached, and
    the disk is left to the reads until the flush)."""
    monkeypatch.setattr(local, "ROUTE_EVERY", 8 << 20)
    source = tmp_path / "source"
    source.write_bytes(random.Random(3).randbytes(64 << 20))
    objects = tmp_path / "store" / "objects"

    with source.open("rb") as src:  # just written: in memory
        LocalBackend(tmp_path / "store").put("warm", src)
    assert _cached(objects / "warm") < (1 << 20)

    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    with source.open("rb") as src:  # read from the disk
        LocalBackend(tmp_path / "store").put("cold", src)
    assert _cached(objects / "cold") >= (32 << 20)
    assert (objects / "cold").read_bytes() == (objects / "warm").read_bytes()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_objects_written_from_memory_give_their_page_cache_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects written through the page cache while the content comes from memory leave it
    once written back, a generation later, so the next objects reuse those pages; each
    generation's files are closed. The last ones, clean after the flush, are kept until the
    next object is staged (a periodic snapshot's delta then reuses the last one's pages),
    except temporary copies discarded, closed at the flush. (A generation whose write-back
    has not ended when it is dropped stays cached: best effort, so the first one is written
    back here before the next two are written.)"""
    monkeypatch.setattr(local, "RECYCLE_FILES", 4)
    backend = LocalBackend(tmp_path / "store")
    objects = tmp_path / "store" / "objects"
    before = _open_fds()
    data = {f"k{i}": random.Random(i).randbytes(100_000 + i) for i in range(10)}
    for i, (key, content) in enumerate(data.items()):
        if i == 4:
            os.sync()
        backend.put(key, io.BytesIO(content))
        assert _open_fds() - before <= 8, "two generations of 4 at most are held open"
    # the first generation was dropped once the second was complete, before any flush
    assert [_cached(objects / f"k{i}") for i in range(4)] == [0, 0, 0, 0]
    discarded = backend.stage(io.BytesIO(b"y" * 100_000))
    discarded.discard()
    backend.flush()
    # k4-k9 rest open and cached; the discarded copy, which holds disk space, is closed
    assert _open_fds() == before + 6
    assert _cached(objects / "k9") > 0
    backend.put("next", io.BytesIO(b"z" * 100_000))
    assert _open_fds() == before + 1  # the resting ones were dropped for it, and closed
    assert [_cached(objects / f"k{i}") for i in range(4, 10)] == [0] * 6
    backend.flush()
    del backend, discarded  # dropped without another object: what it kept is closed too
    gc.collect()
    assert _open_fds() == before
    unflushed = LocalBackend(tmp_path / "store")
    unflushed.put("last", io.BytesIO(b"x" * 100_000))
    assert _open_fds() == before + 1
    del unflushed
    gc.collect()
    assert _open_fds() == before
    backend = LocalBackend(tmp_path / "store")
    for key, content in data.items():
        with backend.open(key) as f:
            assert f.read() == content


def test_objects_written_while_the_disk_reads_stay_in_the_page_cache(tmp_path: Path) -> None:
    """While the content comes from the disk, objects keep their pages until the kernel writes
    them back on its own or at the flush: write-back started early would compete with the
    reads."""
    backend = LocalBackend(tmp_path / "store")
    backend._route.direct = False
    data = random.Random(5).randbytes(100_000)
    before = _open_fds()
    backend.put("k", io.BytesIO(data))
    assert _open_fds() == before
    backend.flush()
    assert _cached(tmp_path / "store" / "objects" / "k") >= len(data)


class _Flipping(_Dribble):
    """A stream that turns the route direct at its second read, once its first part is
    written (the route may change within a large object)."""

    def __init__(self, data: bytes, step: int, route: local._Route) -> None:
        super().__init__(data, step)
        self._route = route
        self._reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self._reads += 1
        self._route.direct = self._reads > 1
        return super().read(size)


def test_an_object_begun_through_the_cache_at_an_odd_length_never_goes_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first part written through the page cache at a length that is not a whole number of
    blocks leaves the file's end unaligned: the rest must go through the cache too (a direct
    write there would be refused, or worse), and the bytes are the same."""
    real_set = local._DirectWriter._set_direct
    directs: list[bool] = []

    def set_direct(self: local._DirectWriter, on: bool) -> None:
        directs.append(on)
        real_set(self, on)

    monkeypatch.setattr(local._DirectWriter, "_set_direct", set_direct)
    backend = LocalBackend(tmp_path / "store")
    data = random.Random(7).randbytes(3 * (1 << 20) + 5)
    for step, expect_direct in ((300_001, False), (1 << 20, True)):
        directs.clear()
        backend._route.direct = False
        backend.put(f"k{step}", _Flipping(data, step, backend._route))
        with backend.open(f"k{step}") as f:
            assert f.read() == data, step
        assert (True in directs) is expect_direct, (step, directs)


class _Gate:
    """Holds the background writer's puts of the keys given until opened (the seam between
    :class:`local._Behind` and the backend's own put, which stays real)."""

    def __init__(self, backend: LocalBackend, held: set[str], fail: set[str] = frozenset()):
        self.open = threading.Event()
        self.entered = threading.Event()
        self._put = backend.put
        self._held = held
        self._fail = fail
        backend.put = self.put  # type: ignore[method-assign]

    def put(self, key: str, src: io.BytesIO) -> None:
        if key in self._held and threading.current_thread() is not threading.main_thread():
            self.entered.set()
            assert self.open.wait(10)
        if key in self._fail:
            raise StorageFull(f"no space left for {key}")
        self._put(key, src)


BIG = local.DIRECT_MIN + 4096


def test_writing_behind_hands_large_contents_to_a_thread(tmp_path: Path) -> None:
    """Contents that would wait for the disk are written by a background thread while the
    caller goes on; small ones at once. Each is pending until in place, and every one is in
    place, exact, when the block ends."""
    backend = LocalBackend(tmp_path / "store")
    big, small = random.Random(1).randbytes(BIG), b"small"
    gate = _Gate(backend, held={"big"})
    with backend.writing_behind() as behind:
        behind.put("big", big)
        assert gate.entered.wait(10)
        assert behind.pending("big") and backend.stat("big") is None
        behind.put("small", small)  # not queued behind the held one
        assert not behind.pending("small") and backend.stat("small") == len(small)
        gate.open.set()
    assert not behind.pending("big")
    with backend.open("big") as f:
        assert f.read() == big


def test_writing_behind_raises_a_failed_put(tmp_path: Path) -> None:
    """A put that fails in the background is raised by the next put, or when the block ends;
    the puts handed over after it are dropped."""
    backend = LocalBackend(tmp_path / "store")
    data = random.Random(2).randbytes(BIG)
    _Gate(backend, held=set(), fail={"a"})
    with pytest.raises(StorageFull, match="no space left for a"), backend.writing_behind() as w:
        w.put("a", data)
        w.put("b", data[::-1])
    assert backend.stat("a") is None
    assert backend.stat("b") is None


def test_leaving_writing_behind_by_an_error_drops_what_was_not_begun(tmp_path: Path) -> None:
    """The put under way ends, the ones waiting are dropped, and the caller's error (not
    anything of the writer's) propagates."""
    backend = LocalBackend(tmp_path / "store")
    data = random.Random(3).randbytes(BIG)
    gate = _Gate(backend, held={"first"})
    with pytest.raises(KeyError, match="the caller's"), backend.writing_behind() as behind:
        behind.put("first", data)
        assert gate.entered.wait(10)
        behind.put("second", data[::-1])
        threading.Timer(0.2, gate.open.set).start()
        raise KeyError("the caller's")
    assert backend.stat("first") == len(data)
    assert backend.stat("second") is None
