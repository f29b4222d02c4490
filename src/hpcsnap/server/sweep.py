"""The full garbage-collection sweep: free every stored blob that nothing references.

Deleting a snapshot frees its content at once (:mod:`.retention`); content that no such path
frees is left for this sweep: the uploads of captures that failed or were torn (stored, never
committed), the old content of overwritten or deleted keys, the content of deleted buckets.

For each user, the sweep lists the user's namespace of the blob store with each blob's age
(:meth:`~hpcsnap.blobstore.ContentStore.blobs`), skips blobs written less than ``grace`` ago
(an agent may have stored content it has not committed yet), and hands the rest to the
collector (:func:`.blobrefs.free`), which re-checks each one under the owner's GC lock against
keys, needed manifests and the entries of live snapshots' manifests before deleting it. It
first finishes the collection of deleted snapshots that a crash interrupted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from hpcsnap.blobstore import Backend, ContentStore
from hpcsnap.server import blobrefs, retention
from hpcsnap.server.bucketindex import namespace
from hpcsnap.server.db import Database, User

log = logging.getLogger(__name__)

#: Default grace period: blobs younger than this are never swept.
GRACE_MINUTES = 60
#: Candidates handed to the collector at a time while the listing goes on.
CHUNK = 5000


@dataclass
class Sweep:
    """What a sweep saw and freed (``dry_run``: what it would have freed)."""

    grace_minutes: float
    dry_run: bool
    users: int = 0
    blobs: int = 0
    bytes: int = 0
    young: int = 0
    freed: blobrefs.Freed = field(default_factory=blobrefs.Freed)

    def as_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "graceMinutes": self.grace_minutes,
            "users": self.users,
            "scannedBlobs": self.blobs,
            "scannedBytes": self.bytes,
            "youngBlobs": self.young,
            "freedBlobs": self.freed.blobs,
            "freedBytes": self.freed.bytes,
        }


def sweep_user(
    db: Database, store: ContentStore, owner_id: int, report: Sweep, cutoff: float
) -> None:
    """Sweep one user's namespace into ``report``."""
    if not report.dry_run:
        report.freed.add(retention.collect_pending(db, store, owner_id))
    manifests = blobrefs.LiveManifests(store)
    candidates: list[str] = []

    def collect() -> None:
        report.freed.add(
            blobrefs.free(
                db, store, owner_id, candidates, manifests=manifests, dry_run=report.dry_run
            )
        )
        candidates.clear()

    for blob in store.blobs():
        report.blobs += 1
        report.bytes += blob.size
        if blob.modified > cutoff:
            report.young += 1
            continue
        candidates.append(blob.digest)
        if len(candidates) >= CHUNK:
            collect()
    collect()


def sweep(
    db: Database, backend: Backend, *, grace_minutes: float = GRACE_MINUTES, dry_run: bool = False
) -> Sweep:
    """Sweep every user's namespace (see the module docstring)."""
    report = Sweep(grace_minutes=grace_minutes, dry_run=dry_run)
    cutoff = time.time() - grace_minutes * 60
    with db.session() as session:
        owners = list(session.scalars(select(User.id).order_by(User.id)))
    for owner_id in owners:
        sweep_user(db, ContentStore(backend, namespace(owner_id)), owner_id, report, cutoff)
        report.users += 1
    log.info(
        "garbage collection%s: %d blob(s) scanned, %d young, %d freed (%d bytes)",
        " (dry run)" if dry_run else "",
        report.blobs,
        report.young,
        report.freed.blobs,
        report.freed.bytes,
    )
    return report
