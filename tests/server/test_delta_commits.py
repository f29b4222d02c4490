"""Delta commits on a real server, SQLite and PostgreSQL: a commit that carries only the changes
since its parent publishes the whole snapshot, and one whose parent no longer holds the keys it
published is refused whole, leaving nothing published (the agent then sends every key; its side
is in tests/agent/test_delta_commit.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcsnap.blobstore import LocalBackend
from tests.reliability.helpers import Verifier
from tests.support import Api, ServerProcess, agent_token, wait_for

BUCKET = "delta"


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {}
    if request.param == "postgresql":
        env["HPCSNAP_DATABASE_URL"] = request.getfixturevalue("postgres").create_database("delta")
    with ServerProcess(tmp_path_factory.mktemp("delta"), **env) as server:
        yield server


def listing(api: Api, directory: str) -> dict[str, tuple[str, int]]:
    found = api.ok("GET", f"/buckets/{BUCKET}/files", params={"prefix": directory})
    return {o["key"][len(directory) :]: (o["hash"], o["size"]) for o in found}


def idle_task(api: Api, srv: ServerProcess) -> tuple[str, Path]:
    uuid = api.submit(
        "mkdir d; for f in a b c d/e; do echo $f > $f; done; "
        "while [ ! -e stop ]; do sleep 0.1; done",
        resultBucket=BUCKET,
    )
    api.wait(uuid, {"FullyExecuting"})
    job = srv.data_dir / "work" / uuid / "job"
    wait_for(lambda: (job / "d" / "e").exists(), bool, 30, "the job's files")
    return uuid, job


def manual(api: Api, uuid: str, label: str) -> dict[str, Any]:
    snap_id = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": label})["id"]
    snap = api.wait_snapshot(uuid, snap_id)
    assert snap["status"] == "Success", snap
    return snap


def test_a_delta_commit_publishes_the_whole_snapshot_and_a_bad_one_nothing(
    srv: ServerProcess,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: reads the agent's credential in /proc")
    api = srv.user("deltas")
    uuid, job = idle_task(api, srv)
    parent = manual(api, uuid, "p")
    keys = listing(api, parent["directory"])
    assert sorted(keys) == ["a", "b", "c", "d/e"]
    agent = Api(srv.url, agent_token(uuid))
    base = f"/agent/tasks/{uuid}"

    def opened(label: str) -> str:
        body = {"kind": "job", "label": label}
        return str(agent.ok("POST", f"{base}/snapshots", json=body)["id"])

    def commit(snap_id: str, **fields: Any) -> Any:
        body = {"files": [], "manifest_digest": parent["manifestDigest"], **fields}
        return agent.post(f"{base}/snapshots/{snap_id}/commit", json=body)

    changed = {"path": "b", "digest": keys["a"][0], "size": keys["a"][1], "mtime_ns": 5}
    added = {"path": "n/new", "digest": keys["c"][0], "size": keys["c"][1], "mtime_ns": 6}
    delta = {"parent_id": parent["id"], "base_files": 4, "removed": ["c"]}
    bad = opened("bad-cases")
    other_uuid, other_job = idle_task(api, srv)
    foreign = manual(api, other_uuid, "foreign")
    for fields, why in (
        ({**delta, "base_files": 5}, "holds 4 of the 5 keys"),
        ({**delta, "removed": ["c", "nope"]}, "1 removed path(s) were not in the parent"),
        ({**delta, "parent_id": foreign["id"]}, "is not a published snapshot"),
        ({**delta, "parent_id": "no-such-snapshot"}, "is not a published snapshot"),
    ):
        answer = commit(bad, files=[changed, added], **fields)
        assert answer.status_code == 409, answer.text
        assert answer.json()["baseChanged"] is True and why in answer.json()["message"], why
        assert api.ok("GET", f"/tasks/{uuid}/snapshot/{bad}")["status"] == "InProgress"
    bad_dir = api.ok("GET", f"/tasks/{uuid}/snapshot/{bad}")["directory"]
    assert not listing(api, bad_dir)  # nothing published by a refused commit

    good = opened("a-longer-label")  # its keys are longer than the parent's: checked
    answer = commit(good, files=[changed, added], **delta)
    assert answer.status_code == 200, answer.text
    snap = api.ok("GET", f"/tasks/{uuid}/snapshot/{good}")
    assert snap["status"] == "Success"
    assert listing(api, snap["directory"]) == {
        "a": keys["a"],
        "b": keys["a"],
        "d/e": keys["d/e"],
        "n/new": keys["c"],
    }
    assert listing(api, parent["directory"]) == keys  # the parent is untouched

    # a key of the parent deleted by its owner: the next delta over it is refused
    api.ok("DELETE", f"/buckets/{BUCKET}/files/" + parent["directory"] + "a")
    later = opened("later")
    answer = commit(later, **delta)
    assert answer.status_code == 409 and "holds 3 of the 4 keys" in answer.json()["message"]
    # ... and the real agent, whose parent that is, sends every key instead
    (job / "b").write_text("changed\n")
    after = manual(api, uuid, "after")
    Verifier(api, LocalBackend(srv.data_dir / "blobs")).check(after)
    assert sorted(listing(api, after["directory"])) == ["a", "b", "c", "d/e"]
    for path in (job / "stop", other_job / "stop"):
        path.write_text("")
    api.wait(uuid)
    api.wait(other_uuid)


def test_periodic_deltas_stay_whole_while_files_come_and_go(srv: ServerProcess) -> None:
    """The real agent's snapshots, each a delta over the previous one, against their
    manifests, byte for byte."""
    api = srv.user("periodic")
    uuid = api.submit(
        "for i in $(seq 1 30); do mkdir -p d$((i % 4)); echo $i > d$((i % 4))/f$i; "
        "rm -f d$(((i + 2) % 4))/f$((i - 3)); sleep 0.1; done",
        resultBucket=BUCKET,
        snapshotInterval=1,
    )
    assert api.wait(uuid)["state"] == "Success"
    snaps = [
        s
        for s in api.ok("GET", f"/tasks/{uuid}/snapshots")
        if s["status"] == "Success" and s["kind"] == "periodic"
    ]
    assert len(snaps) >= 2, snaps
    verifier = Verifier(api, LocalBackend(srv.data_dir / "blobs"))
    manifests = [verifier.check(s) for s in snaps]
    assert len({len(m) for m in manifests}) > 1  # files came and went between them
