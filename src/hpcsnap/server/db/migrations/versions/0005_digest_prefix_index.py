"""Index the objects' digests by their first 8 hex digits instead of all 32

A snapshot's commit copies its parent's keys (10^4 rows and more, at every periodic snapshot),
and the digest index is the one each copied row lands in at random: nearly every page of it
was rewritten at every commit, so a commit cost more with every snapshot kept. Indexed by 8
digits (a lookup compares the rows it finds in full), it is less than half the size, and so is
what each commit rewrites (measured: bench/README.md, P4).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_objects_owner_digest", table_name="objects")
    op.create_index(
        "ix_objects_owner_digest_prefix",
        "objects",
        ["owner_id", sa.text("substr(digest, 1, 8)")],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_objects_owner_digest_prefix", table_name="objects")
    op.create_index("ix_objects_owner_digest", "objects", ["owner_id", "digest"], unique=False)
