"""What a capture never does, on hostile trees: follow symlinks, open FIFOs, sockets or
devices, trip over vanishing files or odd names, or record a torn copy."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from hpcsnap.blobstore import ContentStore, LocalBackend
from hpcsnap.snapshot import Manifest, PathFilter, capture, restore

from .helpers import CountingOpener, all_blobs, make_deep, unprivileged, write_tree, xxh

NO_FILTER = PathFilter()


def test_symlinks_are_recorded_never_followed(
    job: Path, tmp_path: Path, store: ContentStore, opener: CountingOpener
) -> None:
    outside = tmp_path / "outside"
    write_tree(outside, {"secret.key": b"TOP SECRET " * 100})
    write_tree(job, {"real.dat": b"result"})
    (job / "passwd").symlink_to("/etc/passwd")
    (job / "out-dir").symlink_to(outside, target_is_directory=True)
    (job / "loop-a").symlink_to("loop-b")
    (job / "loop-b").symlink_to("loop-a")
    (job / "self").symlink_to("self")
    (job / "dangling").symlink_to("does/not/exist")
    (job / "in-tree").symlink_to("real.dat")

    result = capture(job, store, path_filter=NO_FILTER, opener=opener)

    assert opener.opened == [b"real.dat"]
    links = {p: e for p, e in result.manifest.items() if e.kind == "symlink"}
    assert {p: e.target for p, e in links.items()} == {
        "dangling": "does/not/exist",
        "in-tree": "real.dat",
        "loop-a": "loop-b",
        "loop-b": "loop-a",
        "out-dir": str(outside),
        "passwd": "/etc/passwd",
        "self": "self",
    }
    assert all(e.digest is None for e in links.values())
    assert not any(p.startswith("out-dir/") for p in result.manifest)
    assert all_blobs(store) == {xxh(b"result"): b"result"}, "nothing from outside is stored"
    assert result.bytes_total == len(b"result")


def test_a_symlink_that_passes_the_filter_is_still_not_followed(
    job: Path, store: ContentStore
) -> None:
    (job / "log.passwd").symlink_to("/etc/passwd")
    result = capture(job, store, path_filter=PathFilter(whitelist=r"log\."))
    assert result.manifest["log.passwd"].kind == "symlink"
    assert list(store.digests()) == []


@pytest.mark.timeout(20)
def test_fifo_socket_and_device_are_skipped_without_opening(
    job: Path, store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(job, {"ok": b"fine"})
    os.mkfifo(job / "fifo")
    os.mkfifo(job / "log.fifo")
    monkeypatch.chdir(job)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock")
    expected_special = 3
    try:
        os.mknod(job / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        expected_special += 1
    except PermissionError:
        pass
    try:
        result = capture(job, store, path_filter=NO_FILTER)
    finally:
        sock.close()
    assert list(result.manifest) == ["ok"]
    assert result.skipped_special == expected_special
    assert result.warnings == ()


@pytest.mark.timeout(20)
def test_file_replaced_by_a_fifo_before_reading_is_skipped(job: Path, store: ContentStore) -> None:
    write_tree(job, {"a": b"a", "b": b"b"})

    def swap(rel: bytes) -> None:
        if rel == b"a" and (job / "a").is_file():
            (job / "a").unlink()
            os.mkfifo(job / "a")

    with CountingOpener(job, swap) as opener:
        result = capture(job, store, path_filter=NO_FILTER, opener=opener)
    assert list(result.manifest) == ["b"]
    assert result.warnings == ()
    assert stat.S_ISFIFO((job / "a").lstat().st_mode)


def test_non_utf8_names_round_trip(job: Path, tmp_path: Path, store: ContentStore) -> None:
    names: dict[str | bytes, bytes] = {
        b"caf\xe9.dat": b"latin-1 name",
        b"dir\xff\xfe/inner": b"in odd dir",
        "été": b"ok",
    }
    write_tree(job, names)
    os.symlink(b"caf\xe9.dat", os.path.join(os.fsencode(job), b"link\x80"))
    result = capture(job, store, path_filter=NO_FILTER)
    manifest = Manifest.from_bytes(result.manifest.to_bytes())
    assert sorted(manifest) == ["caf\\xe9.dat", "dir\\xff\\xfe/inner", "link\\x80", "été"]
    assert manifest["caf\\xe9.dat"].raw == b"caf\xe9.dat"
    assert manifest["été"].raw is None
    assert manifest["link\\x80"].raw_link == b"caf\xe9.dat"

    dest = tmp_path / "restored"
    restore(manifest.values(), store, dest)
    assert sorted(os.listdir(os.fsencode(dest))) == sorted(
        [b"caf\xe9.dat", b"dir\xff\xfe", b"link\x80", "été".encode()]
    )
    for rel, content in names.items():
        with open(os.path.join(os.fsencode(dest), os.fsencode(rel)), "rb") as f:
            assert f.read() == content
    assert os.readlink(os.path.join(os.fsencode(dest), b"link\x80")) == b"caf\xe9.dat"


def test_deep_tree_round_trip(job: Path, tmp_path: Path, store: ContentStore) -> None:
    rel = make_deep(job, 25, b"far down")
    result = capture(job, store, path_filter=NO_FILTER)
    [entry] = result.manifest.values()
    assert entry.raw_path == rel
    dest = tmp_path / "restored"
    restore(result.manifest.values(), store, dest)
    assert capture(dest, store, path_filter=NO_FILTER).manifest[entry.path].digest == entry.digest


def test_files_vanishing_between_scan_and_read_are_skipped(job: Path, store: ContentStore) -> None:
    write_tree(job, {"a": b"a", "b/c": b"c", "d": b"d"})

    def vanish(rel: bytes) -> None:
        if rel == b"a" and (job / "b").exists():
            (job / "b" / "c").unlink()
            (job / "b").rmdir()
            (job / "d").unlink()

    with CountingOpener(job, vanish) as opener:
        result = capture(job, store, path_filter=NO_FILTER, opener=opener)
    assert list(result.manifest) == ["a"]
    assert result.warnings == ()
    assert result.files_total == 1


def test_a_file_that_keeps_changing_is_flagged_unstable(job: Path, store: ContentStore) -> None:
    write_tree(job, {"steady": b"s", "log.run": b"step 0\n"})
    step = 0

    def append(rel: bytes) -> None:
        nonlocal step
        if rel == b"log.run":
            step += 1
            with open(job / "log.run", "ab") as f:
                f.write(b"step %d\n" % step)

    with CountingOpener(job, while_reading=append) as opener:
        result = capture(job, store, path_filter=NO_FILTER, opener=opener, max_tries=3)
    assert list(result.manifest) == ["steady"]
    assert result.unstable == ("log.run",)
    assert result.warnings == ("log.run: unstable: changed while being read (3 tries), left out",)
    assert 3 <= opener.opened.count(b"log.run") <= 6
    for digest, content in all_blobs(store).items():
        assert xxh(content) == digest, "no torn copy under any key"


def test_a_file_that_settles_is_captured_on_a_later_try(job: Path, store: ContentStore) -> None:
    write_tree(job, {"log.run": b"v0"})
    changes = iter([b"v1-longer", b"v2"])

    def rewrite(rel: bytes) -> None:
        if (content := next(changes, None)) is not None:
            (job / "log.run").write_bytes(content)

    with CountingOpener(job, while_reading=rewrite) as opener:
        result = capture(job, store, path_filter=NO_FILTER, opener=opener, max_tries=3)
    assert result.unstable == ()
    assert result.manifest["log.run"].digest == xxh(b"v2")
    assert result.manifest["log.run"].size == 2


@pytest.mark.timeout(60)
def test_file_appended_to_while_captured_is_never_torn(job: Path, store: ContentStore) -> None:
    path = job / "log.simpleFoam"
    path.write_bytes(b"x" * (1024 * 1024))
    stop = threading.Event()

    def appender() -> None:  # bursts of appends with pauses, like a solver's time steps
        with open(path, "ab") as f:
            n = 0
            while not stop.is_set():
                burst_end = time.monotonic() + 0.01
                while time.monotonic() < burst_end:
                    f.write(b"line %d\n" % n)
                    f.flush()
                    n += 1
                    time.sleep(0.0002)
                time.sleep(0.02)

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        results = []
        for _ in range(20):
            results.append(capture(job, store, path_filter=NO_FILTER, max_tries=2))
            time.sleep(0.007)
    finally:
        stop.set()
        thread.join()
    final = path.read_bytes()
    for result in results:
        if result.unstable:
            assert result.unstable == ("log.simpleFoam",)
            assert "log.simpleFoam" not in result.manifest
            continue
        entry = result.manifest["log.simpleFoam"]
        with store.open(entry.digest or "") as f:
            content = f.read()
        assert xxh(content) == entry.digest and len(content) == entry.size
        assert final.startswith(content), "the file as it was at some instant"
    for digest, content in all_blobs(store).items():
        assert xxh(content) == digest, "no torn copy under any key"


def test_unreadable_files_and_directories_become_warnings(shared_tmp: Path) -> None:
    root = shared_tmp / "job"
    write_tree(root, {"ok": b"ok", "locked-dir/x": b"x", "locked-file": b"no"})
    root.chmod(0o755)
    (root / "ok").chmod(0o644)
    for locked in ("locked-dir", "locked-file"):
        (root / locked).chmod(0o700 if os.geteuid() == 0 else 0)

    def run() -> tuple[list[str], tuple[str, ...]]:
        store = ContentStore(LocalBackend(shared_tmp / f"store-{os.getpid()}"), "u")
        result = capture(root, store, path_filter=NO_FILTER)
        return list(result.manifest), result.warnings

    paths, warnings = unprivileged(run)
    assert paths == ["ok"]
    assert warnings == (
        "locked-dir: not captured: Permission denied",
        "locked-file: not captured: Permission denied",
    )


def test_longest_names_round_trip(job: Path, tmp_path: Path, store: ContentStore) -> None:
    longest, folder = "n" * 255, "d" * 255  # NAME_MAX bytes, as a file and a directory
    wide = "é" * 127  # 254 bytes in 2-byte characters
    write_tree(job, {longest: b"long", f"{folder}/{wide}": b"wide"})
    result = capture(job, store, path_filter=NO_FILTER)
    assert sorted(result.manifest) == sorted([longest, f"{folder}/{wide}"])
    dest = tmp_path / "restored"
    restore(result.manifest.values(), store, dest)
    assert (dest / longest).read_bytes() == b"long"
    assert (dest / folder / wide).read_bytes() == b"wide"


def test_a_file_truncated_while_read_is_never_stored_torn(job: Path, store: ContentStore) -> None:
    write_tree(job, {"big.dat": b"0123456789" * 100_000, "other": b"o"})
    truncated = False

    def truncate(rel: bytes) -> None:
        nonlocal truncated
        if rel == b"big.dat" and not truncated:
            truncated = True
            with open(job / "big.dat", "r+b") as f:
                f.truncate(10)

    with CountingOpener(job, truncate) as opener:
        result = capture(job, store, path_filter=NO_FILTER, opener=opener, max_tries=3)
    assert truncated
    if "big.dat" in result.manifest:
        entry = result.manifest["big.dat"]
        with store.open(entry.digest or "") as f:
            assert f.read() == b"0123456789" and entry.size == 10
    else:
        assert result.unstable == ("big.dat",)
    for digest, content in all_blobs(store).items():
        assert xxh(content) == digest and len(content) != 1_000_000, "no torn copy"
