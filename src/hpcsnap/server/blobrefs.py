"""Who references a blob, and freeing blobs nothing references any more (garbage collection).

A blob of a user's namespace is referenced by any ``objects`` row of that user with its digest
(bucket keys: uploads, results, snapshots of any task), by the ``manifest_digest`` of any
snapshot whose manifest is still needed (see below; and deleted snapshots whose collection has
not finished), and by the entries of a needed snapshot's manifest.

A live snapshot (not deleted) is *needed* while its task is not deleted, or while a task that is
not deleted may restore it: a task resumed from snapshot S of task T restores S's whole line
(:mod:`.resume`), even after T is deleted, and so does a later task resumed from a snapshot of
that task. So the snapshots of a deleted task count only if they are on the ``resume_from``
line of some task that is not deleted (:func:`resumable`); deleting a task frees the rest
(:func:`hpcsnap.server.taskgc.collect_task`, and the full sweep). A submission with
``resumeFrom`` takes the owner's GC lock shared, so its line is not freed before it commits.
A commit publishes every file entry of its manifest as a key (symlinks have no blob), so those
entries are ``objects`` rows too, until a key is deleted or overwritten: a live snapshot with
fewer keys than file entries ("not intact") has its manifest read by the collector, whose
entries then count (:class:`LiveManifests`).

The race to rule out: a writer that found content already stored (a dedup hit, or the agent's
change detection reusing a digest it stored hours ago) commits a reference to it while the
collector frees it. Both sides therefore take the owner's *GC lock* in their transaction:

- a **writer** (:func:`check_stored`) takes it shared, then requires each digest it is about to
  reference to be referenced already (the collector cannot free it while the lock is held, and
  the writer's own rows protect it once committed) or present in the store (checked under the
  lock; on a local store, where that is one system call, only the store is asked); missing
  content makes the commit fail with :class:`MissingContent`, naming the digests, so the agent
  stores them again and retries.
- the **collector** (:func:`free`) takes it exclusively, re-checks references, deletes the
  unreferenced blobs, then commits, in small batches.

On PostgreSQL the lock is a transaction-scoped advisory lock keyed by the owner (shared for
writers, exclusive for the collector), so it holds across servers sharing the database; on
SQLite a no-op write on the owner's row takes SQLite's single write lock (one process writes).
Either way the check and the delete happen in one locked transaction: content a capture
uploaded but has not committed yet is not a candidate of a snapshot's collection (candidates
are the content of deleted snapshots), and if it was one, the commit's check catches it. The
full sweep (:mod:`.sweep`), whose candidates are every stored blob, skips blobs younger than a
grace period, so that a capture's uploads are not freed and stored again before its commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal_column, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from hpcsnap.blobstore import BlobNotFound, ContentStore
from hpcsnap.server.db import Database, Object, Snapshot, Task, User
from hpcsnap.server.db.models import DIGEST_PREFIX_DIGITS, digest_prefix
from hpcsnap.server.errors import ApiError
from hpcsnap.snapshot.manifest import Manifest, ManifestError

log = logging.getLogger(__name__)

#: First key of the PostgreSQL advisory lock (the second is the owner's id): "hpsg".
_GC_LOCK = 0x68707367
BATCH = 500


class MissingContent(ApiError):
    """A commit references content that is no longer stored (freed by garbage collection)."""

    status = 409

    def __init__(self, digests: list[str]) -> None:
        self.digests = digests
        shown = ", ".join(digests[:5]) + (", ..." if len(digests) > 5 else "")
        super().__init__(
            f"{len(digests)} blob(s) referenced by this commit are not stored (freed by garbage "
            f"collection meanwhile): {shown}; store them again and retry",
            details={"missingDigests": digests},
        )


def lock(session: Session, owner_id: int, *, exclusive: bool) -> None:
    """Take the owner's GC lock until the end of ``session``'s transaction."""
    if session.get_bind().dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {fn}(:k, :o)"), {"k": _GC_LOCK, "o": owner_id})
    else:
        session.execute(
            update(User).where(User.id == owner_id).values(name=User.name),
            execution_options={"synchronize_session": False},
        )


def _chunks(items: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def resumable(session: Session, owner_id: int) -> set[str]:
    """The ids of the snapshots that a task of the owner that is not deleted may restore: the
    ``resume_from`` line of each such task, through deleted tasks too (a snapshot deleted
    meanwhile included: harmless, its collection does not ask)."""
    rows = session.execute(
        select(Task.uuid, Task.resume_from, Task.deleted).where(Task.owner_id == owner_id)
    ).all()
    lines = {uuid: ref for uuid, ref, _ in rows if ref}
    found: set[str] = set()
    for uuid, _, deleted in rows:
        ref = None if deleted else lines.get(uuid)
        while ref:
            snapshot_id = str(ref.get("snapshotId"))
            if snapshot_id in found:  # the rest of this line is walked already
                break
            found.add(snapshot_id)
            ref = lines.get(str(ref.get("taskUuid")))
    return found


class _Needed:
    """:func:`resumable`, computed at most once and only if a deleted task's snapshot shows
    up (most collections never meet one)."""

    def __init__(self, session: Session, owner_id: int) -> None:
        self.session, self.owner_id = session, owner_id
        self._ids: set[str] | None = None

    def __contains__(self, snapshot_id: str) -> bool:
        if self._ids is None:
            self._ids = resumable(self.session, self.owner_id)
        return snapshot_id in self._ids


INDEXED_PREFIX: ColumnClause[str] = literal_column(digest_prefix("objects.digest"))
"""The indexed prefix of a key's digest, written out, not bound, so that SQLite's and
PostgreSQL's planners see the very expression of the index."""


