"""S3 endpoint: sealed tokens, S3 ETags and object metadata

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed", sa.Text(), nullable=True))

    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("etag", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("meta")
        batch_op.drop_column("etag")

    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("sealed")
