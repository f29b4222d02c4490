"""Restart from a snapshot and snapshot retention: task columns, snapshot deletion time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resume_from", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("snapshot_retention", sa.Integer(), nullable=True))

    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("snapshot_retention")
        batch_op.drop_column("resume_from")
