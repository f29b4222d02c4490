"""A snapshot's files as a tree, for the browser."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Beyond this many files under the shown folder, only its first level is drawn.
FULL_TREE_LIMIT = 2000


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
