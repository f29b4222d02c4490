"""Metadata database: SQLAlchemy models, engine/session setup and Alembic migrations.

SQLite (embedded default) and PostgreSQL share one schema and one migration history.
"""

from hpcsnap.server.db.models import (
    Base,
    Bucket,
    LogChunk,
    Object,
    Snapshot,
    Task,
    TaskEvent,
    Token,
    User,
)
from hpcsnap.server.db.session import Database

__all__ = [
    "Base",
    "Bucket",
    "Database",
    "LogChunk",
    "Object",
    "Snapshot",
    "Task",
    "TaskEvent",
    "Token",
    "User",
]