def keys_referencing(owner_id: int, digests: list[str]) -> Select[Any]:
    """The distinct digests of the owner's keys that share their indexed prefix with one of
    ``digests``: a superset of those referenced, which the caller compares in full. (A full
    comparison in the query would be a trap: SQLite reads ``digest = ?``, a list of one, into
    the prefix's expression, which then no longer matches the index.)"""
    return (
        select(Object.digest)
        .where(
            Object.owner_id == owner_id,
            INDEXED_PREFIX.in_(sorted({d[:DIGEST_PREFIX_DIGITS] for d in digests})),
        )
        .distinct()
    )


def by_snapshot(column: Any, snapshot_ids: list[str], *more: Any) -> Select[Any]:
    """``column``, the owner and ``more`` of the keys published by the given snapshots, found
    through the ``snapshot_id`` index only: with the owner in the condition as well, SQLite
    (which keeps no statistics) may look through all of the owner's keys in the digest index
    instead. The caller keeps the rows of its owner."""
    return select(column, Object.owner_id, *more).where(Object.snapshot_id.in_(snapshot_ids))


def referenced(
    session: Session, owner_id: int, digests: Iterable[str], *, skip_manifest_of: str | None = None
) -> set[str]:
    """The digests among ``digests`` that some key or needed manifest of the owner references
    (``skip_manifest_of``: a snapshot id whose own manifest does not count)."""
    wanted = sorted(set(digests))
    found: set[str] = set()
    needed = _Needed(session, owner_id)
    for part in _chunks(wanted):
        found.update(set(part).intersection(session.scalars(keys_referencing(owner_id, part))))
        query = (
            select(Snapshot.id, Snapshot.manifest_digest, Task.deleted, Snapshot.deleted_at)
            .join(Task, Task.uuid == Snapshot.task_uuid)
            .where(Task.owner_id == owner_id, Snapshot.manifest_digest.in_(part))
        )
        if skip_manifest_of is not None:
            query = query.where(Snapshot.id != skip_manifest_of)
        for snap_id, manifest_digest, task_deleted, deleted_at in session.execute(query):
            if manifest_digest and (
                not task_deleted or deleted_at is not None or snap_id in needed
            ):
                found.add(manifest_digest)
    return found


def check_stored(
    session: Session,
    store: ContentStore,
    owner_id: int,
    digests: Iterable[str],
    *,
    likely_in: str | None = None,
) -> None:
    """Writer side: take the shared GC lock for the rest of the transaction and make sure every
    digest is safe to reference (raises :class:`MissingContent` otherwise).

    Where the store answers :meth:`~hpcsnap.blobstore.ContentStore.has` with a system call (a
    local directory), every digest is proven by the store alone: looking a digest up among the
    owner's keys costs more than that (a full commit of 10,000 keys, with 15 snapshots of such
    in the table: 0.42 CPU-s of lookups against 0.09 for the ``stat`` calls; bench/README.md,
    P4). Elsewhere the keys are asked first; ``likely_in``, the id of a snapshot whose keys
    probably reference most of the digests (a capture's parent), then proves those in one
    query instead of one per :data:`BATCH` digests."""
    wanted = set(digests)
    lock(session, owner_id, exclusive=False)
    if not store.stats_cheaply:
        if wanted and likely_in is not None:
            wanted.difference_update(
                digest
                for digest, owner in session.execute(by_snapshot(Object.digest, [likely_in]))
                if owner == owner_id
            )
        if wanted:
            wanted -= referenced(session, owner_id, wanted)
    if not wanted:
        return
    missing = sorted(wanted - store.stored(sorted(wanted)))
    if missing:
        raise MissingContent(missing)


