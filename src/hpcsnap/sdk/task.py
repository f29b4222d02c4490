"""Tasks: build one, submit it, watch it, snapshot it, get its results.

A task built with :meth:`Connection.create_task` is configured locally (constants, resources,
filters...) and sent by :meth:`Task.submit`. Options that the server fixes at submission
(constants, resources, results bucket and filters, ``upload_results_on_cancellation``) raise
:class:`~hpcsnap.TaskSubmittedError` when set afterwards. Snapshot settings are the exception:
``snapshot_whitelist``/``snapshot_blacklist`` and :meth:`Task.snapshot` change a submitted task's
periodic snapshots on the server at once.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from hpcsnap.sdk import _http, _poll, contents
from hpcsnap.sdk.bucket import Bucket, download_files
from hpcsnap.sdk.errors import (
    SnapshotNotReadyError,
    TaskNotRunningError,
    TaskNotSubmittedError,
    TaskSubmittedError,
    WaitTimeoutError,
)
from hpcsnap.sdk.events import TaskEvent, iter_events
from hpcsnap.sdk.progress import ProgressHook, report
from hpcsnap.sdk.shell import ShellSession
from hpcsnap.sdk.snapshot import Snapshot, Verification, parse_date
from hpcsnap.sdk.states import FINAL_STATES, TaskState

if TYPE_CHECKING:
    import datetime as dt

    from hpcsnap.sdk.connection import Connection
    from hpcsnap.sdk.contents import SnapshotDiff

__all__ = ["Task"]

#: How long a fetched task is trusted before a property like ``state`` fetches it again.
CACHE_SECONDS = 1.0
_NOT_RUNNING = {403: TaskNotRunningError, 409: TaskNotRunningError}

BucketRef = Bucket | str


def _state(value: Any) -> str:
    try:
        return TaskState(value)
    except ValueError:
        return str(value)


class _Constants(dict[str, str]):
    """The task's constants (``DOCKER_CMD`` is the command); read-only once submitted."""

    def __init__(self, task: Task, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self._task = task

    def _check(self) -> None:
        self._task._check_unsubmitted("constants")

    def __setitem__(self, key: str, value: str) -> None:
        self._check()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._check()
        super().__delitem__(key)

    def clear(self) -> None:
        self._check()
        super().clear()

    def pop(self, *args: Any) -> Any:
        self._check()
        return super().pop(*args)

    def popitem(self) -> tuple[str, str]:
        self._check()
        return super().popitem()

    def setdefault(self, key: str, default: str = "") -> str:  # type: ignore[override]
        self._check()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: str) -> None:
        self._check()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> _Constants:  # type: ignore[override,misc]
        self._check()
        super().update(other)
        return self


