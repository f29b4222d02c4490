"""Helpers for the snapshot engine tests: build trees, read blobs, count opened files."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import xxhash

from hpcsnap.blobstore import ContentStore
from hpcsnap.snapshot.beneath import Beneath

T = TypeVar("T")


def write_tree(
    root: Path, files: Mapping[str, bytes] | Mapping[bytes, bytes] | Mapping[str | bytes, bytes]
) -> None:
    """Create ``files`` (relative path -> content) under ``root``."""
    for rel, content in files.items():
        path = os.path.join(os.fsencode(root), os.fsencode(rel))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)


def xxh(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def blob(store: ContentStore, digest: str) -> bytes:
    with store.open(digest) as f:
        return f.read()


def all_blobs(store: ContentStore) -> dict[str, bytes]:
    return {d: blob(store, d) for d in store.digests()}


class CountingOpener:
    """The capture's ``opener`` seam: the default safe opener, recording each path opened.
    ``before_open(rel)`` runs first, so a test can change the tree at that very moment;
    ``while_reading(rel)`` runs at the first read of the opened file, before it is done."""

    def __init__(
        self,
        root: Path,
        before_open: Callable[[bytes], None] | None = None,
        *,
        while_reading: Callable[[bytes], None] | None = None,
    ) -> None:
        self.tree = Beneath(root)
        self.opened: list[bytes] = []
        self.before_open = before_open
        self.while_reading = while_reading

    def __call__(self, rel: bytes) -> BinaryIO:
        self.opened.append(rel)
        if self.before_open is not None:
            self.before_open(rel)
        src = self.tree.open(rel)
        if self.while_reading is None:
            return src
        return cast(BinaryIO, _HookedReader(src, lambda: self.while_reading(rel)))

    def close(self) -> None:
        self.tree.close()

    def __enter__(self) -> CountingOpener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HookedReader(io.RawIOBase):
    """``src``, calling ``hook`` once, just before its first read."""

    def __init__(self, src: BinaryIO, hook: Callable[[], object]) -> None:
        super().__init__()
        self.src, self.hook = src, hook

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.src.fileno()

    def readinto(self, buffer: Any) -> int:
        hook, self.hook = self.hook, lambda: None
        hook()
        return cast(int, self.src.readinto(buffer))  # type: ignore[attr-defined]

    def close(self) -> None:
        self.src.close()
        super().close()


def make_deep(root: Path, depth: int, content: bytes) -> bytes:
    """A file ``depth`` directories of 200-byte names below ``root``: its relative path is
    longer than PATH_MAX, so only descriptor-relative calls can reach it."""
    name = b"d" * 200
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open(b"leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, content)
        os.close(leaf)
    finally:
        os.close(fd)
    return b"/".join([name] * depth + [b"leaf"])


def unprivileged(fn: Callable[[], T]) -> T:
    """Run ``fn`` where permission checks apply: directly when not root, else in a forked
    child that drops to ``nobody`` (the result comes back pickled)."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as exc:
            payload = pickle.dumps(("error", repr(exc)))
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    if status != "ok":
        raise AssertionError(f"unprivileged child failed: {value}")
    return value  # type: ignore[no-any-return]