def ensure_stored(
    session: Session,
    store: ContentStore,
    owner_id: int,
    digests: Iterable[str],
    store_again: Callable[[str], object],
) -> None:
    """Writer side for content the caller has just stored (or found already stored, a dedup
    hit) and still holds: :func:`check_stored`, then ``store_again(digest)`` for each digest
    garbage collection freed meanwhile. The shared lock is held from the check to the end of
    the transaction, so what was stored again cannot be freed before the caller's rows commit.
    """
    try:
        check_stored(session, store, owner_id, digests)
    except MissingContent as exc:
        for digest in exc.digests:
            store_again(digest)


@dataclass
class Freed:
    """What a collection removed: ``blobs`` deleted, ``bytes`` they held (or, in a dry run,
    would have removed)."""

    blobs: int = 0
    bytes: int = 0

    def add(self, other: Freed) -> None:
        self.blobs += other.blobs
        self.bytes += other.bytes


#: Number of file entries of a manifest, by its digest (manifests never change), so that an
#: intact snapshot's manifest is read once per process, not at every collection.
_FILE_ENTRIES: dict[str, int] = {}
_FILE_ENTRIES_MAX = 100_000


class LiveManifests:
    """The entries of needed snapshots' manifests that are no longer keys (see the module
    docstring). Holds, for the time of one collection, the entries of the manifests it had to
    read (those of snapshots that are not intact)."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self._entries: dict[str, frozenset[str]] = {}

    def _read(self, manifest_digest: str) -> frozenset[str]:
        if manifest_digest in self._entries:
            return self._entries[manifest_digest]
        try:
            with self.store.open(manifest_digest) as src:
                manifest = Manifest.from_bytes(src.read())
        except (BlobNotFound, ManifestError) as exc:
            # a damaged snapshot: what of it is still a key stays; nothing else can be known
            log.warning("manifest %s of a live snapshot is unreadable: %s", manifest_digest, exc)
            entries: frozenset[str] = frozenset()
            count = 0
        else:
            digests = [e.digest for e in manifest.values() if e.digest is not None]
            entries, count = frozenset(digests), len(digests)
        if len(_FILE_ENTRIES) >= _FILE_ENTRIES_MAX:
            _FILE_ENTRIES.clear()
        _FILE_ENTRIES[manifest_digest] = count
        self._entries[manifest_digest] = entries
        return entries

    def referencing(self, session: Session, owner_id: int, digests: set[str]) -> set[str]:
        """The digests among ``digests`` that a needed snapshot's manifest lists (in the
        caller's transaction, which holds the owner's GC lock)."""
        if not digests:
            return set()
        needed = _Needed(session, owner_id)
        live = [
            (snap_id, manifest_digest)
            for snap_id, manifest_digest, task_deleted in session.execute(
                select(Snapshot.id, Snapshot.manifest_digest, Task.deleted)
                .join(Task, Task.uuid == Snapshot.task_uuid)
                .where(
                    Task.owner_id == owner_id,
                    Snapshot.deleted_at.is_(None),
                    Snapshot.manifest_digest.is_not(None),
                )
            ).tuples()
            if not task_deleted or snap_id in needed
        ]
        keys: dict[str, int] = {}
        ids = [snap_id for snap_id, _ in live]
        for part in _chunks(ids):
            counts = by_snapshot(Object.snapshot_id, part, func.count()).group_by(
                Object.snapshot_id, Object.owner_id
            )
            for snap_id, owner, count in session.execute(counts).tuples():
                if owner == owner_id:
                    keys[snap_id or ""] = count
        found: set[str] = set()
        for snap_id, manifest_digest in live:
            assert manifest_digest is not None
            entries = _FILE_ENTRIES.get(manifest_digest)
            if entries is not None and keys.get(snap_id, 0) >= entries:
                continue  # intact: each of its entries is a key, already counted
            found |= digests & self._read(manifest_digest)
        return found


def free(
    db: Database,
    store: ContentStore,
    owner_id: int,
    candidates: Iterable[str],
    *,
    skip_manifest_of: str | None = None,
    manifests: LiveManifests | None = None,
    dry_run: bool = False,
) -> Freed:
    """Collector side: delete each candidate blob that nothing references, a batch per locked
    transaction (so writers of this owner wait for one batch at most). ``dry_run``: count what
    would be freed, delete nothing (under the shared lock: writers do not wait)."""
    freed = Freed()
    manifests = manifests or LiveManifests(store)
    for part in _chunks(sorted(set(candidates))):
        with db.session() as session:
            lock(session, owner_id, exclusive=not dry_run)
            keep = referenced(session, owner_id, part, skip_manifest_of=skip_manifest_of)
            keep |= manifests.referencing(session, owner_id, set(part) - keep)
            for digest in part:
                if digest in keep:
                    continue
                size = store.backend.stat(store.key(digest))
                if size is None:
                    continue
                if not dry_run:
                    store.delete(digest)
                freed.blobs += 1
                freed.bytes += size
    return freed
