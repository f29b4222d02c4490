"""restore(): files and symlinks back under a directory, never outside it."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from hpcsnap.blobstore import BlobError, ContentStore
from hpcsnap.snapshot import Entry, PathFilter, UnsafePath, capture, restore

from .helpers import write_tree, xxh


def stored_entry(store: ContentStore, path: str, content: bytes, **kw: object) -> Entry:
    digest = store.put_stream(io.BytesIO(content)).digest
    fields: dict[str, object] = {
        "path": path,
        "kind": "file",
        "size": len(content),
        "mtime_ns": 1_600_000_000_123_456_789,
        "ctime_ns": 0,
        "ino": 0,
        "mode": 0o100644,
        "digest": digest,
    }
    fields.update(kw)
    return Entry(**fields)  # type: ignore[arg-type]


def test_restore_a_captured_tree(job: Path, tmp_path: Path, store: ContentStore) -> None:
    write_tree(job, {"a/b/c.dat": b"deep", "run.sh": b"#!/bin/sh\n", "empty": b""})
    (job / "run.sh").chmod(0o755)
    (job / "link").symlink_to("a/b/c.dat")
    os.utime(job / "link", ns=(1, 1_500_000_000_000_000_000), follow_symlinks=False)
    manifest = capture(job, store, path_filter=PathFilter()).manifest
    dest = tmp_path / "restart" / "job"
    restore(manifest.values(), store, dest)
    assert (dest / "a/b/c.dat").read_bytes() == b"deep"
    assert (dest / "empty").read_bytes() == b""
    assert os.readlink(dest / "link") == "a/b/c.dat"
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    for path, entry in manifest.items():
        assert (dest / path).lstat().st_mtime_ns == entry.mtime_ns
    again = capture(dest, store, path_filter=PathFilter()).manifest
    assert {p: (e.digest, e.target) for p, e in again.items()} == {
        p: (e.digest, e.target) for p, e in manifest.items()
    }


def test_setuid_bits_are_not_restored(tmp_path: Path, store: ContentStore) -> None:
    restore([stored_entry(store, "tool", b"x", mode=0o104755)], store, tmp_path / "d")
    assert stat.S_IMODE((tmp_path / "d/tool").stat().st_mode) == 0o755


def test_existing_files_and_symlinks_are_replaced_not_written_through(
    tmp_path: Path, store: ContentStore
) -> None:
    dest = tmp_path / "dest"
    victim = tmp_path / "victim"
    victim.write_bytes(b"must stay")
    write_tree(dest, {"old": b"previous content that is longer"})
    (dest / "f").symlink_to(victim)
    restore([stored_entry(store, "f", b"new"), stored_entry(store, "old", b"short")], store, dest)
    assert victim.read_bytes() == b"must stay"
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_bytes() == b"new"
    assert (dest / "old").read_bytes() == b"short"


@pytest.mark.parametrize(
    "path", ["/etc/evil", "../escape", "a/../../escape", "a/./b", "a//b", "", ".", "a/"]
)
def test_unsafe_paths_are_refused(tmp_path: Path, store: ContentStore, path: str) -> None:
    with pytest.raises(UnsafePath, match="not a plain relative path"):
        restore([stored_entry(store, path, b"x")], store, tmp_path / "d")
    assert not (tmp_path / "escape").exists()


def test_raw_path_is_checked_too(tmp_path: Path, store: ContentStore) -> None:
    entry = stored_entry(store, "harmless", b"x", raw=b"../escape")
    with pytest.raises(UnsafePath):
        restore([entry], store, tmp_path / "d")
    assert not (tmp_path / "escape").exists()


def test_a_symlink_inside_dest_is_never_passed_through(tmp_path: Path, store: ContentStore) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.mkdir()
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match=r"'sub'.*symlink"):
        restore([stored_entry(store, "sub/planted", b"x")], store, dest)
    assert list(outside.iterdir()) == []
    # the same through a symlink restored earlier in the same call
    entries = [
        Entry("link", "symlink", 7, 0, 0, 0, 0o120777, target=str(outside)),
        stored_entry(store, "link/planted", b"x"),
    ]
    with pytest.raises(UnsafePath):
        restore(entries, store, tmp_path / "dest2")
    assert list(outside.iterdir()) == []


def test_corrupt_blob_is_detected_and_leaves_nothing(tmp_path: Path, store: ContentStore) -> None:
    entry = stored_entry(store, "data", b"the real content")
    assert entry.digest is not None
    store.backend.put(store.key(entry.digest), io.BytesIO(b"bit rot!"))
    with pytest.raises(BlobError, match="'data' is corrupt"):
        restore([entry], store, tmp_path / "d")
    assert not (tmp_path / "d/data").exists()
    assert entry.digest == xxh(b"the real content")
