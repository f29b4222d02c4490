"""The metadata store on a real PostgreSQL: the SQLite migrations, servers starting together,
and schedulers of several servers claiming each task once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import inspect, text

from hpcsnap.blobstore import LocalBackend
from hpcsnap.executors import AgentLaunch, JobState
from hpcsnap.server.auth import create_user
from hpcsnap.server.config import Settings
from hpcsnap.server.context import ServerContext, _upgrade, build_context
from hpcsnap.server.db import Database, Task
from hpcsnap.server.scheduler import Scheduler
from tests.server.test_blobrefs import OTHER, A, fill, plan
from tests.services import Postgres


def test_the_same_migrations_run_on_postgresql(postgres: Postgres, tmp_path: Path) -> None:
    pg = Database(postgres.create_database("migrate"))
    sqlite = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert pg.url.startswith("postgresql+psycopg://")
        for db in (pg, sqlite):
            db.upgrade()
            db.upgrade()  # idempotent
        versions = []
        for db in (pg, sqlite):
            with db.engine.connect() as conn:
                versions.append(conn.execute(text("SELECT version_num FROM alembic_version")).all())
        assert versions[0] == versions[1]
        assert set(inspect(pg.engine).get_table_names()) == set(
            inspect(sqlite.engine).get_table_names()
        )
    finally:
        pg.dispose()
        sqlite.dispose()


def test_the_digest_lookup_uses_the_prefix_index_on_postgresql(postgres: Postgres) -> None:
    db = Database(postgres.create_database("prefix"))
    try:
        db.upgrade()
        fill(db)
        # a tiny table, which a sequential scan would read faster: what matters is that the
        # planner can use the index for this query's expression
        steps = plan(db.engine, "EXPLAIN ", [A, OTHER], "SET enable_seqscan = off")
        assert "ix_objects_owner_digest_prefix" in steps
    finally:
        db.dispose()


def test_servers_starting_together_migrate_once(postgres: Postgres) -> None:
    url = postgres.create_database("together")
    errors: list[BaseException] = []
    dbs = [Database(url) for _ in range(3)]
    start = threading.Barrier(len(dbs))

    def run(db: Database) -> None:
        try:
            start.wait()
            _upgrade(db)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for db in dbs:
        db.dispose()
    assert errors == []


class CountingExecutor:
    """Records every submit; answers that every job runs."""

    name = "counting"

    def __init__(self, submitted: list[str], lock: threading.Lock) -> None:
        self.submitted = submitted
        self.lock = lock

    def submit(self, launch: AgentLaunch) -> str:
        with self.lock:
            self.submitted.append(launch.task_uuid)
        return f"job-{launch.task_uuid}"

    def status(self, ids: Sequence[str]) -> dict[str, JobState]:
        return dict.fromkeys(ids, JobState.RUNNING)

    def cancel(self, ids: Sequence[str]) -> dict[str, bool]:
        return dict.fromkeys(ids, False)

    def capacity(self) -> int | None:
        return None


def test_two_schedulers_claim_each_task_once(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.create_database("claim")
    submitted: list[str] = []
    lock = threading.Lock()
    contexts = []
    for name in ("a", "b"):
        settings = Settings(data_dir=tmp_path / name, database_url=url)
        ctx = build_context(settings)
        contexts.append(
            ServerContext(
                settings,
                ctx.db,
                LocalBackend(tmp_path / "blobs"),
                CountingExecutor(submitted, lock),
            )
        )
    with contexts[0].db.session() as s:
        user, _ = create_user(s, "u")
        uuids = [str(uuid.uuid4()) for _ in range(40)]
        for u in uuids:
            s.add(Task(uuid=u, owner_id=user.id, name="t", command="true", executor="counting"))
    start = threading.Barrier(2)

    def dispatch(ctx: ServerContext) -> None:
        start.wait()
        for _ in range(5):
            Scheduler(ctx).tick()

    threads = [threading.Thread(target=dispatch, args=(ctx,)) for ctx in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(submitted) == sorted(uuids), "each task started exactly once"
    with contexts[1].db.session() as s:
        states = {t.uuid: (t.state, t.executor_id) for t in s.query(Task)}
    assert all(st == ("FullyDispatched", f"job-{u}") for u, st in states.items())
    for ctx in contexts:
        ctx.db.dispose()
