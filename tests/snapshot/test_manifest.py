"""Manifest entries and serialisation (diffs: ``test_diff.py``)."""

from __future__ import annotations

import gzip
import json

import pytest

from hpcsnap.snapshot import Entry, Manifest, ManifestError
from hpcsnap.snapshot.manifest import decode_name


def file_entry(path: str, digest: str = "0" * 32, size: int = 10, **kw: object) -> Entry:
    fields: dict[str, object] = {
        "path": path,
        "kind": "file",
        "size": size,
        "mtime_ns": 1_700_000_000_123_456_789,
        "ctime_ns": 1_700_000_000_987_654_321,
        "ino": 42,
        "mode": 0o100644,
        "digest": digest,
    }
    fields.update(kw)
    return Entry(**fields)  # type: ignore[arg-type]


def link_entry(path: str, target: str, **kw: object) -> Entry:
    return file_entry(path, digest=None, size=len(target), kind="symlink", target=target, **kw)  # type: ignore[arg-type]


def test_decode_name() -> None:
    assert decode_name("été/U".encode()) == ("été/U", None)
    assert decode_name(b"caf\xe9") == ("caf\\xe9", b"caf\xe9")


def test_entry_is_frozen_and_slotted() -> None:
    e = file_entry("a")
    with pytest.raises(AttributeError, match="immutable"):
        e.size = 3  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del e.digest
    assert not hasattr(e, "__dict__")
    assert e.raw_path == b"a"
    with pytest.raises(ValueError, match="not a symlink"):
        _ = e.raw_link


def test_round_trip_keeps_everything_in_order() -> None:
    entries = [
        file_entry("z/last-name-first", digest="a" * 32),
        file_entry("caf\\xe9.dat", raw=b"caf\xe9.dat", size=0),
        file_entry("huge", size=5 * 2**40, ino=2**63 + 5),
        link_entry("link", "../outside/\\xff", raw_target=b"../outside/\xff"),
        link_entry("ünïcode", "été"),
    ]
    manifest = Manifest(entries)
    data = manifest.to_bytes()
    again = Manifest.from_bytes(data)
    assert list(again.values()) == entries
    assert list(again) == [e.path for e in entries]
    assert again["caf\\xe9.dat"].raw_path == b"caf\xe9.dat"
    assert again["link"].raw_link == b"../outside/\xff"
    assert again["ünïcode"].raw_link == "été".encode()
    assert data == manifest.to_bytes(), "serialisation is deterministic"


def test_format_is_gzipped_json_header_then_rows() -> None:
    lines = gzip.decompress(Manifest([file_entry("a")]).to_bytes()).decode().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "hpcsnap-manifest" and header["version"] == 2
    rows = json.loads(lines[1])
    assert dict(zip(header["row"], rows[0], strict=True))["path"] == "a"
    assert len(lines) == 2


def test_total_size_counts_file_content_only() -> None:
    m = Manifest([file_entry("a", size=10), file_entry("b", size=5), link_entry("l", "a")])
    assert m.total_size == 15
    assert len(m) == 3
    assert "l" in m and "x" not in m


def test_empty_manifest_round_trip() -> None:
    assert len(Manifest.from_bytes(Manifest().to_bytes())) == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not gzip", "not a readable manifest"),
        (Manifest([file_entry("a")]).to_bytes()[:-10], "not a readable manifest"),
        (gzip.compress(b'{"format": "other", "version": 1}\n'), "bad header"),
        (gzip.compress(b'{"format": "hpcsnap-manifest", "version": 99}\n'), "version 99"),
        (
            gzip.compress(b'{"format": "hpcsnap-manifest", "version": 2}\n{"path": "a"}\n'),
            "corrupt",
        ),
        (
            gzip.compress(b'{"format": "hpcsnap-manifest", "version": 2}\n[["a", "file"]]\n'),
            "corrupt",
        ),
        (
            gzip.compress(
                b'{"format": "hpcsnap-manifest", "version": 2}\n'
                b'[["a", "fifo", 0, 0, 0, 0, 0, null, null, null, null]]\n'
            ),
            "unknown kind",
        ),
    ],
)
def test_unreadable_manifests(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Manifest.from_bytes(data)


def test_entry_metadata_are_packed_and_given_back_exactly() -> None:
    e = file_entry("a", ino=2**64 - 1)
    assert isinstance(e.stamp, bytes)
    assert (e.mtime_ns, e.ctime_ns, e.size, e.ino, e.mode) == (
        1_700_000_000_123_456_789,
        1_700_000_000_987_654_321,
        10,
        2**64 - 1,
        0o100644,
    )
    assert e == file_entry("a", ino=2**64 - 1) and hash(e) == hash(file_entry("a", ino=2**64 - 1))
    assert e != file_entry("a", ino=2**64 - 2)
    assert e.replace(mode=0o100600) == file_entry("a", ino=2**64 - 1, mode=0o100600)
    assert "mtime_ns=1700000000123456789" in repr(e)
    # what does not pack (a time past 2262, a negative inode, a kind the mode contradicts) is
    # kept as it is, and its stamp equals no packed one
    for odd in (
        file_entry("b", mtime_ns=2**63),
        file_entry("b", ino=-1),
        file_entry("b", kind="symlink"),
    ):
        assert isinstance(odd.stamp, tuple)
        assert Manifest.from_bytes(Manifest([odd]).to_bytes())["b"] == odd
    assert file_entry("b", mtime_ns=2**63).mtime_ns == 2**63
