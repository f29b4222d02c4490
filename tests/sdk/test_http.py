"""The SDK against a fake transport (httpx.MockTransport): error mapping, retries, polling
cadence, transfer integrity. No server process needed."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import hpcsnap
from hpcsnap.sdk import _http, _poll, transfer

UUID = "0b6c7a52-1a0e-4a51-9b8e-3c1f1f0e9a11"
Handler = Callable[[httpx.Request], httpx.Response]


def connect(handler: Handler) -> hpcsnap.Connection:
    return hpcsnap.Connection(
        client_token="tok", cluster_url="http://fake", transport=httpx.MockTransport(handler)
    )


def task_json(state: str = "FullyExecuting", **extra: Any) -> dict[str, Any]:
    return {"uuid": UUID, "name": "t", "state": state, "resultBucket": "out", **extra}


def answer(status: int, body: Any = None) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_requests_carry_token_and_v1_prefix() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(200, task_json())

    with connect(handler) as conn:
        task = conn.retrieve_task(UUID)
    assert task.uuid == UUID and task.state == "FullyExecuting"
    assert seen[0].url.path == f"/v1/tasks/{UUID}"
    assert seen[0].headers["Authorization"] == "tok"
    assert seen[0].headers["User-Agent"].startswith("hpcsnap-sdk-python/")


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (404, "task x not found", hpcsnap.MissingTaskError),
        (404, "bucket 'b' not found", hpcsnap.MissingBucketError),
        (404, "snapshot s of task x not found", hpcsnap.MissingSnapshotError),
        (404, "no key 'k' in bucket 'b'", hpcsnap.MissingFileError),
        (404, "no such route", hpcsnap.NotFoundError),
        (400, "snapshotBlacklist: bad regex", hpcsnap.BadRequestError),
        (401, "invalid or revoked token", hpcsnap.UnauthorizedError),
        (403, "nope", hpcsnap.ForbiddenError),
        (409, "busy", hpcsnap.ConflictError),
        (500, "boom", hpcsnap.ServerError),
    ],
)
def test_errors_are_mapped_with_the_servers_message(
    status: int, message: str, error: type[hpcsnap.ApiError]
) -> None:
    with (
        connect(lambda r: answer(status, {"message": message})) as conn,
        pytest.raises(error) as info,
    ):
        conn._http.send("POST", "/anything")
    assert type(info.value) is error
    assert message in str(info.value) and info.value.status_code == status


def test_not_running_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/abort"):
            return answer(403, {"message": f"task {UUID} is already completed (Success)"})
        if request.url.path.endswith("/snapshot"):
            return answer(409, {"message": f"task {UUID} is Submitted: only a running task"})
        return answer(200, task_json())

    with connect(handler) as conn:
        task = conn.retrieve_task(UUID)
        with pytest.raises(hpcsnap.TaskNotRunningError, match="already completed"):
            task.abort()
        with pytest.raises(hpcsnap.TaskNotRunningError, match="only a running task"):
            task.instant()


def test_first_request_fails_fast_later_ones_ride_over_a_restart() -> None:
    calls = {"n": 0}

    def down(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise httpx.ConnectError("refused")

    with connect(down) as conn:
        started = time.monotonic()
        with pytest.raises(hpcsnap.ServerUnreachableError, match="cannot reach"):
            conn.tasks()
        assert calls["n"] == 1 and time.monotonic() - started < 1

    script = iter(["ok", "refused", "503", "ok"])

    def flaky(request: httpx.Request) -> httpx.Response:
        step = next(script)
        if step == "refused":
            raise httpx.ConnectError("refused")
        return answer(503, {"message": "restarting"}) if step == "503" else answer(200, [])

    with connect(flaky) as conn:
        assert conn.tasks() == []
        assert conn.tasks() == []  # one refused connection and one 503, then an answer


def test_post_is_not_retried_after_a_timeout() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return answer(200, [])
        raise httpx.ReadTimeout("slow")

    with connect(handler) as conn:
        conn.tasks()
        with pytest.raises(hpcsnap.ServerUnreachableError):
            conn._http.send("POST", "/tasks", json={})
    assert calls["n"] == 2


def test_wait_snapshot_sees_completion_within_a_fraction_of_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done_at = time.monotonic() + 1.5
    polls: list[float] = []
    naps: list[float] = []
    nap = _poll.Deadline.sleep

    def recorded(self: _poll.Deadline, delay: float) -> None:
        naps.append(delay)
        nap(self, delay)

    monkeypatch.setattr(_poll.Deadline, "sleep", recorded)

    def handler(request: httpx.Request) -> httpx.Response:
        now = time.monotonic()
        polls.append(now)
        status = "Success" if now >= done_at else "InProgress"
        return answer(200, {"id": "s1", "taskUuid": UUID, "status": status, "sizeToUpload": 10})

    with connect(handler) as conn:
        task = hpcsnap.Task.from_json(conn, task_json())
        progress: list[tuple[int, int | None, str]] = []
        snap = task.wait_snapshot("s1", progress=lambda *a: progress.append(a))
    assert snap.succeeded and snap.status == hpcsnap.SnapshotStatus.SUCCESS
    # it never naps more than half a second between two polls, so it sees the completion within
    # about that: on the wall clock, a loaded machine's late wake-ups come on top
    assert naps and max(naps) <= 0.5, naps
    assert polls[-1] - done_at < 2, "completion seen late"
    assert len(polls) < 15, "polling too often"
    assert progress[-1] == (0, 10, "Success")


def test_wait_snapshot_times_out_and_lowercase_status_is_understood() -> None:
    with connect(lambda r: answer(200, {"id": "s", "status": "inprogress"})) as conn:
        task = hpcsnap.Task.from_json(conn, task_json())
        with pytest.raises(hpcsnap.WaitTimeoutError, match="still InProgress"):
            task.wait_snapshot("s", timeout=0.3)
    with connect(lambda r: answer(200, {"id": "s", "status": "success"})) as conn:
        task = hpcsnap.Task.from_json(conn, task_json())
        assert task.wait_snapshot("s", timeout=0).succeeded


def test_corrupted_download_leaves_no_file(tmp_path: Path) -> None:
    content = b"the real content"
    listing = [
        {"key": "a.txt", "size": len(content), "hash": "h", "md5": hashlib.md5(content).hexdigest()}
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files"):
            return answer(200, listing)
        return httpx.Response(200, content=b"the fake content")

    with connect(handler) as conn:
        bucket = hpcsnap.Bucket(conn, "b")
        with pytest.raises(hpcsnap.TransferError, match="corrupted"):
            bucket.get_all_files(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_altered_upload_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 3000)

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.read()
        return answer(200, {"key": "f.bin", "size": len(body), "md5": "0" * 32})

    with connect(handler) as conn, pytest.raises(hpcsnap.TransferError, match="arrived altered"):
        hpcsnap.Bucket(conn, "b").add_file(src)


def test_keys_are_percent_encoded_and_never_escape_the_output_dir(tmp_path: Path) -> None:
    assert _http.path("buckets", "b", "files", "a b/é#?.txt") == (
        "/buckets/b/files/a%20b/%C3%A9%23%3F.txt"
    )
    for evil in ("../x", "/etc/passwd", "a/../../x", "./a", ""):
        with pytest.raises(hpcsnap.TransferError):
            transfer.local_path(tmp_path, evil)


def test_submission_body_is_qarnot_shaped() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            bodies.append(json.loads(request.content))
            return answer(201, {"uuid": UUID})
        return answer(200, task_json("Submitted", snapshotInterval=5))

    with connect(handler) as conn:
        task = conn.create_task("n", "docker-batch")
        task.constants["DOCKER_CMD"] = "echo hi"
        task.constants["FOO"] = "bar"
        task.resources = [conn.create_bucket("in"), "more"]
        task.results = "out"
        task.snapshot_periodic(interval=5)
        task.snapshot_blacklist = r"processor\d+"
        task.results_whitelist = r"log\..*"
        task.upload_results_on_cancellation = True
        task.submit()
    body = bodies[-1]
    assert body["constants"] == [
        {"key": "DOCKER_CMD", "value": "echo hi"},
        {"key": "FOO", "value": "bar"},
    ]
    assert [r["bucketName"] for r in body["advancedResourceBuckets"]] == ["in", "more"]
    assert body["resultBucket"] == "out" and body["snapshotInterval"] == 5
    assert body["snapshotBlacklist"] == r"processor\d+" and body["resultsWhitelist"] == r"log\..*"
    assert body["uploadResultsOnCancellation"] is True
    assert "snapshotWhitelist" not in body


def test_a_snapshot_without_files_says_why(tmp_path: Path) -> None:
    failed = {
        "id": "s",
        "status": "Failure",
        "error": "over the hard limit",
        "snapshotConfig": {"bucket": "out"},
    }
    running = {**failed, "status": "InProgress", "error": None}
    for body, message in [(failed, "failed: over the hard limit"), (running, "wait_snapshot")]:
        with connect(lambda r, body=body: answer(200, body)) as conn:
            task = hpcsnap.Task.from_json(conn, task_json())
            with pytest.raises(hpcsnap.SnapshotNotReadyError, match=message):
                task.download_snapshot("s", tmp_path)
    with connect(lambda r: answer(200, [])) as conn:
        task = hpcsnap.Task.from_json(conn, task_json())
        assert task.latest_snapshot() is None
        with pytest.raises(hpcsnap.SnapshotNotReadyError, match="no successful snapshot"):
            task.download_snapshot("latest", tmp_path)
