"""Re-open a backend from its :meth:`~hpcsnap.blobstore.base.Backend.describe` description."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from hpcsnap.blobstore.base import Backend
from hpcsnap.blobstore.local import LocalBackend
from hpcsnap.blobstore.retry import RetryingBackend


def _open_local(desc: Mapping[str, str]) -> Backend:
    root = desc.get("root")
    if not root:
        raise ValueError("a 'local' blob store description needs a 'root' directory")
    return LocalBackend(Path(root))


def _open_s3(desc: Mapping[str, str]) -> Backend:
    from hpcsnap.blobstore.s3 import S3Backend  # boto3 is loaded only when S3 is used

    return RetryingBackend(S3Backend.from_description(desc))


_OPENERS: dict[str, Callable[[Mapping[str, str]], Backend]] = {
    "local": _open_local,
    "s3": _open_s3,
}


def open_backend(desc: Mapping[str, str]) -> Backend:
    """Return the backend that ``desc`` (from ``Backend.describe()``) describes."""
    kind = desc.get("kind")
    opener = _OPENERS.get(kind or "")
    if opener is None:
        known = ", ".join(sorted(_OPENERS))
        raise ValueError(f"unknown blob store kind {kind!r} (known kinds: {known})")
    return opener(desc)
