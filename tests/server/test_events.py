"""A task's event stream (``GET /v1/tasks/{uuid}/events``): SSE and JSON long-poll, live and
replayed, resumed, and closed to other users."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import Api, ServerProcess, wait_for

STEPS = "for i in $(seq 1 6); do echo step $i; echo $i > f$i.txt; sleep 0.5; done"
IDLE = "trap 'exit 143' TERM; echo idle; sleep 60 & wait"


@dataclass
class Sse:
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: str | None = None


def read_sse(
    api: Api,
    uuid: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    limit: int | None = None,
    until_comment: bool = False,
    opened: threading.Event | None = None,
) -> Sse:
    """Read the stream until the server closes it (or ``limit`` events, or a comment line);
    ``opened`` is set once the server has answered with the stream."""
    out = Sse()
    with api.http.stream(
        "GET", f"/tasks/{uuid}/events", headers=headers, params=params, timeout=30
    ) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        if opened is not None:
            opened.set()
        fields: dict[str, str] = {}
        for line in resp.iter_lines():
            if line.startswith(":"):
                out.comments.append(line)
                if until_comment:
                    break
            elif line:
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value
            elif "data" in fields:
                event = json.loads(fields["data"])
                assert fields["id"] == str(event["id"]) and fields["event"] == event["type"]
                out.events.append(event)
                fields = {}
                if limit is not None and len(out.events) >= limit:
                    break
            else:
                out.retry = fields.get("retry", out.retry)
                fields = {}
    return out


def poll_json(api: Api, uuid: str, after: int = 0, wait: float = 0) -> dict[str, Any]:
    return dict(
        api.ok(
            "GET", f"/tasks/{uuid}/events", params={"format": "json", "after": after, "wait": wait}
        )
    )


def replay_json(api: Api, uuid: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = poll_json(api, uuid, after)
        events += page["events"]
        after = page["last"]
        if page["done"]:
            return events


@pytest.fixture(scope="module")
def user(server: ServerProcess) -> Api:
    return server.user("follower")


@dataclass
class Followed:
    uuid: str
    live: list[dict[str, Any]]
    first_part: int
    manual: str


@pytest.fixture(scope="module")
def followed(user: Api) -> Followed:
    """A task with periodic snapshots and a labelled manual one, followed live from its
    submission by an SSE client that disconnects after a few events and resumes."""
    uuid = user.submit(STEPS, snapshotInterval=1, resultBucket="followed")
    live: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            head = read_sse(user, uuid, limit=3).events
            live.extend(head)
            tail = read_sse(user, uuid, headers={"Last-Event-ID": str(head[-1]["id"])})
            live.extend(tail.events)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    user.wait(uuid, {"FullyExecuting"})
    manual = user.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "by-hand"})["id"]
    user.wait(uuid)
    follower.join(60)
    assert not follower.is_alive(), "the stream did not end with the task"
    assert not errors, errors
    return Followed(uuid, live, 3, manual)


def test_stream_holds_state_changes_and_snapshots_in_order(user: Api, followed: Followed) -> None:
    events = followed.live
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)), "ids increase, no duplicates across the reconnection"
    states = [e["to"] for e in events if e["type"] == "state"]
    assert states == [
        "Submitted",
        "FullyDispatched",
        "FullyExecuting",
        "UploadingResults",
        "Success",
    ]
    assert events[-1]["type"] == "end" and events[-1]["state"] == "Success"
    assert events[-1]["exitCode"] == 0

    def at(type_: str, **match: Any) -> int:
        return next(
            i
            for i, e in enumerate(events)
            if e["type"] == type_ and all(e.get(k) == v for k, v in match.items())
        )

    running, uploading = at("state", to="FullyExecuting"), at("state", to="UploadingResults")
    snaps = user.ok("GET", f"/tasks/{followed.uuid}/snapshots")
    successes = [s for s in snaps if s["status"] == "Success"]
    assert {s["kind"] for s in successes} == {"periodic", "manual"}
    assert followed.manual in {s["id"] for s in successes}
    for snap in snaps:
        triggered = at("snapshot.triggered", snapshotId=snap["id"])
        end = at(f"snapshot.{snap['status'].lower()}", snapshotId=snap["id"])
        assert running < triggered < end < len(events) - 1
        assert events[triggered]["kind"] == snap["kind"]
        assert events[end]["directory"] == snap["directory"]
    for snap in successes:
        success = events[at("snapshot.success", snapshotId=snap["id"])]
        assert success["label"] == snap["label"]
        for key in ("filesTotal", "filesRead", "filesReused", "bytesTotal", "durationMs"):
            assert success[key] == snap[key], key
    assert at("snapshot.success", snapshotId=followed.manual) < uploading
    # the output, chunk by chunk, in order
    logs = [e for e in events if e["type"] == "log"]
    assert "".join(e["text"] for e in logs) == user.get(f"/tasks/{followed.uuid}/stdout").text
    assert all(a["end"] == b["offset"] for a, b in itertools.pairwise(logs))


def test_replay_equals_what_was_seen_live(user: Api, followed: Followed) -> None:
    replay = read_sse(user, followed.uuid)
    assert replay.events == followed.live
    assert replay.retry is not None and int(replay.retry) > 0
    assert replay_json(user, followed.uuid) == followed.live


def test_resume_after_an_event_gives_the_rest_without_duplicates(
    user: Api, followed: Followed
) -> None:
    events, uuid = followed.live, followed.uuid
    middle = events[len(events) // 2]["id"]
    rest = [e for e in events if e["id"] > middle]
    by_header = read_sse(user, uuid, headers={"Last-Event-ID": str(middle)}, params={"after": 0})
    assert by_header.events == rest  # Last-Event-ID wins over ?after=
    assert read_sse(user, uuid, params={"after": middle}).events == rest
    page = poll_json(user, uuid, after=middle)
    assert page["events"] == rest and page["done"] is True
    assert page["last"] == events[-1]["id"]
    # nothing after the end: 204 tells an EventSource not to reconnect
    resp = user.get(f"/tasks/{uuid}/events", headers={"Last-Event-ID": str(events[-1]["id"])})
    assert resp.status_code == 204
    assert poll_json(user, uuid, after=events[-1]["id"], wait=5) == {
        "events": [],
        "last": events[-1]["id"],
        "done": True,
    }


def test_failure_message_and_stderr_in_the_stream(user: Api) -> None:
    uuid = user.submit("echo bad >&2; exit 3")
    user.wait(uuid)
    events = replay_json(user, uuid)
    failed = [e for e in events if e["type"] == "state" and e["to"] == "Failure"]
    assert len(failed) == 1 and "code 3" in failed[0]["message"]
    assert [(e["stream"], e["text"]) for e in events if e["type"] == "log"] == [("stderr", "bad\n")]
    assert events[-1]["type"] == "end"
    assert (events[-1]["state"], events[-1]["exitCode"]) == ("Failure", 3)


def test_long_poll_heartbeat_and_deletion(user: Api) -> None:
    uuid = user.submit(IDLE)
    user.wait(uuid, {"FullyExecuting"})
    wait_for(lambda: user.get(f"/tasks/{uuid}/stdout").text, bool, 30, "its output")
    last = poll_json(user, uuid)["last"]
    quiet = poll_json(user, uuid, after=last, wait=0.5)
    assert quiet == {"events": [], "last": last, "done": False}

    answers: list[tuple[float, dict[str, Any]]] = []

    def long_poll() -> None:
        start = time.monotonic()
        answers.append((start, poll_json(user, uuid, after=last, wait=25)))
        answers.append((time.monotonic() - start, {}))

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    snap = user.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "woken"})["id"]
    poller.join(30)
    (_, page), (elapsed, _) = answers
    assert elapsed < 20, "the long-poll answered when the snapshot was triggered"
    assert page["events"][0]["type"] == "snapshot.triggered"
    assert page["events"][0]["snapshotId"] == snap and page["done"] is False
    user.wait_snapshot(uuid, snap)

    # a silent stream sends comment lines (heartbeat=1 s here; 15 s by default)
    last = poll_json(user, uuid, after=page["last"])["last"]
    beat = read_sse(
        user,
        uuid,
        params={"heartbeat": 1},
        headers={"Last-Event-ID": str(last)},
        until_comment=True,
    )
    assert beat.events == [] and beat.comments == [": keep-alive"]

    # a deleted task's stream ends
    ended: list[Sse] = []
    opened = threading.Event()
    follower = threading.Thread(
        target=lambda: ended.append(read_sse(user, uuid, params={"after": last}, opened=opened))
    )
    follower.start()
    assert opened.wait(30), "the stream did not open"  # deleted after it opened, not before
    assert user.delete(f"/tasks/{uuid}").status_code == 204
    follower.join(30)
    assert not follower.is_alive() and len(ended) == 1
    assert user.get(f"/tasks/{uuid}/events").status_code == 404


def test_auth_and_ownership(server: ServerProcess, user: Api, followed: Followed) -> None:
    uuid = followed.uuid
    other = server.user("stranger")
    for params in ({}, {"format": "json"}):
        resp = server.anonymous().get(f"/tasks/{uuid}/events", params=params)
        assert resp.status_code == 401 and resp.json()["message"]
        resp = Api(server.url, "hps_not-a-token").get(f"/tasks/{uuid}/events", params=params)
        assert resp.status_code == 401
        resp = other.get(f"/tasks/{uuid}/events", params=params)
        assert resp.status_code == 404 and uuid in resp.json()["message"]
        assert user.get("/tasks/no-such-task/events", params=params).status_code == 404
    resp = user.get(f"/tasks/{uuid}/events", headers={"Last-Event-ID": "seven"})
    assert resp.status_code == 400 and "Last-Event-ID" in resp.json()["message"]
    resp = user.get(f"/tasks/{uuid}/events", params={"format": "xml"})
    assert resp.status_code == 400 and "format" in resp.json()["message"]
