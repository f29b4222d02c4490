"""The snapshot engine: files under ``/job`` in, content blobs and a manifest out.

A library used by the agent: :func:`capture` scans a directory (never following symlinks,
never opening FIFOs, sockets or devices, any byte sequence in names), filters the paths with
the task's regular expressions (:class:`PathFilter`), reuses unchanged files from the parent
snapshot's :class:`Manifest` without opening them, stores new content in a
:class:`~hpcsnap.blobstore.ContentStore` and returns the new manifest; :func:`store_ahead`
stores the new files left alone for a while, for a later capture to reuse. :func:`restore` writes
entries back (staging inputs, restarting a task from a snapshot); :func:`diff` compares two
trees (manifests, or listings of bucket keys). It knows nothing of HTTP, databases, buckets or
tasks.

Errors: :class:`FilterError` (a ``ValueError``: invalid or too slow regex),
:class:`SnapshotTooLarge` (hard limit), :class:`ManifestError` (a ``ValueError``: unreadable
manifest bytes), :class:`UnsafePath` (a ``ValueError``: an entry that would escape its
destination); store errors are :class:`hpcsnap.blobstore.BlobError`.
"""

from hpcsnap.snapshot.capture import (
    CaptureResult,
    Progress,
    SnapshotTooLarge,
    capture,
    format_size,
    store_ahead,
)
from hpcsnap.snapshot.diff import Change, Diff, Item, Record, diff
from hpcsnap.snapshot.filters import FilterError, PathFilter, compile_pattern
from hpcsnap.snapshot.manifest import Entry, Manifest, ManifestError
from hpcsnap.snapshot.restore import UnsafePath, restore

__all__ = [
    "CaptureResult",
    "Change",
    "Diff",
    "Entry",
    "FilterError",
    "Item",
    "Manifest",
    "ManifestError",
    "PathFilter",
    "Progress",
    "Record",
    "SnapshotTooLarge",
    "UnsafePath",
    "capture",
    "compile_pattern",
    "diff",
    "format_size",
    "restore",
    "store_ahead",
]
