"""hpcsnap: run long HPC simulations as tasks, with incremental snapshots of their /job directory.

This package is the Python SDK (``hpcsnap.Connection``, ``Task``, ``Bucket``, ``Snapshot`` and
the errors of :mod:`hpcsnap.sdk.errors`); code written for the qarnot SDK's snapshots runs with
``import hpcsnap as qarnot``.

Layers, each importing only those below it::

    blobstore  <-  snapshot  <-  agent  <-  executors / server
    sdk        <-  cli
"""

__version__ = "0.1.0"

from hpcsnap.sdk import (
    DEFAULT_URL,
    ApiError,
    BadRequestError,
    Bucket,
    BucketFile,
    ConfigurationError,
    ConflictError,
    Connection,
    FileChange,
    ForbiddenError,
    HpcsnapError,
    MissingBucketError,
    MissingFileError,
    MissingSnapshotError,
    MissingTaskError,
    ModeChange,
    NotFoundError,
    ProgressHook,
    ServerError,
    ServerUnreachableError,
    Snapshot,
    SnapshotDiff,
    SnapshotNotReadyError,
    SnapshotStatus,
    Task,
    TaskEvent,
    TaskNotRunningError,
    TaskNotSubmittedError,
    TaskState,
    TaskSubmittedError,
    TransferError,
    UnauthorizedError,
    Verification,
    WaitTimeoutError,
)

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
    "__version__",
]
