"""Verification: re-read stored content and re-hash it against what a manifest or index says.

Each blob is streamed (1 MiB at a time) through xxh3-128 once, however many files share it. A
file whose blob is absent is *missing*; one whose bytes hash or size differ is *corrupted*.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import xxhash

from hpcsnap.blobstore import BlobNotFound, ContentStore
from hpcsnap.blobstore.content import CHUNK


@dataclass
class Report:
    files: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupted

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": self.files,
            "bytes": self.bytes,
            "missing": self.missing,
            "corrupted": self.corrupted,
        }


def _check(store: ContentStore, digest: str, size: int) -> tuple[str, int]:
    """``("ok" | "missing" | "corrupted", bytes read)``."""
    hasher = xxhash.xxh3_128()
    read = 0
    try:
        src = store.open(digest)
    except BlobNotFound:
        return "missing", 0
    with src:
        while chunk := src.read(CHUNK):
            hasher.update(chunk)
            read += len(chunk)
    return ("ok" if hasher.hexdigest() == digest and read == size else "corrupted"), read


def verify(store: ContentStore, files: Iterable[tuple[str, str, int]]) -> Report:
    """Verify ``(path, digest, size)`` triples; each distinct blob is read once."""
    report = Report()
    seen: dict[tuple[str, int], str] = {}
    for path, digest, size in files:
        verdict = seen.get((digest, size))
        if verdict is None:
            verdict, read = _check(store, digest, size)
            seen[(digest, size)] = verdict
            report.bytes += read
        report.files += 1
        if verdict == "missing":
            report.missing.append(path)
        elif verdict == "corrupted":
            report.corrupted.append(path)
    return report
