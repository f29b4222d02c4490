"""The server's long-lived objects, built once at start-up and shared by every request."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hpcsnap.blobstore import Backend, ContentStore, LocalBackend
from hpcsnap.executors.base import Executor
from hpcsnap.executors.local import LocalExecutor
from hpcsnap.server.bucketindex import namespace
from hpcsnap.server.config import Settings
from hpcsnap.server.db import Database


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    backend: Backend
    executor: Executor

    def store(self, owner_id: int) -> ContentStore:
        """The content store of one user's blobs."""
        return ContentStore(self.backend, namespace(owner_id))

    @property
    def job_mode(self) -> str:
        """``namespace``: tasks see their directory at the literal path /job (root only);
        ``direct``: tasks run in their real working directory, named by ``JOB_DIR``."""
        return "namespace" if os.geteuid() == 0 else "direct"


def build_context(settings: Settings) -> ServerContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    db = Database(settings.db_url)
    db.upgrade()
    backend = LocalBackend(settings.blob_dir)
    executor = LocalExecutor(
        work_dir=settings.work_dir, log_dir=settings.data_dir / "agents", slots=settings.slots
    )
    return ServerContext(settings=settings, db=db, backend=backend, executor=executor)
