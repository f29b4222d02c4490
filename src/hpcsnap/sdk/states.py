"""Task states and snapshot statuses, with the names the API (and Qarnot's) uses."""

from __future__ import annotations

import enum

__all__ = ["SnapshotStatus", "TaskState"]


class TaskState(enum.StrEnum):
    """A task's state. Members are strings: ``task.state == "Success"`` works too."""

    #: Built on the client, not submitted yet.
    UNSUBMITTED = "UnSubmitted"
    #: Accepted, waiting for a free slot.
    SUBMITTED = "Submitted"
    #: Handed to the executor; its agent is starting.
    DISPATCHED = "FullyDispatched"
    #: Inputs staged, the command runs in /job: snapshots are accepted.
    EXECUTING = "FullyExecuting"
    #: The command ended; its results are being uploaded.
    UPLOADING = "UploadingResults"
    #: An abort was requested and is being carried out.
    PENDING_CANCEL = "PendingCancel"
    #: The command exited 0 and its results were uploaded.
    SUCCESS = "Success"
    #: The command failed (non-zero exit, wall-time limit, lost agent, staging error).
    FAILURE = "Failure"
    #: Aborted by its owner.
    CANCELLED = "Cancelled"
    #: Deleted with ``task.delete()`` (client-side only).
    DELETED = "Deleted"

    @property
    def is_final(self) -> bool:
        """True for ``Success``, ``Failure``, ``Cancelled`` (and ``Deleted``)."""
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {TaskState.SUCCESS, TaskState.FAILURE, TaskState.CANCELLED, TaskState.DELETED}
)


class SnapshotStatus(enum.StrEnum):
    """A snapshot's status; ``Success`` and ``Failure`` are final."""

    #: Requested; the agent has not started it yet.
    TRIGGERED = "Triggered"
    #: Being captured (``transferredSize`` grows towards ``sizeToUpload``).
    IN_PROGRESS = "InProgress"
    #: Complete: every file is in the bucket, under the snapshot's directory.
    SUCCESS = "Success"
    #: Failed (its ``error`` says why); earlier snapshots are untouched.
    FAILURE = "Failure"

    @property
    def is_completed(self) -> bool:
        return self in (SnapshotStatus.SUCCESS, SnapshotStatus.FAILURE)

    @classmethod
    def parse(cls, value: object) -> SnapshotStatus:
        """The status named by ``value`` in any case; unknown or missing is ``Triggered``."""
        text = str(value or "").lower()
        for member in cls:
            if member.value.lower() == text:
                return member
        return cls.TRIGGERED
