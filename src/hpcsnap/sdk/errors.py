"""Every error the SDK raises, in one hierarchy::

    HpcsnapError                       base class: ``except hpcsnap.HpcsnapError`` catches them all
    ├── ConfigurationError             no token, bad URL, unreadable config file
    ├── ServerUnreachableError         no answer from the server (refused, DNS, time-out)
    ├── TransferError                  a download or upload was cut short or arrived corrupted
    ├── TaskSubmittedError             setting an option that is fixed once a task is submitted
    │                                  (also an AttributeError, like the qarnot SDK's)
    ├── TaskNotSubmittedError          an operation that needs a submitted task (instant, wait...)
    ├── SnapshotNotReadyError          downloading a snapshot that is not (or never will be) there
    ├── WaitTimeoutError               a wait gave up at its time-out (also a TimeoutError)
    └── ApiError                       the server answered with an error; ``.status_code``,
        │                              ``.message`` (the server's own words)
        ├── BadRequestError            400: an invalid value (regex, interval, name...); also
        │                              a ValueError, like the qarnot SDK's
        ├── UnauthorizedError          401: missing, wrong or revoked token
        ├── ForbiddenError             403: not allowed
        ├── NotFoundError              404
        │   ├── MissingTaskError       no such task (or not yours)
        │   ├── MissingBucketError     no such bucket (or not yours)
        │   ├── MissingSnapshotError   no such snapshot of that task
        │   └── MissingFileError       no such key in the bucket
        ├── ConflictError              409: the request does not fit the current state
        │   └── TaskNotRunningError    snapshot, abort or periodic change of a task that is not
        │                              running (or has ended)
        └── ServerError                5xx: the server failed; its log says why

Lower-level errors (``httpx``, ``OSError`` while reading a config file) are turned into these at
the boundary with ``raise ... from exc``, so the original stays reachable as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "HpcsnapError",
    "MissingBucketError",
    "MissingFileError",
    "MissingSnapshotError",
    "MissingTaskError",
    "NotFoundError",
    "ServerError",
    "ServerUnreachableError",
    "SnapshotNotReadyError",
    "TaskNotRunningError",
    "TaskNotSubmittedError",
    "TaskSubmittedError",
    "TransferError",
    "UnauthorizedError",
    "WaitTimeoutError",
]


class HpcsnapError(Exception):
    """Base class of every error raised by the hpcsnap SDK."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(HpcsnapError):
    """The connection cannot be set up: no token, a malformed URL, an unreadable config file."""


class ServerUnreachableError(HpcsnapError):
    """The server did not answer (connection refused, unknown host, time-out)."""


class TransferError(HpcsnapError):
    """A file transfer was cut short or its content does not match what the server holds."""


class TaskSubmittedError(HpcsnapError, AttributeError):
    """An option that is fixed at submission was set on a task that is already submitted."""


class TaskNotSubmittedError(HpcsnapError):
    """The operation needs a submitted task; call ``submit()`` first."""


class SnapshotNotReadyError(HpcsnapError):
    """The snapshot has no files to download: it is still running, or it failed."""


class WaitTimeoutError(HpcsnapError, TimeoutError):
    """A wait reached its time-out before what it waited for happened."""


class ApiError(HpcsnapError):
    """The server refused the request; ``message`` is the server's explanation."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class BadRequestError(ApiError, ValueError):
    """400: a value in the request is invalid (the message names it)."""


class UnauthorizedError(ApiError):
    """401: the token is missing, wrong or revoked."""


class ForbiddenError(ApiError):
    """403: the token is valid but not allowed to do this."""


class NotFoundError(ApiError):
    """404: the object does not exist, or belongs to another user."""


class MissingTaskError(NotFoundError):
    """No such task (another user's task is reported the same way)."""


class MissingBucketError(NotFoundError):
    """No such bucket (another user's bucket is reported the same way)."""


class MissingSnapshotError(NotFoundError):
    """No such snapshot for that task."""


class MissingFileError(NotFoundError):
    """No such key in the bucket."""


class ConflictError(ApiError):
    """409: the request does not fit the object's current state."""


class TaskNotRunningError(ConflictError):
    """The task is not running (not started yet, or ended), so this cannot be done now."""


class ServerError(ApiError):
    """5xx: the server failed while handling the request."""
