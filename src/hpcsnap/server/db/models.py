"""The metadata schema. Every change here needs a migration in ``migrations/versions``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Token(Base):
    """An API token (kind ``user``) or a task's agent credential (kind ``agent``), stored hashed."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="user")
    task_uuid: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    #: A user token sealed with the server key, to verify S3 signatures (see server.s3.secrets).
    sealed: Mapped[str | None] = mapped_column(Text, default=None)


class Bucket(Base):
    __tablename__ = "buckets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


DIGEST_PREFIX_DIGITS = 8
"""What ``objects`` indexes of a key's digest: its first hex digits only (32 bits: a user's keys
share them by chance once in 4 billion pairs). Each key a snapshot copies from its parent lands
at random in this index, and a smaller index is less to rewrite at every commit (migration
0005)."""


def digest_prefix(column: str = "digest") -> str:
    """The SQL of the indexed prefix of ``column``: a query must spell this very expression for
    the planner to use ``ix_objects_owner_digest_prefix`` (see ``blobrefs``)."""
    return f"substr({column}, 1, {DIGEST_PREFIX_DIGITS})"


class Object(Base):
    """One key of a bucket: its content is the blob ``digest`` in the owner's namespace."""

    __tablename__ = "objects"
    __table_args__ = (
        UniqueConstraint("bucket_id", "key"),
        Index("ix_objects_owner_digest_prefix", "owner_id", text(digest_prefix())),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id", ondelete="CASCADE"))
    owner_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str | None] = mapped_column(String(32), default=None)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    #: The ETag S3 clients were given when it is not the MD5 (multipart: ``<md5 of md5s>-N``).
    etag: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Content-Type and other headers stored by S3 uploads, plus ``x-amz-meta-*`` metadata.
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_state", "state"),)

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    shortname: Mapped[str | None] = mapped_column(String(255), default=None)
    profile: Mapped[str] = mapped_column(String(64), default="docker-batch")
    command: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    constants: Mapped[list[Any]] = mapped_column(JSON, default=list)
    resource_buckets: Mapped[list[Any]] = mapped_column(JSON, default=list)
    result_bucket: Mapped[str | None] = mapped_column(String(63), default=None)
    results_whitelist: Mapped[str | None] = mapped_column(Text, default=None)
    results_blacklist: Mapped[str | None] = mapped_column(Text, default=None)
    snapshot_whitelist: Mapped[str | None] = mapped_column(Text, default=None)
    snapshot_blacklist: Mapped[str | None] = mapped_column(Text, default=None)
    snapshot_interval: Mapped[int] = mapped_column(Integer, default=0)
    snapshot_bucket: Mapped[str | None] = mapped_column(String(63), default=None)
    snapshot_prefix: Mapped[str | None] = mapped_column(String(1024), default=None)
    #: Bumped whenever the periodic settings change, so the agent notices.
    snapshot_config_version: Mapped[int] = mapped_column(Integer, default=0)
    upload_results_on_cancellation: Mapped[bool] = mapped_column(Boolean, default=False)
    include_unchanged_inputs: Mapped[bool] = mapped_column(Boolean, default=False)
    wall_time_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(32), default="Submitted")
    previous_state: Mapped[str | None] = mapped_column(String(32), default=None)
    state_transition_time: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    previous_state_transition_time: Mapped[dt.datetime | None] = mapped_column(
        DateTime, default=None
    )
    creation_date: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    start_date: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    end_date: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    results_count: Mapped[int] = mapped_column(Integer, default=0)
    executor: Mapped[str] = mapped_column(String(32), default="local")
    executor_id: Mapped[str | None] = mapped_column(String(128), default=None)
    agent_seen: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    abort_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    stdout_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    stderr_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    job_mode: Mapped[str | None] = mapped_column(String(16), default=None)
    #: ``{"taskUuid": ..., "snapshotId": ...}``: /job is restored from that snapshot before start.
    resume_from: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: Keep only the last N periodic snapshots (None: keep all).
    snapshot_retention: Mapped[int | None] = mapped_column(Integer, default=None)


class LogChunk(Base):
    """A piece of a task's stdout or stderr, in order of ``offset`` (characters)."""

    __tablename__ = "log_chunks"
    __table_args__ = (Index("ix_log_chunks_task_stream", "task_uuid", "stream", "offset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_uuid: Mapped[str] = mapped_column(ForeignKey("tasks.uuid", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(String(8))
    offset: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[str] = mapped_column(Text)


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_task", "task_uuid", "trigger_date"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_uuid: Mapped[str] = mapped_column(ForeignKey("tasks.uuid", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(128), default=None)
    status: Mapped[str] = mapped_column(String(16), default="Triggered")
    trigger_date: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_update_date: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    whitelist: Mapped[str | None] = mapped_column(Text, default=None)
    blacklist: Mapped[str | None] = mapped_column(Text, default=None)
    bucket: Mapped[str | None] = mapped_column(String(63), default=None)
    bucket_prefix: Mapped[str | None] = mapped_column(String(1024), default=None)
    directory: Mapped[str | None] = mapped_column(String(1024), default=None)
    parent_id: Mapped[str | None] = mapped_column(String(36), default=None)
    manifest_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    size_to_upload: Mapped[int] = mapped_column(BigInteger, default=0)
    transferred_size: Mapped[int] = mapped_column(BigInteger, default=0)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    files_reused: Mapped[int] = mapped_column(Integer, default=0)
    files_read: Mapped[int] = mapped_column(Integer, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_stored: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    skipped_ticks: Mapped[int] = mapped_column(Integer, default=0)
    #: Set when the snapshot was deleted (by retention or on request); its keys are gone.
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)


class TaskEvent(Base):
    """One entry of a task's event stream (``GET /v1/tasks/{uuid}/events``), in order of ``id``.

    Writers lock the task's row before inserting (see :mod:`hpcsnap.server.events`), so a task's
    events get their ids in commit order even on PostgreSQL. A ``log`` event points at its
    :class:`LogChunk` rather than copying the text.
    """

    __tablename__ = "task_events"
    __table_args__ = (
        Index("ix_task_events_task", "task_uuid", "id"),
        Index("ix_task_events_snapshot", "snapshot_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_uuid: Mapped[str] = mapped_column(ForeignKey("tasks.uuid", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    time: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None)
    log_chunk_id: Mapped[int | None] = mapped_column(
        ForeignKey("log_chunks.id", ondelete="CASCADE"), default=None
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
