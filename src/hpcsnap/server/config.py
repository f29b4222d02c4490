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
    #: An agent silent for this long is declared lost and its task fails.
    agent_timeout: int = field(default=60, metadata={"env": "HPCSNAP_AGENT_TIMEOUT"})
    #: Unprivileged user that runs task commands when the server runs as root.
    task_user: str = field(default="hpcsnap-task", metadata={"env": "HPCSNAP_TASK_USER"})

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
