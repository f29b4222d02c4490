"""What the local backend adds to the common contract: layout, permissions, no leftovers."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from hpcsnap.blobstore import LocalBackend, open_backend


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
