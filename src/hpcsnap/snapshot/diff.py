"""What changed between two trees of captured paths (two manifests, or a manifest and a listing
of bucket keys such as a task's results).

A path is *added*, *removed*, or *modified* when its content (digest), its kind (file or
symlink) or its symlink target changed. Metadata alone is not a modification: an mtime-only
change is not reported at all, and a permission change with the same content is listed apart in
``mode_changed`` (only when both sides know the mode: a bucket listing does not). Byte totals
count regular files only (a symlink holds no content).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["file", "symlink"]

__all__ = ["Change", "Diff", "Item", "Record", "diff"]


class Record(Protocol):
    """One path of a tree as a comparison (or an archive) sees it. A manifest's
    :class:`~hpcsnap.snapshot.manifest.Entry` is one; so is :class:`Item`."""

    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def target(self) -> str | None: ...
    @property
    def mode(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Item:
    """A :class:`Record` made from something other than a manifest (a bucket key: a regular
    file whose mode is unknown)."""

    path: str
    digest: str | None
    size: int
    mtime_ns: int = 0
    kind: Kind = "file"
    target: str | None = None
    mode: int | None = None


def content_bytes(record: Record | None) -> int:
    """The bytes of content a record holds (0 for a symlink or nothing)."""
    return record.size if record is not None and record.kind == "file" else 0


@dataclass(frozen=True, slots=True)
class Change:
    """One path that differs: its record on the old side and on the new side (None where the
    path does not exist)."""

    path: str
    old: Record | None
    new: Record | None

    @property
    def old_size(self) -> int | None:
        return None if self.old is None else self.old.size

    @property
    def new_size(self) -> int | None:
        return None if self.new is None else self.new.size


def _same_content(old: Record, new: Record) -> bool:
    return (old.kind, old.digest, old.target) == (new.kind, new.digest, new.target)


def _mode_changed(old: Record, new: Record) -> bool:
    if old.kind != "file" or old.mode is None or new.mode is None:
        return False
    return (old.mode & 0o7777) != (new.mode & 0o7777)


@dataclass(frozen=True)
class Diff:
    """Paths added, removed and modified from an old tree to a new one, sorted by path, with
    the number of paths whose content is the same on both sides (``mode_changed`` included)."""

    added: tuple[Change, ...] = ()
    removed: tuple[Change, ...] = ()
    modified: tuple[Change, ...] = ()
    mode_changed: tuple[Change, ...] = ()
    unchanged: int = 0

    @property
    def bytes_added(self) -> int:
        """Content of the added files."""
        return sum(content_bytes(c.new) for c in self.added)

    @property
    def bytes_removed(self) -> int:
        """Content of the removed files."""
        return sum(content_bytes(c.old) for c in self.removed)

    @property
    def bytes_modified_old(self) -> int:
        """Content of the modified paths before..."""
        return sum(content_bytes(c.old) for c in self.modified)

    @property
    def bytes_modified_new(self) -> int:
        """...and after."""
        return sum(content_bytes(c.new) for c in self.modified)

    @property
    def is_empty(self) -> bool:
        """True when no content changed (mode changes aside)."""
        return not (self.added or self.removed or self.modified)


def diff(old: Mapping[str, Record], new: Mapping[str, Record]) -> Diff:
    """Compare two trees (path -> record) path by path."""
    added = [Change(p, None, n) for p, n in new.items() if p not in old]
    removed = [Change(p, o, None) for p, o in old.items() if p not in new]
    modified: list[Change] = []
    modes: list[Change] = []
    unchanged = 0
    for p, n in new.items():
        o = old.get(p)
        if o is None:
            continue
        if not _same_content(o, n):
            modified.append(Change(p, o, n))
            continue
        unchanged += 1
        if _mode_changed(o, n):
            modes.append(Change(p, o, n))

    def by_path(changes: list[Change]) -> tuple[Change, ...]:
        return tuple(sorted(changes, key=lambda c: c.path))

    return Diff(by_path(added), by_path(removed), by_path(modified), by_path(modes), unchanged)
