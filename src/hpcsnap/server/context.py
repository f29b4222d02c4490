"""The server's long-lived objects, built once at start-up and shared by every request."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from hpcsnap.blobstore import Backend, BlobError, ContentStore, LocalBackend, RetryingBackend
from hpcsnap.executors.base import Executor
from hpcsnap.executors.local import LocalExecutor
from hpcsnap.executors.sbatch import SlurmOptionError, SlurmOptions
from hpcsnap.executors.slurm import SlurmExecutor
from hpcsnap.server.bucketindex import namespace
from hpcsnap.server.config import Settings
from hpcsnap.server.db import Database

#: Key of the PostgreSQL advisory lock held while migrating (several servers may start at once).
_MIGRATION_LOCK = 0x6870_736E_6170  # "hpsnap"


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


def s3_description(settings: Settings) -> dict[str, str]:
    """The S3 blob store of ``HPCSNAP_STORAGE=s3://bucket[/prefix]`` and ``HPCSNAP_S3_*``
    (falling back to the standard ``AWS_*`` variables)."""
    bucket, _, prefix = settings.storage.removeprefix("s3://").partition("/")
    env = os.environ
    desc = {
        "kind": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "endpoint": settings.s3_endpoint
        or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL")
        or "",
        "region": settings.s3_region
        or env.get("AWS_REGION")
        or env.get("AWS_DEFAULT_REGION")
        or "",
        "access_key": settings.s3_access_key or env.get("AWS_ACCESS_KEY_ID") or "",
        "secret_key": settings.s3_secret_key or env.get("AWS_SECRET_ACCESS_KEY") or "",
        "session_token": env.get("AWS_SESSION_TOKEN", "") if not settings.s3_access_key else "",
    }
    return {k: v for k, v in desc.items() if v or k == "prefix"}


def open_storage(settings: Settings) -> Backend:
    """The blob store ``settings.storage`` names; an S3 bucket is created if missing."""
    if settings.storage in ("", "local"):
        return LocalBackend(settings.blob_dir)
    if settings.storage.startswith("s3://"):
        from hpcsnap.blobstore.s3 import S3Backend  # boto3 is loaded only when S3 is used

        try:
            inner = S3Backend.from_description(s3_description(settings))
            inner.ensure_bucket()
        except (ValueError, BlobError) as exc:
            raise SystemExit(f"HPCSNAP_STORAGE={settings.storage}: {exc}") from None
        return RetryingBackend(inner)
    raise SystemExit(f"HPCSNAP_STORAGE={settings.storage!r}: use 'local' or 's3://bucket[/prefix]'")


def slurm_options(settings: Settings) -> SlurmOptions:
    return SlurmOptions(
        partition=settings.slurm_partition,
        account=settings.slurm_account,
        qos=settings.slurm_qos,
        time_limit=settings.slurm_time_limit,
        cpus=settings.slurm_cpus,
        memory=settings.slurm_memory,
        signal_grace=settings.slurm_signal_grace,
        extra_args=tuple(shlex.split(settings.slurm_extra_args or "")),
    )


def open_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor`` names (``local`` or ``slurm``)."""
    if settings.executor == "local":
        return LocalExecutor(
            work_dir=settings.work_dir, log_dir=settings.data_dir / "agents", slots=settings.slots
        )
    if settings.executor == "slurm":
        try:
            options = slurm_options(settings)
        except SlurmOptionError as exc:
            raise SystemExit(f"Slurm executor: {exc}") from None
        return SlurmExecutor(
            options=options,
            work_dir=Path(settings.slurm_work_dir or settings.work_dir),
            log_dir=Path(settings.slurm_log_dir or settings.data_dir / "agents"),
            python=settings.slurm_python,
        )
    raise SystemExit(f"HPCSNAP_EXECUTOR={settings.executor!r}: use 'local' or 'slurm'")


def _upgrade(db: Database) -> None:
    """Migrate the schema; on PostgreSQL under an advisory lock, so that servers starting
    together against one database migrate it once, one after the other."""
    if db.engine.dialect.name != "postgresql":
        db.upgrade()
        return
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        try:
            db.upgrade()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()


def build_context(settings: Settings) -> ServerContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    executor = open_executor(settings)
    db = Database(settings.db_url)
    _upgrade(db)
    backend = open_storage(settings)
    return ServerContext(settings=settings, db=db, backend=backend, executor=executor)
