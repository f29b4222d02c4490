"""Finding which digests a user's keys reference, through the digest-prefix index: on SQLite
here, on PostgreSQL in tests/scaleout/test_postgres.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from hpcsnap.server import blobrefs
from hpcsnap.server.db import Bucket, Database, Object, User

A = "0123abcd" + "1" * 24
SAME_PREFIX = "0123abcd" + "2" * 24  # shares A's indexed digits, not its content
OTHER = "fedc0000" + "1" * 24


def fill(db: Database) -> None:
    """Two users; the first references A twice (two keys), the second SAME_PREFIX."""
    with db.session() as session:
        session.add_all([User(id=1, name="one", email="1@x"), User(id=2, name="two", email="2@x")])
        session.flush()
        session.add_all(
            [Bucket(id=1, owner_id=1, name="b-one"), Bucket(id=2, owner_id=2, name="b-two")]
        )
        session.flush()
        for bucket, owner, key, digest in (
            (1, 1, "a", A),
            (1, 1, "snapshots/x/a", A),
            (2, 2, "c", SAME_PREFIX),
        ):
            session.add(
                Object(bucket_id=bucket, owner_id=owner, key=key, digest=digest, size=1, mtime_ns=0)
            )


def plan(engine: Engine, explain: str, digests: list[str], *setup: str) -> str:
    """The query plan of the lookup of ``digests``, after ``setup`` statements in the same
    connection."""
    query = blobrefs.keys_referencing(1, digests)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        for statement in setup:
            conn.execute(text(statement))
        return "\n".join(str(row) for row in conn.execute(text(explain + sql)))


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    """A SQLite database at the newest schema, with :func:`fill`'s keys."""
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.upgrade()
    fill(database)
    yield database
    database.dispose()


def test_a_digest_is_found_by_its_full_value_not_its_indexed_prefix(db: Database) -> None:
    with db.session() as session:
        assert blobrefs.referenced(session, 1, [A, SAME_PREFIX, OTHER]) == {A}
        assert blobrefs.referenced(session, 1, [SAME_PREFIX, OTHER]) == set()
        assert blobrefs.referenced(session, 2, [A, SAME_PREFIX, OTHER]) == {SAME_PREFIX}
        assert blobrefs.referenced(session, 2, []) == set()


@pytest.mark.parametrize("digests", [[A], [A, SAME_PREFIX, OTHER]])
def test_the_lookup_uses_the_prefix_index_on_sqlite(db: Database, digests: list[str]) -> None:
    steps = plan(db.engine, "EXPLAIN QUERY PLAN ", digests)
    assert "USING INDEX ix_objects_owner_digest_prefix (owner_id=? AND <expr>=?)" in steps


def test_migration_0005_indexes_the_keys_already_there(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.upgrade("0004")
    fill(db)
    db.upgrade()
    with db.engine.connect() as conn:
        indexes = {name for (name,) in conn.execute(text(INDEXES))}
    assert "ix_objects_owner_digest_prefix" in indexes
    assert "ix_objects_owner_digest" not in indexes
    with db.session() as session:
        assert blobrefs.referenced(session, 1, [A, SAME_PREFIX]) == {A}
    assert "USING INDEX ix_objects_owner_digest_prefix" in plan(
        db.engine, "EXPLAIN QUERY PLAN ", [A]
    )
    db.dispose()


INDEXES = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'objects'"
