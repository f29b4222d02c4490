"""The manifest of a snapshot: every captured path with its metadata and content hash.

Serialised as gzip'd JSON lines: one header line (format name and version), then one entry per
line. A path is text: a name that is not valid UTF-8 is shown with ``\\xNN`` escapes
(``errors="backslashreplace"``) and its exact bytes are kept in ``raw`` (base64 on disk), so
restore recreates the very same name.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

FORMAT = "hpcsnap-manifest"
VERSION = 1

Kind = Literal["file", "symlink"]


class ManifestError(ValueError):
    """Bytes that are not a manifest this version can read."""


def decode_name(raw: bytes) -> tuple[str, bytes | None]:
    """The text form of a path and, when that is not its exact UTF-8 encoding, its bytes."""
    try:
        return raw.decode(), None
    except UnicodeDecodeError:
        return raw.decode(errors="backslashreplace"), raw


@dataclass(frozen=True, slots=True)
class Entry:
    """One captured file or symlink (a symlink is recorded, never followed)."""

    path: str
    kind: Kind
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    mode: int
    digest: str | None = None
    target: str | None = None
    raw: bytes | None = None
    raw_target: bytes | None = None

    @property
    def raw_path(self) -> bytes:
        """The exact bytes of the path."""
        return self.path.encode() if self.raw is None else self.raw

    @property
    def raw_link(self) -> bytes:
        """The exact bytes of a symlink's target."""
        if self.target is None:
            raise ValueError(f"{self.path!r} is not a symlink")
        return self.target.encode() if self.raw_target is None else self.raw_target

    def _to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "ctime_ns": self.ctime_ns,
            "ino": self.ino,
            "mode": self.mode,
        }
        for name in ("digest", "target"):
            if (value := getattr(self, name)) is not None:
                out[name] = value
        for name in ("raw", "raw_target"):
            if (value := getattr(self, name)) is not None:
                out[name] = base64.b64encode(value).decode()
        return out

    @classmethod
    def _from_json(cls, obj: dict[str, Any]) -> Entry:
        for name in ("raw", "raw_target"):
            if name in obj:
                obj[name] = base64.b64decode(obj[name], validate=True)
        entry = cls(**obj)
        if entry.kind not in ("file", "symlink"):
            raise ValueError(f"unknown kind {entry.kind!r}")
        return entry


class Manifest(Mapping[str, Entry]):
    """Path -> :class:`Entry`, in insertion (scan) order."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries = {entry.path: entry for entry in entries}

    def __getitem__(self, path: str) -> Entry:
        return self._entries[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Manifest of {len(self)} entries, {self.total_size} bytes>"

    @property
    def total_size(self) -> int:
        """Bytes of file content (symlinks excluded)."""
        return sum(e.size for e in self._entries.values() if e.kind == "file")

    def to_bytes(self) -> bytes:
        lines = [json.dumps({"format": FORMAT, "version": VERSION})]
        lines.extend(json.dumps(e._to_json(), ensure_ascii=False) for e in self._entries.values())
        lines.append("")
        return gzip.compress("\n".join(lines).encode(), compresslevel=6, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse :meth:`to_bytes` output; :class:`ManifestError` if corrupt or unsupported."""
        try:
            lines = gzip.decompress(data).decode().splitlines()
            header = json.loads(lines[0])
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, IndexError) as exc:
            raise ManifestError(f"not a readable manifest: {exc}") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ManifestError("not an hpcsnap manifest (bad header line)")
        if header.get("version") != VERSION:
            raise ManifestError(
                f"manifest version {header.get('version')!r} is not supported (this is {VERSION})"
            )
        try:
            return cls(Entry._from_json(json.loads(line)) for line in lines[1:])
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"corrupt manifest entry: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Diff:
    """Paths added, removed and modified (content, kind or symlink target) between two manifests."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    modified: tuple[str, ...]


def diff(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> Diff:
    """Compare two manifests by path; metadata alone (mtime, mode) is not a modification."""
    added = tuple(p for p in new if p not in old)
    removed = tuple(p for p in old if p not in new)
    modified = tuple(
        p
        for p, e in new.items()
        if (o := old.get(p)) is not None
        and (o.kind, o.digest, o.raw_target, o.target) != (e.kind, e.digest, e.raw_target, e.target)
    )
    return Diff(added, removed, modified)
