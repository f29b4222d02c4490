"""Restart from a snapshot: the entries to restore into /job before the resources are staged.

The server sends the manifests of a line of snapshots, oldest first (a snapshot holds only the
outputs of its task, so a task that was itself resumed needs what it restored too); a later
manifest's entry replaces an earlier one at the same path. The entries keep their size, mode and
mtime, so once restored they are a baseline like staged inputs: unchanged ones are neither read
by snapshots nor uploaded as results.
"""

from __future__ import annotations

from collections.abc import Sequence

from hpcsnap.blobstore import ContentStore
from hpcsnap.blobstore.base import BlobError
from hpcsnap.snapshot.manifest import Entry, Manifest, ManifestError


class ResumeError(Exception):
    """The snapshot to restore cannot be read."""


def snapshot_entries(store: ContentStore, digests: Sequence[str]) -> Manifest:
    """The files and symlinks of the snapshots ``digests`` (manifest blobs), merged in order."""
    merged: dict[str, Entry] = {}
    for digest in digests:
        try:
            with store.open(digest) as f:
                manifest = Manifest.from_bytes(f.read())
        except (BlobError, ManifestError, OSError) as exc:
            raise ResumeError(f"the manifest {digest} of the snapshot to restore: {exc}") from exc
        merged.update(manifest)
    return Manifest(merged.values())
