"""Buckets against a real server: streamed, verified transfers; listing; deletion."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

import hpcsnap
from tests.support import wait_for


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_create_retrieve_list_delete(conn: hpcsnap.Connection) -> None:
    bucket = conn.create_bucket("crud-bucket")
    assert conn.create_bucket("crud-bucket") == bucket  # idempotent, as S3's us-east-1
    assert conn.retrieve_bucket("crud-bucket").name == "crud-bucket"
    assert "crud-bucket" in [b.name for b in conn.buckets()]
    bucket.add_string("hello", "greeting.txt")
    assert [f.key for f in bucket.list_files()] == ["greeting.txt"]
    bucket.delete_file("greeting.txt")
    # (the server commits deletions just after answering: wait_for allows for that)
    wait_for(bucket.list_files, lambda files: files == [], 5, "the key to be deleted")
    with pytest.raises(hpcsnap.MissingFileError, match=r"greeting\.txt"):
        bucket.get_file("greeting.txt")
    bucket.delete()
    wait_for(bucket.exists, lambda exists: not exists, 5, "the bucket to be deleted")
    with pytest.raises(hpcsnap.MissingBucketError, match="crud-bucket"):
        conn.retrieve_bucket("crud-bucket")
    with pytest.raises(hpcsnap.MissingBucketError):
        bucket.list_files()
    with pytest.raises(hpcsnap.BadRequestError, match="invalid bucket name"):
        conn.create_bucket("No_Such")


def test_large_file_is_streamed_both_ways(conn: hpcsnap.Connection, tmp_path: Path) -> None:
    size = 12 << 20
    src = tmp_path / "big.bin"
    with src.open("wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    bucket = conn.create_bucket("big-files")
    seen: list[tuple[int, int | None, str]] = []
    tracemalloc.start()
    try:
        info = bucket.add_file(src, "data/big.bin", progress=lambda *a: seen.append(a))
        _, peak_up = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out = bucket.get_file("data/big.bin", tmp_path / "copy.bin")
        _, peak_down = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == size and info.md5
    assert out.read_bytes() == src.read_bytes()
    # never the whole file in memory: a few 1 MiB chunks at most
    assert peak_up < size / 3 and peak_down < size / 3, (peak_up, peak_down)
    done = [c for c, _, _ in seen]
    assert done == sorted(done) and done[-1] == size and seen[-1][1] == size


def test_directories_round_trip(conn: hpcsnap.Connection, tmp_path: Path) -> None:
    src = tmp_path / "case"
    (src / "0.1").mkdir(parents=True)
    (src / "with space é").mkdir()
    (src / "0.1" / "T").write_text("field\n")
    (src / "with space é" / "notes #1.txt").write_text("odd name\n")
    (src / "copy-a").write_text("same content\n")
    (src / "copy-b").write_text("same content\n")
    (src / "empty").write_bytes(b"")
    bucket = conn.create_bucket("dirs")
    uploaded = bucket.add_directory(src, "inputs/")
    assert sorted(f.key for f in uploaded) == sorted(f"inputs/{k}" for k in tree(src))
    assert [f.key for f in bucket.list_files("inputs/0.1/")] == ["inputs/0.1/T"]

    written = bucket.get_all_files(tmp_path / "all")
    assert len(written) == len(tree(src))
    assert tree(tmp_path / "all" / "inputs") == tree(src)
    # a prefix view downloads relative to its prefix
    view = bucket.with_prefix("inputs/")
    view.get_all_files(tmp_path / "view")
    assert tree(tmp_path / "view") == tree(src)
    # get_file into an existing directory keeps the key's name
    path = bucket.get_file("inputs/with space é/notes #1.txt", tmp_path)
    assert path == tmp_path / "notes #1.txt" and path.read_text() == "odd name\n"


def test_missing_local_file_is_a_transfer_error(conn: hpcsnap.Connection, tmp_path: Path) -> None:
    with pytest.raises(hpcsnap.TransferError, match="cannot read"):
        conn.create_bucket("errs").add_file(tmp_path / "nope")
    with pytest.raises(hpcsnap.TransferError, match="not a directory"):
        conn.create_bucket("errs").add_directory(tmp_path / "nope")
