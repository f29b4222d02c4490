"""The server's database on both engines, for tests of what runs inside it (no server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcsnap.server.db.session import Database
from tests.services import Postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database: a SQLite file, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"db_{tmp_path.name[-12:].lower()}")
    database = Database(url)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()