class Task:
    """A task: a shell command run once in its own ``/job``, with snapshots.

    Build one with :meth:`Connection.create_task`, get existing ones with
    :meth:`Connection.retrieve_task` or :meth:`Connection.tasks`.
    """

    def __init__(
        self,
        connection: Connection,
        name: str,
        profile: str = "docker-batch",
        instancecount: int = 1,
        *,
        shortname: str | None = None,
    ) -> None:
        self._connection = connection
        self._uuid: str | None = None
        self._name = name
        self._profile = profile
        self._instancecount = instancecount
        self._shortname = shortname
        self._constants = _Constants(self)
        self._resources: list[Bucket] = []
        self._results: Bucket | None = None
        self._snapshot_whitelist: str | None = None
        self._snapshot_blacklist: str | None = None
        self._results_whitelist: str | None = None
        self._results_blacklist: str | None = None
        self._upload_results_on_cancellation: bool | None = None
        self._snapshot_interval = 0
        self._snapshot_retention: int | None = None
        self._snapshot_bucket: str | None = None
        self._snapshot_bucket_prefix: str | None = None
        self._wall_time_limit: int | str | None = None
        self._include_unchanged_inputs = False
        self._tags: list[str] = []
        self._resume_from: dict[str, str] | None = None
        self._state: str = TaskState.UNSUBMITTED
        self._json: dict[str, Any] = {}
        self._fetched = 0.0

    @classmethod
    def from_json(cls, connection: Connection, data: dict[str, Any]) -> Task:
        """A submitted task from the server's JSON (as ``GET /v1/tasks/{uuid}`` returns it)."""
        task = cls(connection, str(data.get("name") or ""), str(data.get("profile") or ""))
        task._apply(data)
        return task

    def __repr__(self) -> str:
        return f"Task(uuid={self._uuid!r}, name={self._name!r}, state={str(self._state)!r})"

    # ------------------------------------------------------------------ plumbing

    @property
    def _http(self) -> _http.Http:
        return self._connection._http

    def _url(self, *segments: str) -> str:
        return _http.path("tasks", self._require_uuid(), *segments)

    def _require_uuid(self) -> str:
        if self._uuid is None:
            raise TaskNotSubmittedError(
                f"task {self._name!r} is not submitted: call submit() first"
            )
        return self._uuid

    def _check_unsubmitted(self, attribute: str) -> None:
        if self._uuid is not None:
            raise TaskSubmittedError(
                f"cannot set {attribute} of task {self._uuid}: it is fixed once the task is "
                f"submitted (set it before submit(); snapshot filters and the periodic interval "
                f"are the ones that can change while a task runs)"
            )

    def _apply(self, data: dict[str, Any]) -> None:
        """Take the server's view of the task."""
        self._json = dict(data)
        self._fetched = time.monotonic()
        self._uuid = str(data["uuid"])
        self._name = str(data.get("name") or self._name)
        self._shortname = data.get("shortname")
        self._profile = str(data.get("profile") or self._profile)
        self._instancecount = int(data.get("instanceCount") or 1)
        self._state = _state(data.get("state"))
        constants = [
            (str(c["key"]), str(c.get("value") or "")) for c in data.get("constants") or []
        ]
        dict.clear(self._constants)
        dict.update(self._constants, constants)
        self._resources = [
            self._resource_from_json(r) for r in data.get("advancedResourceBuckets") or []
        ]
        result = data.get("resultBucket")
        self._results = Bucket(self._connection, str(result)) if result else None
        self._snapshot_whitelist = data.get("snapshotWhitelist")
        self._snapshot_blacklist = data.get("snapshotBlacklist")
        self._results_whitelist = data.get("resultsWhitelist")
        self._results_blacklist = data.get("resultsBlacklist")
        self._upload_results_on_cancellation = data.get("uploadResultsOnCancellation")
        self._snapshot_interval = int(data.get("snapshotInterval") or 0)
        self._snapshot_retention = data.get("snapshotRetention")
        self._snapshot_bucket = data.get("snapshotBucket")
        self._snapshot_bucket_prefix = data.get("snapshotBucketPrefix")
        self._wall_time_limit = data.get("wallTimeLimit")
        self._tags = list(data.get("tags") or [])
        self._resume_from = data.get("resumeFrom")

    def _resource_from_json(self, ref: dict[str, Any]) -> Bucket:
        prefix = ((ref.get("filtering") or {}).get("prefixFiltering") or {}).get("prefix") or ""
        return Bucket(self._connection, str(ref.get("bucketName")), prefix=prefix)

    def _fresh(self) -> None:
        """Fetch the task again if the cached copy is old and could still change."""
        if self._uuid is None or self._state in FINAL_STATES:
            return
        if time.monotonic() - self._fetched >= CACHE_SECONDS:
            self.update()

    def _bucket(self, ref: BucketRef) -> Bucket:
        return ref if isinstance(ref, Bucket) else Bucket(self._connection, ref)

    # ------------------------------------------------------------------ identity and state

    @property
    def uuid(self) -> str | None:
        """The task's id (None before it is submitted)."""
        return self._uuid

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._check_unsubmitted("name")
        self._name = value

    @property
    def shortname(self) -> str | None:
        return self._shortname

    @property
    def profile(self) -> str:
        return self._profile

    @property
    def instancecount(self) -> int:
        return self._instancecount

    @property
    def state(self) -> str:
        """The task's state (a :class:`TaskState` when known), fetched again if over 1 s old."""
        self._fresh()
        return self._state

    @property
    def previous_state(self) -> str | None:
        self._fresh()
        prev = self._json.get("previousState")
        return _state(prev) if prev else None

    @property
    def creation_date(self) -> dt.datetime | None:
        return parse_date(self._json.get("creationDate"))

    @property
    def end_date(self) -> dt.datetime | None:
        self._fresh()
        return parse_date(self._json.get("endDate"))

    @property
    def exit_code(self) -> int | None:
        """The command's exit code, once it ended."""
        self._fresh()
        code = self._json.get("exitCode")
        return int(code) if code is not None else None

    @property
    def errors(self) -> list[str]:
        """Why the task failed, if it did (messages)."""
        self._fresh()
        return [str(e.get("message", e)) for e in self._json.get("errors") or []]

    @property
    def results_count(self) -> int:
        self._fresh()
        return int(self._json.get("resultsCount") or 0)

    @property
    def raw(self) -> dict[str, Any]:
        """The server's JSON for this task, as last fetched."""
        return dict(self._json)

    # ------------------------------------------------------------------ configuration

    @property
    def constants(self) -> dict[str, str]:
        """Environment variables of the command; ``DOCKER_CMD`` is the command itself."""
        return self._constants

    @constants.setter
    def constants(self, value: dict[str, str]) -> None:
        self._check_unsubmitted("constants")
        self._constants = _Constants(self, value.items())

    @property
    def command(self) -> str | None:
        """The shell command (the constant ``DOCKER_CMD``)."""
        return self._constants.get("DOCKER_CMD")

    @command.setter
    def command(self, value: str) -> None:
        self._constants["DOCKER_CMD"] = value

    @property
    def resources(self) -> list[Bucket]:
        """Buckets whose files are placed in /job before the command starts (later ones win).

        Before submission this is the list itself (``task.resources.append(b)`` works); after,
        a copy.
        """
        return self._resources if self._uuid is None else list(self._resources)

    @resources.setter
    def resources(self, value: Iterable[BucketRef]) -> None:
        self._check_unsubmitted("resources")
        self._resources = [self._bucket(b) for b in value]

    @property
    def results(self) -> Bucket | None:
        """The bucket receiving the results (and, by default, the snapshots)."""
        return self._results

    @results.setter
    def results(self, value: BucketRef | None) -> None:
        self._check_unsubmitted("results")
        self._results = self._bucket(value) if value is not None else None

    @property
    def results_whitelist(self) -> str | None:
        """Regex: only matching paths (relative to /job) are uploaded as results."""
        return self._results_whitelist

    @results_whitelist.setter
    def results_whitelist(self, value: str | None) -> None:
        self._check_unsubmitted("results_whitelist")
        self._results_whitelist = value

    @property
    def results_blacklist(self) -> str | None:
        """Regex: matching paths are left out of the results."""
        return self._results_blacklist

    @results_blacklist.setter
    def results_blacklist(self, value: str | None) -> None:
        self._check_unsubmitted("results_blacklist")
        self._results_blacklist = value

    @property
    def snapshot_whitelist(self) -> str | None:
        """Regex: only matching paths go into snapshots. Settable while the task runs."""
        return self._snapshot_whitelist

    @snapshot_whitelist.setter
    def snapshot_whitelist(self, value: str | None) -> None:
        if self._uuid is None:
            self._snapshot_whitelist = value
        else:
            self._change_snapshot_settings(whitelist="" if value is None else value)

    @property
    def snapshot_blacklist(self) -> str | None:
        """Regex: matching paths are left out of snapshots. Settable while the task runs."""
        return self._snapshot_blacklist

    @snapshot_blacklist.setter
    def snapshot_blacklist(self, value: str | None) -> None:
        if self._uuid is None:
            self._snapshot_blacklist = value
        else:
            self._change_snapshot_settings(blacklist="" if value is None else value)

    @property
    def snapshot_interval(self) -> int:
        """Seconds between periodic snapshots (0: none)."""
        self._fresh()
        return self._snapshot_interval

    @property
    def snapshot_retention(self) -> int | None:
        """Keep only the last N successful periodic snapshots (None: keep all). Manual,
        labelled and in-job snapshots and the newest successful one are never deleted by it."""
        self._fresh()
        return self._snapshot_retention

    @snapshot_retention.setter
    def snapshot_retention(self, value: int | None) -> None:
        if self._uuid is None:
            self._snapshot_retention = value
            return
        self.update()
        self._post_periodic({"interval": self._snapshot_interval, "retention": value})

    @property
    def upload_results_on_cancellation(self) -> bool | None:
        """Upload the results of an aborted task too (default: no)."""
        return self._upload_results_on_cancellation

    @upload_results_on_cancellation.setter
    def upload_results_on_cancellation(self, value: bool | None) -> None:
        self._check_unsubmitted("upload_results_on_cancellation")
        self._upload_results_on_cancellation = value

    @property
    def wall_time_limit(self) -> int | str | None:
        """Seconds or ``HH:MM:SS`` after which the task is stopped (after a final snapshot)."""
        return self._wall_time_limit

    @wall_time_limit.setter
    def wall_time_limit(self, value: int | str | None) -> None:
        self._check_unsubmitted("wall_time_limit")
        self._wall_time_limit = value

    @property
    def include_unchanged_inputs(self) -> bool:
        """Snapshot and upload unchanged input files too (default: outputs only)."""
        return self._include_unchanged_inputs

    @include_unchanged_inputs.setter
    def include_unchanged_inputs(self, value: bool) -> None:
        self._check_unsubmitted("include_unchanged_inputs")
        self._include_unchanged_inputs = value

    @property
    def tags(self) -> list[str]:
        return self._tags if self._uuid is None else list(self._tags)

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self._check_unsubmitted("tags")
        self._tags = list(value)

    def resume_from(
        self, source: Task | Snapshot | str, snapshot: Snapshot | str = "latest"
    ) -> None:
        """Start from a snapshot: /job is restored from it before the resources are placed
        (a resource file replaces a restored one at the same path). Restored files count as
        inputs: they are uploaded as results, or read by snapshots, only if they change.

        ``source`` is a :class:`Snapshot`, or a task (a :class:`Task` or its uuid) with
        ``snapshot`` one of its snapshots (id or :class:`Snapshot`) or ``"latest"``, its newest
        successful one when this task is submitted. The server checks it then.
        """
        self._check_unsubmitted("resume_from")
        if isinstance(source, Snapshot):
            self._resume_from = {"taskUuid": source.task_uuid, "snapshotId": source.id}
            return
        task_uuid = source._require_uuid() if isinstance(source, Task) else source
        snapshot_id = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        self._resume_from = {"taskUuid": task_uuid, "snapshotId": snapshot_id}

    @property
    def resumed_from(self) -> dict[str, str] | None:
        """``{"taskUuid", "snapshotId"}`` of the snapshot /job is restored from (the server's
        choice once submitted, for ``"latest"``), or None."""
        return None if self._resume_from is None else dict(self._resume_from)

    # ------------------------------------------------------------------ lifecycle

    def _submission(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self._name,
            "profile": self._profile,
            "instanceCount": self._instancecount,
            "constants": [{"key": k, "value": v} for k, v in self._constants.items()],
            "advancedResourceBuckets": [b._resource_json() for b in self._resources],
            "tags": self._tags,
            "includeUnchangedInputs": self._include_unchanged_inputs,
        }
        optional = {
            "shortname": self._shortname,
            "resultBucket": self._results.name if self._results else None,
            "snapshotWhitelist": self._snapshot_whitelist,
            "snapshotBlacklist": self._snapshot_blacklist,
            "resultsWhitelist": self._results_whitelist,
            "resultsBlacklist": self._results_blacklist,
            "uploadResultsOnCancellation": self._upload_results_on_cancellation,
            "snapshotInterval": self._snapshot_interval or None,
            "snapshotRetention": self._snapshot_retention,
            "snapshotBucket": self._snapshot_bucket,
            "snapshotBucketPrefix": self._snapshot_bucket_prefix,
            "wallTimeLimit": self._wall_time_limit,
            "resumeFrom": self._resume_from,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body

    def submit(self) -> None:
        """Send the task to the server; it starts as soon as a slot is free."""
        self._check_unsubmitted("the task (submit)")
        answer = self._http.json("POST", "/tasks", json=self._submission())
        self._uuid = str(answer["uuid"])
        self._state = TaskState.SUBMITTED
        self.update()

    def update(self) -> None:
        """Fetch the task's current record from the server."""
        self._apply(self._http.json("GET", self._url()))

    def wait(self, timeout: float | None = None, *, progress: ProgressHook | None = None) -> bool:
        """Wait until the task has ended (``Success``, ``Failure`` or ``Cancelled``).

        Returns True when it has, False if ``timeout`` seconds passed first (as the qarnot SDK
        does). Polls quickly at first, then every second.
        """
        self._require_uuid()
        deadline = _poll.Deadline(timeout)
        for delay in _poll.delays(first=0.1, cap=_poll.TASK_CAP):
            if self._state != TaskState.DELETED:
                self.update()
            report(progress, 0, None, str(self._state))
            if self._state in FINAL_STATES:
                return True
            if deadline.expired:
                return False
            deadline.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_running(self, timeout: float | None = None) -> bool:
        """Wait until the command runs (``FullyExecuting``: snapshots are accepted).

        Returns True when it does, False if ``timeout`` seconds passed first; raises
        :class:`~hpcsnap.TaskNotRunningError` if the task ended before it was seen running.
        """
        self._require_uuid()
        deadline = _poll.Deadline(timeout)
        for delay in _poll.delays(cap=_poll.SNAPSHOT_CAP):
            self.update()
            if self._state == TaskState.EXECUTING:
                return True
            if self._state in FINAL_STATES or self._state == TaskState.PENDING_CANCEL:
                raise TaskNotRunningError(
                    f"task {self._uuid} is {self._state}: it will not run any more",
                    status_code=409,
                )
            if deadline.expired:
                return False
            deadline.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_output(
        self,
        pattern: str | re.Pattern[str],
        timeout: float | None = None,
        *,
        stream: str = "stdout",
    ) -> re.Match[str] | None:
        """Wait until a line of the task's output matches ``pattern`` (a regular expression,
        searched in each line as with :func:`re.search`), from the start of its output.

        Returns the match, or None if ``timeout`` seconds passed first; raises
        :class:`~hpcsnap.TaskNotRunningError` if the task ended without printing such a line.
        Handy to snapshot a run at a milestone it prints (``^Time = 1$``).
        """
        self._require_uuid()
        regex = re.compile(pattern)
        deadline = _poll.Deadline(timeout)
        pending = ""  # the last line, not ended yet
        for event in iter_events(self._http, self._url("events"), follow=True, deadline=deadline):
            if not event.is_log or event.stream != stream:
                continue
            *lines, pending = (pending + event.text).split("\n")
            for line in lines:
                if match := regex.search(line):
                    return match
        if deadline.expired:
            return None
        if pending and (match := regex.search(pending)):
            return match
        self.update()
        raise TaskNotRunningError(
            f"task {self._uuid} ended ({self._state}) without printing a line matching "
            f"{regex.pattern!r} on {stream}",
            status_code=409,
        )

    def run(
        self,
        output_dir: str | os.PathLike[str] | None = None,
        job_timeout: float | None = None,
        *,
        progress: ProgressHook | None = None,
    ) -> None:
        """Submit, wait (aborting after ``job_timeout`` seconds), then download the results
        into ``output_dir`` if one is given."""
        self.submit()
        if not self.wait(job_timeout, progress=progress):
            self.abort()
            self.wait()
        if output_dir is not None:
            self.download_results(output_dir, progress=progress)

    def abort(self) -> None:
        """Stop the task (its results are uploaded only with ``upload_results_on_cancellation``).

        Raises :class:`~hpcsnap.TaskNotRunningError` if it has already ended.
        """
        self._apply(self._http.json("POST", self._url("abort"), errors_map=_NOT_RUNNING))

    def delete(self) -> None:
        """Delete the task (aborting it first if it runs); its result bucket is kept."""
        self._http.send("DELETE", self._url())
        self._state = TaskState.DELETED

    def shell(
        self,
        command: str | None = None,
        *,
        tty: bool = False,
        cols: int = 80,
        rows: int = 24,
        term: str | None = None,
        timeout: float = 60.0,
    ) -> ShellSession:
        """A shell (or ``command``, run by it) inside the running task: in /job, with the
        command's environment, as its user. ``tty=True`` gives it a terminal.

        ``with task.shell("ls -la") as sh: print(sh.communicate().stdout)``. Raises
        :class:`~hpcsnap.TaskNotRunningError` unless the task is running.
        """
        return ShellSession.open(
            self._http,
            self._require_uuid(),
            command=command,
            tty=tty,
            cols=cols,
            rows=rows,
            term=term,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ output

    def stdout(self, *, offset: int = 0) -> str:
        """Everything the command wrote on stdout (from character ``offset``)."""
        return self._http.text("GET", self._url("stdout"), params={"offset": offset})

    def stderr(self, *, offset: int = 0) -> str:
        """Everything the command wrote on stderr (from character ``offset``)."""
        return self._http.text("GET", self._url("stderr"), params={"offset": offset})

    def fresh_stdout(self) -> str:
        """stdout written since the previous ``fresh_stdout()`` (a cursor kept on the server)."""
        return self._http.text("POST", self._url("stdout"))

    def fresh_stderr(self) -> str:
        """stderr written since the previous ``fresh_stderr()``."""
        return self._http.text("POST", self._url("stderr"))

    def follow(
        self, stream: Literal["stdout", "stderr"] = "stdout", *, offset: int = 0
    ) -> Iterator[str]:
        """Yield the output as it comes, until the task has ended and all of it is read."""
        read = self.stdout if stream == "stdout" else self.stderr
        delays = _poll.delays(first=0.1, cap=_poll.TASK_CAP)
        while True:
            ended = self.state in FINAL_STATES
            text = read(offset=offset)
            if text:
                offset += len(text)
                delays = _poll.delays(first=0.1, cap=_poll.TASK_CAP)
                yield text
            elif ended:
                return
            else:
                time.sleep(next(delays))

    def events(self, *, after: int = 0, follow: bool = False) -> Iterator[TaskEvent]:
        """The task's events after id ``after``, oldest first: state changes, snapshot events,
        output chunks, and last its ``end`` (see :class:`~hpcsnap.TaskEvent`).

        With ``follow=True``, waits for new ones (long-poll) until the task has ended.
        """
        return iter_events(self._http, self._url("events"), after=after, follow=follow)

    def download_results(
        self,
        output_dir: str | os.PathLike[str],
        *,
        snapshots: bool = False,
        progress: ProgressHook | None = None,
    ) -> list[Path]:
        """Download the result bucket's files into ``output_dir``.

        Snapshot directories are left out unless ``snapshots=True`` (they are ordinary keys of
        the bucket; see :meth:`download_snapshot` to get one).
        """
        self.update()
        if self._results is None:
            raise TaskNotSubmittedError(f"task {self._uuid} has no result bucket")
        files = [f for f in self._results.list_files() if snapshots or f.snapshot_id is None]
        return download_files(self._results, files, Path(output_dir), progress=progress)

    def download_results_archive(
        self,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        format: str | None = None,
        progress: ProgressHook | None = None,
    ) -> Path | None:
        """Download the final results as one archive (``tar.gz`` or ``zip``; by default what
        ``dest`` ends with); see :meth:`Snapshot.download_archive`."""
        url = self._url("results", "archive")
        return contents.download_archive(self._http, url, dest, fmt=format, progress=progress)

    def diff(
        self, old: Snapshot | str, new: Snapshot | str, *, limit: int | None = None
    ) -> SnapshotDiff:
        """What changed from ``old`` to ``new``: each a snapshot, its id, ``"latest"`` or
        ``"results"`` (the final results). ``limit`` cuts each list (not the totals)."""

        def ref(x: Snapshot | str) -> str:
            return self._resolve_snapshot(x).id if x == "latest" or isinstance(x, Snapshot) else x

        old_ref, new_ref = ref(old), ref(new)
        if old_ref == new_ref == contents.RESULTS:
            raise ValueError("compare the results with a snapshot, not with themselves")
        return contents.compare(self._http, self._require_uuid(), old_ref, new_ref, limit=limit)

    # ------------------------------------------------------------------ snapshots

    def _change_snapshot_settings(self, **changes: str) -> None:
        """Send new snapshot filters with the interval the server has now."""
        self.update()
        self._post_periodic({"interval": self._snapshot_interval, **changes})

    def _post_periodic(self, body: dict[str, Any]) -> None:
        answer = self._http.json(
            "POST", self._url("snapshot", "periodic"), json=body, errors_map=_NOT_RUNNING
        )
        self._snapshot_interval = int(answer.get("interval", body["interval"]))
        self._snapshot_whitelist = answer.get("whitelist")
        self._snapshot_blacklist = answer.get("blacklist")
        self._snapshot_retention = answer.get("retention")

    def snapshot(
        self,
        interval: int,
        whitelist: str | None = None,
        blacklist: str | None = None,
        bucket: BucketRef | None = None,
        bucket_prefix: str | None = None,
        *,
        retention: int | None = None,
    ) -> None:
        """Take a snapshot every ``interval`` seconds (0 stops them).

        Before submission the settings are kept and sent with the task; on a submitted task they
        apply at once. Filters given here become the task's snapshot filters. ``retention``
        (if given) keeps only the last N periodic snapshots, see :attr:`snapshot_retention`.
        """
        bucket_name = self._bucket(bucket).name if bucket is not None else None
        if self._uuid is None:
            self._snapshot_interval = int(interval)
            if whitelist is not None:
                self._snapshot_whitelist = whitelist or None
            if blacklist is not None:
                self._snapshot_blacklist = blacklist or None
            if bucket_name is not None:
                self._snapshot_bucket = bucket_name
            if bucket_prefix is not None:
                self._snapshot_bucket_prefix = bucket_prefix
            if retention is not None:
                self._snapshot_retention = retention
            return
        body: dict[str, Any] = {
            "interval": int(interval),
            "whitelist": whitelist,
            "blacklist": blacklist,
            "bucket": bucket_name,
            "bucketPrefix": bucket_prefix,
        }
        if retention is not None:
            body["retention"] = retention
        self._post_periodic(body)

    def snapshot_periodic(
        self,
        interval: int,
        whitelist: str | None = None,
        blacklist: str | None = None,
        bucket: BucketRef | None = None,
        bucket_prefix: str | None = None,
        *,
        retention: int | None = None,
    ) -> None:
        """Same as :meth:`snapshot` (the name the seed uses for it)."""
        self.snapshot(interval, whitelist, blacklist, bucket, bucket_prefix, retention=retention)

    def instant(
        self,
        whitelist: str | None = None,
        blacklist: str | None = None,
        bucket: BucketRef | None = None,
        bucket_prefix: str | None = None,
        *,
        label: str | None = None,
    ) -> str:
        """Snapshot /job now; returns the snapshot's id at once (see :meth:`wait_snapshot`).

        Filters given here replace the task's for this snapshot only. Raises
        :class:`~hpcsnap.TaskNotRunningError` unless the task is running (``FullyExecuting``).
        """
        body = {
            "whitelist": whitelist,
            "blacklist": blacklist,
            "bucket": self._bucket(bucket).name if bucket is not None else None,
            "bucketPrefix": bucket_prefix,
            "label": label,
        }
        answer = self._http.json("POST", self._url("snapshot"), json=body, errors_map=_NOT_RUNNING)
        return str(answer["id"])

    def snapshot_status(self, snapshot_id: str) -> Snapshot:
        """The snapshot's current record (status, sizes, directory...)."""
        data = self._http.json("GET", self._url("snapshot", snapshot_id))
        return Snapshot.from_json(data, self._connection)

    def wait_snapshot(
        self,
        snapshot_id: str,
        timeout: float | None = None,
        *,
        progress: ProgressHook | None = None,
    ) -> Snapshot:
        """Wait until the snapshot succeeded or failed, and return it (check ``.succeeded``).

        Polls adaptively (every 0.5 s at most), so a finished snapshot is seen within a fraction
        of a second. Raises :class:`~hpcsnap.WaitTimeoutError` after ``timeout`` seconds.
        """
        deadline = _poll.Deadline(timeout)
        for delay in _poll.delays(cap=_poll.SNAPSHOT_CAP):
            snap = self.snapshot_status(snapshot_id)
            total = snap.size_to_upload or None
            report(progress, snap.transferred_size, total, str(snap.status.value))
            if snap.is_completed:
                return snap
            if deadline.expired:
                raise WaitTimeoutError(
                    f"snapshot {snapshot_id} of task {self._uuid} is still "
                    f"{snap.status.value} after {timeout} s"
                )
            deadline.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot of the task, oldest first."""
        data = self._http.json("GET", self._url("snapshots"))
        return [Snapshot.from_json(d, self._connection) for d in data or []]

    def latest_snapshot(self, *, label: str | None = None) -> Snapshot | None:
        """The most recent successful snapshot (with that label, if given), or None."""
        done = [s for s in self.snapshots() if s.succeeded and (label is None or s.label == label)]
        return done[-1] if done else None

    def _resolve_snapshot(self, snapshot: Snapshot | str) -> Snapshot:
        if isinstance(snapshot, Snapshot):
            return snapshot
        if snapshot == "latest":
            latest = self.latest_snapshot()
            if latest is None:
                raise SnapshotNotReadyError(f"task {self._uuid} has no successful snapshot")
            return latest
        return self.snapshot_status(snapshot)

    def download_snapshot(
        self,
        snapshot: Snapshot | str,
        output_dir: str | os.PathLike[str],
        *,
        progress: ProgressHook | None = None,
    ) -> list[Path]:
        """Download a snapshot (its id, a :class:`Snapshot`, or ``"latest"``) into
        ``output_dir``: its files at their path relative to /job."""
        return self._resolve_snapshot(snapshot).download(output_dir, progress=progress)

    def delete_snapshot(self, snapshot: Snapshot | str) -> Snapshot:
        """Delete one finished snapshot (its id or a :class:`Snapshot`): its files go at once,
        its content once nothing else references it. Returns its record, now deleted.
        Raises :class:`~hpcsnap.ConflictError` while it is still being taken."""
        snap_id = snapshot.id if isinstance(snapshot, Snapshot) else snapshot
        data = self._http.json("DELETE", self._url("snapshot", snap_id))
        return Snapshot.from_json(data, self._connection)

    def verify_snapshot(self, snapshot: Snapshot | str) -> Verification:
        """Have the server re-read and re-hash every stored file of a successful snapshot
        against its manifest (``"latest"`` accepted)."""
        snap_id = self._resolve_snapshot(snapshot).id
        data = self._http.json("POST", self._url("snapshot", snap_id, "verify"))
        return Verification.from_json(data)

    def verify_results(self) -> Verification:
        """Have the server re-hash the task's results (the keys of its result bucket that are
        not part of a snapshot)."""
        return Verification.from_json(self._http.json("POST", self._url("results", "verify")))
