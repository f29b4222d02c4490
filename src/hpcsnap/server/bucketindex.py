"""Buckets as per-user indexes of keys over the content-addressed blob store.

A key's content is a blob of the owner's namespace (``u<user id>``); many keys, snapshots and
tasks may share one blob. Publishing many keys (results, a snapshot) happens in the caller's
transaction, so they become visible together or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from sqlalchemy import String, Table, and_, delete, func, insert, literal, null, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hpcsnap.agent.protocol import ACTIVE_STATES, FileEntry, TaskState
from hpcsnap.server.db import Bucket, Object, Task
from hpcsnap.server.errors import BadRequest, NotFound

_TABLE = cast(Table, Object.__table__)
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY = 1024


def namespace(owner_id: int) -> str:
    """The blob-store namespace of one user's content."""
    return f"u{owner_id}"


def check_bucket_name(name: str) -> str:
    if not BUCKET_NAME.match(name) or ".." in name:
        raise BadRequest(
            f"invalid bucket name {name!r}: 3-63 characters among lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit"
        )
    return name


def check_key(key: str, *, what: str = "key") -> str:
    """A bucket key: relative, ``/``-separated, no ``.``/``..``/empty segments, no NUL."""
    if not key:
        raise BadRequest(f"{what} must not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY:
        raise BadRequest(f"{what} is longer than {MAX_KEY} bytes")
    if "\x00" in key:
        raise BadRequest(f"{what} {key!r} contains a NUL character")
    if key.startswith("/"):
        raise BadRequest(f"{what} {key!r} must be relative (no leading '/')")
    parts = key.split("/")
    if any(p in (".", "..") for p in parts):
        raise BadRequest(f"{what} {key!r} must not contain '.' or '..' segments")
    if any(p == "" for p in parts[:-1]):
        raise BadRequest(f"{what} {key!r} must not contain empty segments ('//')")
    return key


def check_prefix(prefix: str | None) -> str:
    """A key prefix for results or snapshots: empty, or a valid key ending with ``/``."""
    if not prefix:
        return ""
    check_key(prefix.rstrip("/") or ".", what="prefix")
    return prefix.rstrip("/") + "/"


def get_bucket(session: Session, owner_id: int, name: str) -> Bucket:
    bucket = session.scalar(select(Bucket).where(Bucket.owner_id == owner_id, Bucket.name == name))
    if bucket is None:
        raise NotFound(f"bucket {name!r} not found")
    return bucket


def ensure_bucket(session: Session, owner_id: int, name: str) -> Bucket:
    bucket = session.scalar(select(Bucket).where(Bucket.owner_id == owner_id, Bucket.name == name))
    if bucket is None:
        bucket = Bucket(owner_id=owner_id, name=check_bucket_name(name))
        session.add(bucket)
        session.flush()
    return bucket


def get_object(session: Session, bucket: Bucket, key: str) -> Object:
    obj = session.scalar(select(Object).where(Object.bucket_id == bucket.id, Object.key == key))
    if obj is None:
        raise NotFound(f"no key {key!r} in bucket {bucket.name!r}")
    return obj


def list_objects(session: Session, bucket: Bucket, prefix: str = "") -> Sequence[Object]:
    query = select(Object).where(Object.bucket_id == bucket.id)
    if prefix:
        query = query.where(Object.key >= prefix, Object.key < prefix + "\U0010ffff")
    return session.scalars(query.order_by(Object.key)).all()


def count_objects(session: Session, bucket: Bucket) -> int:
    return session.scalar(select(func.count()).where(Object.bucket_id == bucket.id)) or 0


def put_object(
    session: Session,
    bucket: Bucket,
    key: str,
    *,
    digest: str,
    size: int,
    mtime_ns: int,
    md5: str | None = None,
    etag: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Object:
    """Add (or overwrite) one key; ``etag`` and ``meta`` are what S3 uploads record."""
    session.execute(delete(Object).where(Object.bucket_id == bucket.id, Object.key == key))
    obj = Object(
        bucket_id=bucket.id,
        owner_id=bucket.owner_id,
        key=key,
        digest=digest,
        size=size,
        mtime_ns=mtime_ns,
        md5=md5,
        etag=etag,
        meta=meta,
    )
    session.add(obj)
    return obj


def buckets_in_use(session: Session, owner_id: int) -> dict[str, str]:
    """Bucket name → uuid of an unfinished task that uses it.

    Deleted tasks do not count: their owner can no longer see nor abort them, and deleting a
    task with the qarnot SDK's ``purge_results``/``purge_resources`` deletes its buckets
    right after the task (which may still be cancelling).
    """
    used: dict[str, str] = {}
    active = [s.value for s in ACTIVE_STATES] + [TaskState.SUBMITTED.value]
    for task in session.scalars(
        select(Task).where(
            Task.owner_id == owner_id, Task.state.in_(active), Task.deleted.is_(False)
        )
    ):
        names = [r.get("bucketName") for r in task.resource_buckets]
        names += [task.result_bucket, task.snapshot_bucket]
        for n in names:
            if n:
                used.setdefault(n, task.uuid)
    return used


def publish(
    session: Session,
    bucket: Bucket,
    prefix: str,
    files: Iterable[FileEntry],
    *,
    snapshot_id: str | None = None,
    replace: bool = True,
) -> int:
    """Add (or overwrite) ``prefix + path`` for every file, in the caller's transaction.

    ``replace`` overwrites existing keys (an upsert on SQLite and PostgreSQL).
    """
    files = list(files)
    for f in files:
        check_key(prefix + f.path)
    rows = [
        {
            "bucket_id": bucket.id,
            "owner_id": bucket.owner_id,
            "key": prefix + f.path,
            "digest": f.digest,
            "size": f.size,
            "mtime_ns": f.mtime_ns,
            "md5": None,
            "snapshot_id": snapshot_id,
        }
        for f in files
    ]
    connection = session.connection()
    if replace:
        keys = [row["key"] for row in rows]
        stmt = _upsert(
            session,
            bucket,
            lambda: (_TABLE.c.key.in_(keys[i : i + 500]) for i in range(0, len(keys), 500)),
        )
    else:
        stmt = insert(_TABLE)
    # Core (not ORM) executemany: a snapshot publishes every key of its tree, often 10^4 rows.
    for i in range(0, len(rows), 5000):
        connection.execute(stmt, rows[i : i + 5000])
    return len(rows)


def _upsert(session: Session, bucket: Bucket, keys: Callable[[], Iterable[Any]]) -> Any:
    """An insert into ``objects`` that overwrites the rows of keys already in ``bucket``: one
    statement on SQLite and PostgreSQL; on other databases, the rows matching each condition
    of ``keys()`` are deleted first."""
    dialect = session.connection().dialect.name
    if dialect in ("sqlite", "postgresql"):
        upsert = sqlite.insert(_TABLE) if dialect == "sqlite" else postgresql.insert(_TABLE)
        return upsert.on_conflict_do_update(
            index_elements=[_TABLE.c.bucket_id, _TABLE.c.key],
            set_={
                name: upsert.excluded[name]
                for name in ("owner_id", "digest", "size", "mtime_ns", "md5", "snapshot_id")
            }
            # literals, not parameters: a JSON parameter is encoded again for every row
            | {"etag": null(), "meta": null()},
        )
    for condition in keys():
        session.execute(delete(_TABLE).where(_TABLE.c.bucket_id == bucket.id, condition))
    return insert(_TABLE)


def copy_snapshot_keys(
    session: Session,
    source: Bucket,
    source_prefix: str,
    source_snapshot: str,
    target: Bucket,
    target_prefix: str,
    target_snapshot: str,
) -> int:
    """Publish under ``target_prefix`` of ``target`` every key that snapshot
    ``source_snapshot`` published under ``source_prefix`` (same content, size and time), in
    one statement that never brings the rows into Python; returns how many were copied.

    Only rows still tagged with ``source_snapshot`` count: a key of it that was deleted or
    overwritten since is not copied, so the caller can compare the count with what it expects.
    """
    table = _TABLE
    where = (
        table.c.bucket_id == source.id,
        table.c.snapshot_id == source_snapshot,
        table.c.key >= source_prefix,
        table.c.key < source_prefix + "\U0010ffff",
    )
    if len(target_prefix.encode()) > len(source_prefix.encode()):
        # longer keys than their originals: each must still be a valid key
        for key in session.scalars(select(table.c.key).where(*where)):
            check_key(target_prefix + key[len(source_prefix) :])
    rest = func.substr(table.c.key, len(source_prefix) + 1, type_=String)
    columns = ("bucket_id", "owner_id", "key", "digest", "size", "mtime_ns", "md5", "snapshot_id")
    rows = select(
        literal(target.id),
        literal(target.owner_id),
        literal(target_prefix, String).concat(rest),
        table.c.digest,
        table.c.size,
        table.c.mtime_ns,
        table.c.md5,
        literal(target_snapshot, String),
    ).where(*where)
    stmt = _upsert(
        session,
        target,
        lambda: [and_(table.c.key >= target_prefix, table.c.key < target_prefix + "\U0010ffff")],
    )
    result = session.connection().execute(
        stmt.from_select(columns, rows), execution_options={"preserve_rowcount": True}
    )
    return int(result.rowcount)


def delete_snapshot_keys(
    session: Session, bucket: Bucket, prefix: str, paths: Sequence[str], snapshot_id: str
) -> int:
    """Delete ``prefix + path`` for each path, where snapshot ``snapshot_id`` published it;
    returns how many keys were deleted."""
    count = 0
    for i in range(0, len(paths), 500):
        keys = [prefix + p for p in paths[i : i + 500]]
        result = session.connection().execute(
            delete(_TABLE).where(
                _TABLE.c.bucket_id == bucket.id,
                _TABLE.c.snapshot_id == snapshot_id,
                _TABLE.c.key.in_(keys),
            )
        )
        count += int(result.rowcount)
    return count
