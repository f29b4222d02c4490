"""Restart from a snapshot (``resumeFrom``): validation, and /job restored byte for byte with
modes, mtimes and symlinks; restored files count as inputs; a line of restarts."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator

import pytest

from tests.support import Api, ServerProcess

#: Lists /job: path, kind, mode, mtime and content hash (or symlink target), one per line.
LISTING = b"""\
import hashlib, os
for top, dirs, files in os.walk("."):
    dirs.sort()
    for name in sorted(files + dirs):
        path = os.path.join(top, name)[2:]
        st = os.lstat(path)
        if os.path.islink(path):
            print(path, "link", os.readlink(path), st.st_mtime_ns)
        elif os.path.isfile(path) and name != "ls.py":
            digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
            print(path, "file", oct(st.st_mode & 0o7777), st.st_mtime_ns, digest)
"""

MAKE_JOB = (
    "head -c 200000 /dev/urandom > data.bin; printf 'v1\\n' > changed.txt; "
    "printf '#!/bin/sh\\necho hi\\n' > run.sh; chmod 755 run.sh; "
    "printf 'secret\\n' > secret.txt; chmod 600 secret.txt; "
    "mkdir -p sub/deep; printf 'deep\\n' > sub/deep/f.txt; "
    "ln -s data.bin link; ln -s sub/deep dirlink; ln -s /nowhere dangling; "
    "touch -d '2001-02-03 04:05:06.123456789' sub/deep/f.txt; "
    "hpcsnap job snapshot --label ready > /dev/null; python3 ls.py; exit 3"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose hard snapshot limit (1 MB) lets a test make a snapshot fail."""
    with ServerProcess(
        tmp_path_factory.mktemp("server"), HPCSNAP_SNAPSHOT_HARD_LIMIT="1000000"
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def user(server: ServerProcess) -> Api:
    api = server.user("resumer")
    api.ok("POST", "/buckets", json={"name": "tools"})
    api.upload("tools", "ls.py", LISTING)
    return api


def tools(*more: str) -> list[dict[str, str]]:
    return [{"bucketName": b} for b in ("tools", *more)]


@pytest.fixture(scope="module")
def failed(user: Api) -> dict[str, str]:
    """A task that builds a /job, snapshots it and fails: its uuid, snapshot id, listing."""
    uuid = user.submit(MAKE_JOB, name="source", advancedResourceBuckets=tools())
    task = user.wait(uuid)
    assert task["state"] == "Failure" and task["exitCode"] == 3, task
    (snap,) = user.ok("GET", f"/tasks/{uuid}/snapshots")
    assert snap["status"] == "Success", snap
    return {"uuid": uuid, "snapshot": snap["id"], "listing": user.get(f"/tasks/{uuid}/stdout").text}


def lines(listing: str) -> dict[str, str]:
    return {line.split(" ", 1)[0]: line for line in listing.splitlines() if line}


def refused(api: Api, resume_from: object, status: int) -> str:
    body = {
        "name": "resumed",
        "constants": [{"key": "DOCKER_CMD", "value": "true"}],
        "resumeFrom": resume_from,
    }
    resp = api.post("/tasks", json=body)
    assert resp.status_code == status, resp.text
    return str(resp.json()["message"])


def test_resumed_job_is_the_snapshot_byte_for_byte(user: Api, failed: dict[str, str]) -> None:
    source = lines(failed["listing"])
    assert source["link"].split()[2] == "data.bin" and "dangling" in source
    assert source["run.sh"].split()[2] == "0o755" and source["secret.txt"].split()[2] == "0o600"
    user.ok("POST", "/buckets", json={"name": "override"})
    user.upload("override", "run.sh", b"#!/bin/sh\necho override\n")
    uuid = user.submit(
        "python3 ls.py; echo ---; printf 'v2\\n' > changed.txt; echo new > new.txt; "
        "hpcsnap job snapshot --label b > /dev/null; python3 ls.py",
        name="resumed",
        advancedResourceBuckets=tools("override"),
        resumeFrom={"taskUuid": failed["uuid"], "snapshotId": failed["snapshot"]},
        resultBucket="resumed-out",
    )
    task = user.wait(uuid)
    assert task["state"] == "Success", user.get(f"/tasks/{uuid}/stderr").text
    assert task["resumeFrom"] == {"taskUuid": failed["uuid"], "snapshotId": failed["snapshot"]}
    before, after = user.get(f"/tasks/{uuid}/stdout").text.split("---\n")
    seen = lines(before)
    # every file, mode, mtime and symlink of the snapshot; the resource replaced run.sh
    assert seen.keys() == source.keys()
    assert {p: v for p, v in seen.items() if p != "run.sh"} == {
        p: v for p, v in source.items() if p != "run.sh"
    }
    assert seen["run.sh"].split()[2] == "0o644" and seen["run.sh"] != source["run.sh"]
    # restored files are inputs: only what changed is a result, or read by a snapshot
    results = [k for k in user.keys("resumed-out") if not k.startswith("snapshots/")]
    assert sorted(results) == ["changed.txt", "new.txt"]
    (snap,) = user.ok("GET", f"/tasks/{uuid}/snapshots")
    snap_files = [k[len(snap["directory"]) :] for k in user.keys("resumed-out", snap["directory"])]
    assert sorted(snap_files) == ["changed.txt", "new.txt"]
    assert snap["filesRead"] == 2 and snap["filesReused"] == 0, snap

    # a restart of the restart: the first task's files and the second one's changes
    again = user.submit(
        "python3 ls.py",
        name="resumed-again",
        advancedResourceBuckets=tools(),
        resumeFrom={"taskUuid": uuid},
    )
    task = user.wait(again)
    assert task["state"] == "Success"
    assert task["resumeFrom"] == {"taskUuid": uuid, "snapshotId": snap["id"]}
    third = lines(user.get(f"/tasks/{again}/stdout").text)
    final = lines(after)
    assert third["run.sh"] == source["run.sh"]  # the override was an input of the second task
    assert {p: v for p, v in third.items() if p != "run.sh"} == {
        p: v for p, v in final.items() if p != "run.sh"
    }
    assert third["changed.txt"] != source["changed.txt"]


def test_resume_from_is_validated(server: ServerProcess, user: Api, failed: dict[str, str]) -> None:
    stranger = server.user("stranger")
    msg = refused(stranger, {"taskUuid": failed["uuid"]}, 404)
    assert msg == f"resumeFrom: task {failed['uuid']} not found"
    msg = refused(user, {"taskUuid": failed["uuid"], "snapshotId": "nope"}, 404)
    assert "snapshot nope" in msg
    assert "resumeFrom" in refused(user, {"snapshotId": failed["snapshot"]}, 400)
    assert "resumeFrom" in refused(user, "latest", 400)

    bare = user.submit("true", name="no-snapshots")
    user.wait(bare)
    msg = refused(user, {"taskUuid": bare, "snapshotId": "latest"}, 409)
    assert msg == f"resumeFrom: task {bare} has no successful snapshot to resume from"

    # a snapshot over the hard limit fails: it cannot be restored
    too_big = user.submit(
        "head -c 2000000 /dev/zero > big; hpcsnap job snapshot > /dev/null", name="too-big"
    )
    user.wait(too_big)
    (snap,) = user.ok("GET", f"/tasks/{too_big}/snapshots")
    assert snap["status"] == "Failure"
    msg = refused(user, {"taskUuid": too_big, "snapshotId": snap["id"]}, 409)
    assert "is Failure: only a successful snapshot can be restored" in msg
    assert "no successful snapshot" in refused(user, {"taskUuid": too_big}, 409)


def test_deleted_snapshots_are_not_restored(server: ServerProcess, user: Api) -> None:
    uuid = user.submit(
        "echo 1 > a; hpcsnap job snapshot --label one > /dev/null; "
        "echo 2 > a; hpcsnap job snapshot --label two > /dev/null",
        name="two-snapshots",
    )
    user.wait(uuid)
    one, two = user.ok("GET", f"/tasks/{uuid}/snapshots")
    assert (one["label"], two["label"]) == ("one", "two")
    # no API deletes a snapshot here (retention does): mark it as retention would
    with sqlite3.connect(server.data_dir / "hpcsnap.db") as db:
        db.execute(
            "UPDATE snapshots SET deleted_at = ? WHERE id = ?",
            (dt.datetime(2026, 1, 2, 3, 4, 5).isoformat(" "), two["id"]),
        )
    msg = refused(user, {"taskUuid": uuid, "snapshotId": two["id"]}, 409)
    assert "was deleted (2026-01-02 03:04:05 UTC)" in msg
    # "latest" is the newest one still there
    resumed = user.submit("cat a", name="latest-left", resumeFrom={"taskUuid": uuid})
    task = user.wait(resumed)
    assert task["resumeFrom"]["snapshotId"] == one["id"]
    assert user.get(f"/tasks/{resumed}/stdout").text == "1\n"


def test_a_snapshot_deleted_while_the_task_waits_fails_it(
    server: ServerProcess, user: Api, failed: dict[str, str]
) -> None:
    uuid = user.submit(
        "echo x > a; hpcsnap job snapshot > /dev/null", name="soon-deleted", resultBucket="soon"
    )
    user.wait(uuid)
    (snap,) = user.ok("GET", f"/tasks/{uuid}/snapshots")
    # every slot busy: the resumed task waits in the queue
    blocker = "trap 'exit 143' TERM; while :; do sleep 0.2; done"
    blockers = [
        user.submit(blocker, name="blocker") for _ in range(user.ok("GET", "/info")["slots"])
    ]
    for b in blockers:
        user.wait(b, {"FullyExecuting"})
    queued = user.submit("cat a", name="queued", resumeFrom={"taskUuid": uuid})
    assert user.task(queued)["state"] == "Submitted"
    with sqlite3.connect(server.data_dir / "hpcsnap.db") as db:
        db.execute(
            "UPDATE snapshots SET deleted_at = ? WHERE id = ?",
            (dt.datetime(2026, 1, 2, 3, 4, 5).isoformat(" "), snap["id"]),
        )
    for b in blockers:
        user.ok("POST", f"/tasks/{b}/abort")
    task = user.wait(queued)
    assert task["state"] == "Failure"
    (error,) = [e["message"] for e in task["errors"]]
    assert "cannot restore /job from the snapshot this task resumes from" in error
    assert f"snapshot {snap['id']} of task {uuid} was deleted" in error
