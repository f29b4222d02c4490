"""Server settings: command-line options over environment variables over embedded defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8642
GiB = 1024**3


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False}


def _env_bool(name: str) -> bool:
    raw = os.environ[name]
    try:
        return _BOOL[raw.strip().lower()]
    except KeyError:
        raise SystemExit(f"{name} must be 1 or 0 (true or false), got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything the server and the agents it starts need to know.

    Each field can be set by the environment variable named in its ``metadata``.
    """

    data_dir: Path = field(default=Path("hpcsnap-data"), metadata={"env": "HPCSNAP_DATA_DIR"})
    host: str = field(default="127.0.0.1", metadata={"env": "HPCSNAP_HOST"})
    port: int = field(default=DEFAULT_PORT, metadata={"env": "HPCSNAP_PORT"})
    database_url: str | None = field(default=None, metadata={"env": "HPCSNAP_DATABASE_URL"})
    #: URL agents (and the web UI's links) use to reach this server; defaults to http://host:port.
    public_url: str | None = field(default=None, metadata={"env": "HPCSNAP_PUBLIC_URL"})
    executor: str = field(default="local", metadata={"env": "HPCSNAP_EXECUTOR"})
    #: Local executor: how many tasks run at once (default: CPU count).
    slots: int = field(default=os.cpu_count() or 1, metadata={"env": "HPCSNAP_SLOTS"})
    min_snapshot_interval: int = field(default=1, metadata={"env": "HPCSNAP_MIN_SNAPSHOT_INTERVAL"})
    snapshot_soft_limit: int = field(default=GiB, metadata={"env": "HPCSNAP_SNAPSHOT_SOFT_LIMIT"})
    snapshot_hard_limit: int | None = field(
        default=None, metadata={"env": "HPCSNAP_SNAPSHOT_HARD_LIMIT"}
    )
    #: Let agents store ahead, on idle CPU, the files a job has left alone between two periodic
    #: snapshots (see README.md, "Gentle on the job"); 0 makes each tick's capture do it all.
    store_ahead: bool = field(default=True, metadata={"env": "HPCSNAP_STORE_AHEAD"})
    #: Keep each ended task's working directory (its ``/job``) on its node instead of deleting
    #: it: to inspect what a task left, or to measure without mass deletions (bench/README.md).
    keep_workdirs: bool = field(default=False, metadata={"env": "HPCSNAP_KEEP_WORKDIRS"})
    #: An agent silent for this long is declared lost and its task fails.
    agent_timeout: int = field(default=60, metadata={"env": "HPCSNAP_AGENT_TIMEOUT"})
    #: How often (milliseconds) a waiting agent's long-poll re-reads the database for what
    #: another server process wrote; what this process writes wakes it at once.
    peer_poll_ms: int = field(default=1000, metadata={"env": "HPCSNAP_PEER_POLL_MS"})
    #: Unprivileged user that runs task commands when the server runs as root.
    task_user: str = field(default="hpcsnap-task", metadata={"env": "HPCSNAP_TASK_USER"})
    #: Where blobs live: ``local`` (``<data dir>/blobs``) or ``s3://bucket[/prefix]``.
    storage: str = field(default="local", metadata={"env": "HPCSNAP_STORAGE"})
    #: S3 endpoint URL (default: AWS, or ``AWS_ENDPOINT_URL``).
    s3_endpoint: str | None = field(default=None, metadata={"env": "HPCSNAP_S3_ENDPOINT"})
    s3_region: str | None = field(default=None, metadata={"env": "HPCSNAP_S3_REGION"})
    #: S3 credentials (default: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, else boto3's
    #: chain on every machine). Explicit ones are handed to agents in their task spec.
    s3_access_key: str | None = field(default=None, metadata={"env": "HPCSNAP_S3_ACCESS_KEY"})
    s3_secret_key: str | None = field(
        default=None, repr=False, metadata={"env": "HPCSNAP_S3_SECRET_KEY"}
    )
    #: Slurm executor: sbatch options of every agent job (unset: Slurm's defaults).
    slurm_partition: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_PARTITION"})
    slurm_account: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_ACCOUNT"})
    slurm_qos: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_QOS"})
    slurm_time_limit: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_TIME_LIMIT"})
    slurm_cpus: int | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_CPUS"})
    slurm_memory: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_MEMORY"})
    #: Seconds before Slurm's time limit at which the agent takes a final snapshot.
    slurm_signal_grace: int = field(default=120, metadata={"env": "HPCSNAP_SLURM_SIGNAL_GRACE"})
    #: More sbatch options, shell-quoted, e.g. ``--constraint=ib --gres=gpu:1``.
    slurm_extra_args: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_EXTRA_ARGS"})
    #: Python that runs the agent on the compute nodes (default: this server's).
    slurm_python: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_PYTHON"})
    #: Where agents keep task directories on the nodes (default: ``<data dir>/work``).
    slurm_work_dir: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_WORK_DIR"})
    #: Where Slurm writes the agents' output (default: ``<data dir>/agents``).
    slurm_log_dir: str | None = field(default=None, metadata={"env": "HPCSNAP_SLURM_LOG_DIR"})

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then environment variables, then the non-None ``overrides``."""
        values: dict[str, Any] = {}
        for name, f in cls.__dataclass_fields__.items():
            env = f.metadata.get("env")
            if env and os.environ.get(env):
                raw = os.environ[env]
                if f.type in ("int", "int | None"):
                    values[name] = _env_int(env, None)
                elif f.type == "bool":
                    values[name] = _env_bool(env)
                elif name == "data_dir":
                    values[name] = Path(raw)
                else:
                    values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        return replace(settings, data_dir=settings.data_dir.resolve())

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'hpcsnap.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def work_dir(self) -> Path:
        """Where the local executor keeps each task's working directory."""
        return self.data_dir / "work"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"
