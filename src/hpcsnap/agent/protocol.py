"""What the server and the agent say to each other: states and message shapes (pydantic).

The server imports this module; the agent owns it (layers import downward only).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TaskState(enum.StrEnum):
    """A task's state, with Qarnot's exact names."""

    #: Accepted, waiting for a free slot on the executor.
    SUBMITTED = "Submitted"
    #: Handed to the executor; its agent is starting (queued on Slurm).
    DISPATCHED = "FullyDispatched"
    #: Inputs staged, the command is running in /job.
    EXECUTING = "FullyExecuting"
    #: The command ended; the agent is uploading its results.
    UPLOADING = "UploadingResults"
    #: An abort was requested and is being carried out.
    PENDING_CANCEL = "PendingCancel"
    #: The command exited 0 and its results were uploaded.
    SUCCESS = "Success"
    #: The command failed (non-zero exit, wall-time limit, lost agent, staging error).
    FAILURE = "Failure"
    #: Aborted by its owner.
    CANCELLED = "Cancelled"


TERMINAL_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.CANCELLED})
#: States in which the command may be running (snapshots are accepted).
RUNNING_STATES = frozenset({TaskState.EXECUTING})
#: States in which an agent is (or should be) alive.
ACTIVE_STATES = frozenset(
    {TaskState.DISPATCHED, TaskState.EXECUTING, TaskState.UPLOADING, TaskState.PENDING_CANCEL}
)


class SnapshotStatus(enum.StrEnum):
    TRIGGERED = "Triggered"
    IN_PROGRESS = "InProgress"
    SUCCESS = "Success"
    FAILURE = "Failure"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FileEntry(_Model):
    """One captured file as the agent reports it (bucket key relative to the capture root)."""

    path: str
    digest: str
    size: int
    mtime_ns: int


class ResourceFile(_Model):
    """One file to stage into /job before the command starts."""

    path: str
    digest: str
    size: int
    mtime_ns: int


class SnapshotRequest(_Model):
    """A snapshot the agent is asked to take (manual, or from inside the job)."""

    id: str
    kind: Literal["manual", "job", "periodic", "final"]
    label: str | None = None
    whitelist: str | None = None
    blacklist: str | None = None
    bucket: str | None = None
    bucket_prefix: str | None = Field(default=None, alias="bucketPrefix")
    directory: str


class PeriodicConfig(_Model):
    interval: int = 0
    whitelist: str | None = None
    blacklist: str | None = None
    bucket: str | None = None
    bucket_prefix: str | None = Field(default=None, alias="bucketPrefix")
    version: int = 0


class AgentSpec(_Model):
    """Everything the agent needs to run its task."""

    uuid: str
    command: str
    environment: dict[str, str]
    resources: list[ResourceFile]
    results_whitelist: str | None = None
    results_blacklist: str | None = None
    upload_results_on_cancellation: bool = False
    include_unchanged_inputs: bool = False
    wall_time_limit: int | None = None
    storage: dict[str, str]
    namespace: str
    periodic: PeriodicConfig
    snapshot_whitelist: str | None = None
    snapshot_blacklist: str | None = None
    soft_limit: int | None = None
    hard_limit: int | None = None
    keep_workdir: bool = False
    store_ahead: bool = True
    task_user: str | None = None
    #: Manifests of the snapshots to restore into /job before the resources, oldest first.
    resume_manifests: list[str] = []
    #: Set when the snapshot to restore is gone: the agent fails the task with this message.
    resume_error: str | None = None


class ShellRequest(_Model):
    """A user waits for a shell in the task (``hpcsnap shell``): the agent opens its end of the
    relay at ``/v1/agent/tasks/<uuid>/shell/<id>`` (see :mod:`hpcsnap.agent.shell`)."""

    id: str
    task_name: str
    tty: bool = False
    cols: int = 80
    rows: int = 24
    term: str | None = None
    command: str | None = None


class AgentEvents(_Model):
    """Answer to the agent's long-poll: what it should do now."""

    abort: bool = False
    periodic: PeriodicConfig
    snapshots: list[SnapshotRequest] = []
    deleted: bool = False
    shells: list[ShellRequest] = []


class StateReport(_Model):
    state: TaskState
    exit_code: int | None = None
    error: str | None = None
    job_mode: str | None = None


class LogReport(_Model):
    stdout: str = ""
    stderr: str = ""


class ResultsCommit(_Model):
    files: list[FileEntry]
    warnings: list[str] = []


class SnapshotProgress(_Model):
    status: SnapshotStatus
    size_to_upload: int = 0
    transferred_size: int = 0
    files_total: int = 0
    files_done: int = 0
    error: str | None = None


class SnapshotCommit(_Model):
    """A finished capture: the server publishes all its keys in one transaction.

    With ``base_files`` set, the commit is a *delta* over ``parent_id`` (the agent's previous
    successful snapshot): ``files`` holds only the keys that are new or changed since, and
    ``removed`` the parent's keys that are gone. The server copies the parent's keys (it checks
    that there are exactly ``base_files`` of them, else answers 409 ``baseChanged`` and the
    agent sends every key), drops ``removed`` and publishes ``files`` over the rest, so a
    commit costs what changed, not the size of the tree.
    """

    files: list[FileEntry]
    manifest_digest: str
    parent_id: str | None = None
    base_files: int | None = Field(default=None, ge=0)
    removed: list[str] = []
    warnings: list[str] = []
    size_to_upload: int = 0
    files_total: int = 0
    files_reused: int = 0
    files_read: int = 0
    bytes_total: int = 0
    bytes_stored: int = 0
    duration_ms: int = 0
    skipped_ticks: int = 0


class NewSnapshot(_Model):
    """A snapshot the agent starts on its own (periodic tick, wall-time final capture)."""

    kind: Literal["periodic", "final", "job"]
    label: str | None = None
    whitelist: str | None = None
    blacklist: str | None = None
    bucket: str | None = None
    bucket_prefix: str | None = Field(default=None, alias="bucketPrefix")


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)
