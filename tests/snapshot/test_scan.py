"""The scanner and the confined file access under it."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest

from hpcsnap.snapshot.beneath import Beneath
from hpcsnap.snapshot.scan import Scanner

from .helpers import make_deep, unprivileged, write_tree


def scan_paths(root: Path, **kw: object) -> list[str]:
    return [f.path for f in Scanner(root, **kw)]  # type: ignore[arg-type]


def test_walk_order_and_kinds(job: Path, tmp_path: Path) -> None:
    write_tree(job, {"b/2": b"", "b/1": b"", "a": b"x", "c/d/e": b"yy"})
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"s")
    (job / "linkdir").symlink_to(tmp_path / "outside")
    (job / "dangling").symlink_to("nowhere")
    (job / "empty").mkdir()
    found = list(Scanner(job))
    assert [f.path for f in found] == ["a", "b/1", "b/2", "c/d/e", "dangling", "linkdir"]
    kinds = {f.path: stat.S_IFMT(f.stat.st_mode) for f in found}
    assert kinds["linkdir"] == stat.S_IFLNK, "a symlink to a directory is not descended"
    assert kinds["c/d/e"] == stat.S_IFREG
    assert found[3].raw == b"c/d/e"
    assert found[3].stat.st_size == 2


def test_accept_runs_on_files_only_and_filters(job: Path) -> None:
    write_tree(job, {"keep/x.log": b"", "keep/y.dat": b"", "drop/z.log": b""})
    asked: list[str] = []

    def accept(path: str) -> bool:
        asked.append(path)
        return path.endswith(".log")

    assert scan_paths(job, accept=accept) == ["drop/z.log", "keep/x.log"]
    assert asked == ["drop/z.log", "keep/x.log", "keep/y.dat"]


def test_entries_vanishing_during_the_scan_are_skipped(job: Path) -> None:
    write_tree(job, {"a": b"", "b/inner": b"", "c": b"", "d": b""})

    def accept(path: str) -> bool:
        if path == "a":  # listed already: the directory b and the file d vanish now
            shutil.rmtree(job / "b")
            (job / "d").unlink()
        return True

    errors: list[tuple[str, OSError]] = []
    assert scan_paths(job, accept=accept, on_error=lambda p, e: errors.append((p, e))) == ["a", "c"]
    assert errors == []


def test_special_files_are_counted_not_yielded(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(job / "fifo")
    monkeypatch.chdir(job)  # a socket path must be short
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock")
    try:
        write_tree(job, {"file": b"x"})
        scanner = Scanner(job, accept=lambda p: p == "file")
        assert [f.path for f in scanner] == ["file"]
        assert scanner.skipped_special == 2
    finally:
        sock.close()


def test_non_utf8_names(job: Path) -> None:
    write_tree(job, {b"d\xff/caf\xe9": b"1", b"ok": b"2"})
    found = list(Scanner(job))
    assert [(f.path, f.raw) for f in found] == [
        ("d\\xff/caf\\xe9", b"d\xff/caf\xe9"),
        ("ok", b"ok"),
    ]


def test_tree_deeper_than_path_max(job: Path) -> None:
    rel = make_deep(job, 25, b"deep")
    assert len(os.fsencode(job)) + len(rel) > os.pathconf("/", "PC_PATH_MAX")
    [found] = list(Scanner(job))
    assert found.raw == rel
    with Beneath(job) as tree, tree.open(rel) as f:
        assert f.read() == b"deep"


def make_locked_tree(base: Path) -> Path:
    root = base / "job"
    write_tree(root, {"open/a": b"a", "locked/b": b"b", "z": b"z"})
    for d in (root, root / "open"):
        d.chmod(0o755)
    (root / "locked").chmod(0o700)
    return root


def test_permission_errors_go_to_on_error(shared_tmp: Path) -> None:
    root = make_locked_tree(shared_tmp)

    def scan() -> tuple[list[str], list[tuple[str, int | None]]]:
        errors: list[tuple[str, int | None]] = []
        paths = scan_paths(root, on_error=lambda p, e: errors.append((p, e.errno)))
        return paths, errors

    if os.geteuid() != 0:
        (root / "locked").chmod(0o000)
    assert unprivileged(scan) == (["open/a", "z"], [("locked", errno.EACCES)])


def test_without_on_error_a_permission_error_propagates(shared_tmp: Path) -> None:
    root = make_locked_tree(shared_tmp)
    if os.geteuid() != 0:
        (root / "locked").chmod(0o000)

    def scan() -> str:
        try:
            scan_paths(root)
        except PermissionError as exc:
            return f"raised {exc.errno}"
        return "no error"

    assert unprivileged(scan) == f"raised {errno.EACCES}"


@pytest.mark.timeout(10)
def test_beneath_never_opens_a_fifo(job: Path) -> None:
    os.mkfifo(job / "fifo")
    start = time.monotonic()
    with Beneath(job) as tree, pytest.raises(FileNotFoundError, match="no longer a regular file"):
        tree.open(b"fifo")
    assert time.monotonic() - start < 2


def test_beneath_never_follows_symlinks(job: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_tree(outside, {"secret": b"s"})
    (job / "dirlink").symlink_to(outside, target_is_directory=True)
    (job / "filelink").symlink_to(outside / "secret")
    write_tree(job, {"real/f": b"ok"})
    with Beneath(job) as tree:
        with pytest.raises(FileNotFoundError):
            tree.open(b"dirlink/secret")
        with pytest.raises(FileNotFoundError):
            tree.open(b"filelink")
        with pytest.raises(FileNotFoundError):
            tree.lstat(b"dirlink/secret")
        assert tree.readlink(b"filelink") == os.fsencode(outside / "secret")
        with pytest.raises(FileNotFoundError, match="no longer a symlink"):
            tree.readlink(b"real/f")
        with tree.open(b"real/f") as f:
            assert f.read() == b"ok"
        for bad in (b"/etc/passwd", b"../x", b"real/../real/f", b"real//f", b""):
            with pytest.raises(ValueError, match="not a plain relative path"):
                tree.open(bad)


def test_beneath_sees_a_directory_swapped_for_a_symlink(job: Path, tmp_path: Path) -> None:
    write_tree(job, {"d/f": b"inside", "d/g": b"inside too"})
    write_tree(tmp_path / "outside", {"f": b"secret"})
    with Beneath(job) as tree:
        with tree.open(b"d/f") as f:
            assert f.read() == b"inside"
        shutil.rmtree(job / "d")
        (job / "d").symlink_to(tmp_path / "outside")
        # the cached descriptor still names the old (deleted) directory, never the link
        with pytest.raises(FileNotFoundError):
            tree.open(b"d/f")
        with pytest.raises(FileNotFoundError):
            tree.open(b"d/x/f")


def test_beneath_keeps_a_bounded_set_of_directories_and_never_follows_a_swap(
    job: Path, tmp_path: Path
) -> None:
    """Files read in an order that jumps between many directories (as a capture's inode
    order does) are opened through kept directory descriptors, at most KEPT_DIRS of them; a
    directory swapped for a symlink once its descriptor was let go is never followed."""
    from hpcsnap.snapshot.beneath import KEPT_DIRS

    dirs = KEPT_DIRS + 20
    write_tree(job, {f"d{i}/s/f": str(i).encode() for i in range(dirs)})
    (tmp_path / "outside" / "s").mkdir(parents=True)
    (tmp_path / "outside" / "s" / "f").write_bytes(b"secret")
    fds = len(os.listdir("/proc/self/fd"))
    with Beneath(job) as tree:
        for rounds in range(2):
            for i in [*range(0, dirs, 2), *range(1, dirs, 2)]:
                rel = f"d{i}/s/f".encode()
                assert tree.lstat(rel).st_ino == os.lstat(job / f"d{i}/s/f").st_ino
                with tree.open(rel) as f:
                    assert f.read() == str(i).encode()
            assert len(os.listdir("/proc/self/fd")) <= fds + 1 + KEPT_DIRS
        (job / "d0").rename(job / "moved")  # d0/s was let go long ago (LRU)
        (job / "d0").symlink_to(tmp_path / "outside")
        with pytest.raises(FileNotFoundError):
            tree.open(b"d0/s/f")
        with pytest.raises(ValueError):
            tree.lstat(b"d1/../d2/s/f")
    assert len(os.listdir("/proc/self/fd")) == fds


def test_beneath_finds_a_directory_recreated_after_it_was_kept(job: Path) -> None:
    """A job that deletes and recreates a directory while a capture runs: its files are found
    in the new directory, not reported gone because an old descriptor was kept."""
    write_tree(job, {"out/a/f": b"old", "out/g": b"g"})
    with Beneath(job) as tree:
        assert tree.lstat(b"out/a/f").st_size == 3
        with tree.open(b"out/g") as f:
            assert f.read() == b"g"
        (job / "out").rename(job / "gone")
        write_tree(job, {"out/a/f": b"newer", "out/g": b"g2"})
        shutil.rmtree(job / "gone")
        assert tree.lstat(b"out/a/f").st_size == 5
        with tree.open(b"out/a/f") as f:
            assert f.read() == b"newer"
        with tree.open(b"out/g") as f:
            assert f.read() == b"g2"
        with pytest.raises(FileNotFoundError):
            tree.lstat(b"out/a/nothing")
