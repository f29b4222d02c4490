"""Alembic environment: runs migrations on the engine handed over by ``Database.upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from hpcsnap.server.db.models import Base

config = context.config
engine = config.attributes.get("connection_engine")
if engine is None:  # run from the alembic CLI (autogenerate during development)
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
