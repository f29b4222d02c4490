"""Task event stream: state changes, snapshot events and log chunks in one ordered table

Tasks that exist already get their stream from what the tables know, in this order: their
output chunks, their snapshots (triggered, then how they ended), their current state, and
``end`` if they have ended. The history of their states before the upgrade is not known.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:00.000000
"""

import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_uuid", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("log_chunk_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["task_uuid"], ["tasks.uuid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["log_chunk_id"], ["log_chunks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.create_index("ix_task_events_task", ["task_uuid", "id"], unique=False)
        batch_op.create_index("ix_task_events_snapshot", ["snapshot_id"], unique=False)
    backfill()


TERMINAL = ("Success", "Failure", "Cancelled")

tasks = sa.table(
    "tasks",
    *(sa.column(n, sa.String()) for n in ("uuid", "state", "previous_state")),
    *(sa.column(n, sa.DateTime()) for n in ("state_transition_time", "creation_date")),
    *(sa.column(n, sa.DateTime()) for n in ("start_date", "end_date")),
    sa.column("exit_code", sa.Integer()),
)
snapshots = sa.table(
    "snapshots",
    *(sa.column(n, sa.String()) for n in ("id", "task_uuid", "kind", "label", "status")),
    *(sa.column(n, sa.String()) for n in ("directory", "error")),
    *(sa.column(n, sa.DateTime()) for n in ("trigger_date", "last_update_date", "deleted_at")),
    *(sa.column(n, sa.Integer()) for n in ("files_total", "files_read", "files_reused")),
    *(sa.column(n, sa.BigInteger()) for n in ("bytes_total", "bytes_stored")),
    sa.column("duration_ms", sa.Integer()),
    sa.column("warnings", sa.JSON()),
)
log_chunks = sa.table(
    "log_chunks",
    sa.column("id", sa.Integer()),
    sa.column("task_uuid", sa.String()),
    sa.column("stream", sa.String()),
    sa.column("offset", sa.BigInteger()),
)
task_events = sa.table(
    "task_events",
    sa.column("task_uuid", sa.String()),
    sa.column("type", sa.String()),
    sa.column("time", sa.DateTime()),
    sa.column("snapshot_id", sa.String()),
    sa.column("log_chunk_id", sa.Integer()),
    sa.column("data", sa.JSON()),
)


def _ms(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if value else None


def _task_events(conn: sa.Connection, task: sa.Row[Any]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []

    def add(type_: str, time: object, data: dict[str, object], **refs: object) -> None:
        rows.append(
            {
                "task_uuid": task.uuid,
                "type": type_,
                "time": time,
                "data": data,
                "snapshot_id": refs.get("snapshot_id"),
                "log_chunk_id": refs.get("log_chunk_id"),
            }
        )

    started = task.start_date or task.creation_date
    for chunk in conn.execute(
        sa.select(log_chunks).where(log_chunks.c.task_uuid == task.uuid).order_by(log_chunks.c.id)
    ):
        add("log", started, {"stream": chunk.stream, "offset": chunk.offset}, log_chunk_id=chunk.id)
    for snap in conn.execute(
        sa.select(snapshots)
        .where(snapshots.c.task_uuid == task.uuid)
        .order_by(snapshots.c.trigger_date)
    ):
        head = {
            "snapshotId": snap.id,
            "kind": snap.kind,
            "label": snap.label,
            "status": snap.status,
            "directory": snap.directory,
        }
        add("snapshot.triggered", snap.trigger_date, head, snapshot_id=snap.id)
        if snap.status == "Success":
            add(
                "snapshot.success",
                snap.last_update_date,
                {
                    **head,
                    "filesTotal": snap.files_total,
                    "filesRead": snap.files_read,
                    "filesReused": snap.files_reused,
                    "bytesTotal": snap.bytes_total,
                    "bytesStored": snap.bytes_stored,
                    "durationMs": snap.duration_ms,
                    "warnings": snap.warnings or [],
                },
                snapshot_id=snap.id,
            )
        elif snap.status == "Failure":
            add(
                "snapshot.failure",
                snap.last_update_date,
                {**head, "error": snap.error},
                snapshot_id=snap.id,
            )
        if snap.deleted_at is not None:
            add(
                "snapshot.deleted",
                snap.deleted_at,
                {**head, "reason": "before the upgrade"},
                snapshot_id=snap.id,
            )
    add("state", task.state_transition_time, {"from": task.previous_state, "to": task.state})
    if task.state in TERMINAL:
        add(
            "end",
            task.end_date or task.state_transition_time,
            {"state": task.state, "exitCode": task.exit_code, "endDate": _ms(task.end_date)},
        )
    return rows


def backfill() -> None:
    conn = op.get_bind()
    for task in conn.execute(sa.select(tasks).order_by(tasks.c.creation_date)).all():
        conn.execute(sa.insert(task_events), _task_events(conn, task))


def downgrade() -> None:
    with op.batch_alter_table("task_events", schema=None) as batch_op:
        batch_op.drop_index("ix_task_events_snapshot")
        batch_op.drop_index("ix_task_events_task")

    op.drop_table("task_events")
