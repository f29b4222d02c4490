"""A snapshot's files as a tree (for the browser) and the differences between two snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hpcsnap.snapshot.manifest import Manifest
from hpcsnap.snapshot.manifest import diff as manifest_diff

#: Beyond this many files under the shown folder, only its first level is drawn.
FULL_TREE_LIMIT = 2000
#: Paths listed per kind of change on the comparison page.
DIFF_LIMIT = 2000


@dataclass
class Node:
    """A folder (``children``) or a file of a snapshot; ``path`` is relative to the snapshot
    (folders end with ``/``); a folder's size and count cover everything below it."""

    name: str
    path: str
    is_dir: bool
    size: int = 0
    files: int = 0
    mtime_ns: int = 0
    children: dict[str, Node] = field(default_factory=dict)

    def sorted(self) -> list[Node]:
        """Folders first, then files, each by name."""
        return sorted(self.children.values(), key=lambda n: (not n.is_dir, n.name))


def build_tree(entries: Iterable[tuple[str, int, int]]) -> Node:
    """The tree of ``(relative path, size, mtime_ns)`` entries."""
    root = Node("", "", True)
    for path, size, mtime_ns in entries:
        parts = path.split("/")
        node = root
        node.size += size
        node.files += 1
        for i, part in enumerate(parts[:-1]):
            child = node.children.get(part + "/")
            if child is None:
                child = Node(part, "/".join(parts[: i + 1]) + "/", True)
                node.children[part + "/"] = child
            child.size += size
            child.files += 1
            child.mtime_ns = max(child.mtime_ns, mtime_ns)
            node = child
        node.children[parts[-1]] = Node(parts[-1], path, False, size, 1, mtime_ns)
    return root


def find(root: Node, path: str) -> Node | None:
    """The folder at ``path`` (``""`` or ``a/b/``), or None."""
    node = root
    for part in [p for p in path.split("/") if p]:
        child = node.children.get(part + "/")
        if child is None:
            return None
        node = child
    return node


@dataclass(frozen=True)
class Change:
    path: str
    old_size: int | None
    new_size: int | None


@dataclass(frozen=True)
class Comparison:
    added: list[Change]
    removed: list[Change]
    changed: list[Change]
    unchanged: int
    truncated: bool


def _limit(changes: list[Change]) -> tuple[list[Change], bool]:
    return changes[:DIFF_LIMIT], len(changes) > DIFF_LIMIT


def compare_manifests(old: Manifest, new: Manifest) -> Comparison:
    """What changed between two manifests (content, kind or symlink target; not metadata)."""
    d = manifest_diff(old, new)
    added, t1 = _limit([Change(p, None, new[p].size) for p in d.added])
    removed, t2 = _limit([Change(p, old[p].size, None) for p in d.removed])
    changed, t3 = _limit([Change(p, old[p].size, new[p].size) for p in d.modified])
    unchanged = len(new) - len(d.added) - len(d.modified)
    return Comparison(added, removed, changed, unchanged, t1 or t2 or t3)


def compare_keys(
    old: Mapping[str, tuple[str, int]], new: Mapping[str, tuple[str, int]]
) -> Comparison:
    """The same from two ``path → (digest, size)`` listings (snapshots without a manifest)."""
    added, t1 = _limit([Change(p, None, new[p][1]) for p in new if p not in old])
    removed, t2 = _limit([Change(p, old[p][1], None) for p in old if p not in new])
    changed_all = [
        Change(p, old[p][1], v[1]) for p, v in new.items() if p in old and old[p][0] != v[0]
    ]
    changed, t3 = _limit(changed_all)
    unchanged = sum(1 for p, v in new.items() if p in old and old[p][0] == v[0])
    return Comparison(added, removed, changed, unchanged, t1 or t2 or t3)
