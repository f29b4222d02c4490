"""The hpcsnap Python SDK: an httpx client for the ``/v1`` API.

It accepts code written for the qarnot SDK's snapshot features with only the import changed::

    import hpcsnap

    conn = hpcsnap.Connection(client_token="hps_...", cluster_url="http://127.0.0.1:8642")
    task = conn.retrieve_task("TASK-UUID")
    snap_id = task.instant()
    snap = task.wait_snapshot(snap_id)
    snap.download("snap/")

This package imports nothing from the server side (only httpx and the standard library).
Every public name is re-exported by :mod:`hpcsnap`; errors are drawn as one tree in
:mod:`hpcsnap.sdk.errors`.
"""

from hpcsnap.sdk.bucket import Bucket, BucketFile
from hpcsnap.sdk.config import DEFAULT_URL
from hpcsnap.sdk.connection import Connection
from hpcsnap.sdk.contents import FileChange, ModeChange, SnapshotDiff
from hpcsnap.sdk.errors import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    HpcsnapError,
    MissingBucketError,
    MissingFileError,
    MissingSnapshotError,
    MissingTaskError,
    NotFoundError,
    ServerError,
    ServerUnreachableError,
    SnapshotNotReadyError,
    TaskNotRunningError,
    TaskNotSubmittedError,
    TaskSubmittedError,
    TransferError,
    UnauthorizedError,
    WaitTimeoutError,
)
from hpcsnap.sdk.events import TaskEvent
from hpcsnap.sdk.progress import ProgressHook
from hpcsnap.sdk.snapshot import Snapshot, Verification
from hpcsnap.sdk.states import SnapshotStatus, TaskState
from hpcsnap.sdk.task import Task

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "BadRequestError",
    "Bucket",
    "BucketFile",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "FileChange",
    "ForbiddenError",
    "HpcsnapError",
    "MissingBucketError",
    "MissingFileError",
    "MissingSnapshotError",
    "MissingTaskError",
    "ModeChange",
    "NotFoundError",
    "ProgressHook",
    "ServerError",
    "ServerUnreachableError",
    "Snapshot",
    "SnapshotDiff",
    "SnapshotNotReadyError",
    "SnapshotStatus",
    "Task",
    "TaskEvent",
    "TaskNotRunningError",
    "TaskNotSubmittedError",
    "TaskState",
    "TaskSubmittedError",
    "TransferError",
    "UnauthorizedError",
    "Verification",
    "WaitTimeoutError",
]
