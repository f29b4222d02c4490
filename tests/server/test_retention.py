"""Deleting snapshots, retention (keep the last N periodic), freeing unreferenced blobs, and
verifying stored content, on a real server with real agents and the local blob store."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from tests.cli.helpers import Cli, user_env
from tests.support import Api, ServerProcess, wait_for


@pytest.fixture(scope="module")
def user(server: ServerProcess) -> Api:
    return server.user("keeper")


def blob_files(server: ServerProcess) -> list[Path]:
    return [p for p in (server.data_dir / "blobs" / "objects").rglob("*") if p.is_file()]


def blob_path(server: ServerProcess, digest: str) -> Path:
    (found,) = (server.data_dir / "blobs" / "objects").glob(f"*/{digest[:2]}/{digest}")
    return found


def disk_bytes(server: ServerProcess) -> int:
    return sum(p.stat().st_size for p in blob_files(server))


def by_label(api: Api, uuid: str, *, deleted: bool = False) -> dict[str, dict]:
    snaps = api.ok("GET", f"/tasks/{uuid}/snapshots", params={"deleted": deleted})
    return {s["label"] or s["id"]: s for s in snaps}


def in_job_snapshots(api: Api, bucket: str) -> tuple[str, dict[str, dict]]:
    """A finished task with two in-job snapshots: ``one`` holds unique.bin (1 MB, only there)
    and shared.bin; ``two`` and the results hold shared.bin and two.txt."""
    uuid = api.submit(
        "head -c 1000000 /dev/urandom > unique.bin; head -c 400000 /dev/urandom > shared.bin; "
        "hpcsnap job snapshot --label one >/dev/null; rm unique.bin; echo two > two.txt; "
        "hpcsnap job snapshot --label two >/dev/null",
        resultBucket=bucket,
    )
    assert api.wait(uuid)["state"] == "Success"
    snaps = by_label(api, uuid)
    assert snaps["one"]["status"] == snaps["two"]["status"] == "Success"
    return uuid, snaps


def test_delete_frees_what_only_it_held_and_keeps_shared_content(
    user: Api, server: ServerProcess
) -> None:
    uuid, snaps = in_job_snapshots(user, "del-res")
    one, two = snaps["one"], snaps["two"]
    shared = user.download("del-res", one["directory"] + "shared.bin")
    before = disk_bytes(server)

    gone = user.ok("DELETE", f"/tasks/{uuid}/snapshot/{one['id']}")

    assert gone["deleted"] is True and gone["deletedAt"]
    assert gone["freedBytes"] >= 1_000_000
    assert before - disk_bytes(server) == gone["freedBytes"]
    assert user.keys("del-res", one["directory"]) == []
    # the content it shared with a kept snapshot and with the results stays intact
    assert user.download("del-res", two["directory"] + "shared.bin") == shared
    assert user.download("del-res", "shared.bin") == shared
    assert user.ok("POST", f"/tasks/{uuid}/snapshot/{two['id']}/verify")["ok"] is True
    # the record stays, listed only on request
    assert user.ok("GET", f"/tasks/{uuid}/snapshot/{one['id']}")["deleted"] is True
    assert set(by_label(user, uuid)) == {"two"}
    assert set(by_label(user, uuid, deleted=True)) == {"one", "two"}
    again = user.delete(f"/tasks/{uuid}/snapshots/{one['id']}")
    assert again.status_code == 409 and "already deleted" in again.json()["message"]
    verify = user.post(f"/tasks/{uuid}/snapshot/{one['id']}/verify")
    assert verify.status_code == 409 and "deleted" in verify.json()["message"]


def test_other_users_get_404(user: Api, server: ServerProcess) -> None:
    uuid, snaps = in_job_snapshots(user, "own-res")
    other = server.user("intruder")
    sid = snaps["two"]["id"]
    for method, url in (
        ("DELETE", f"/tasks/{uuid}/snapshot/{sid}"),
        ("DELETE", f"/tasks/{uuid}/snapshots/{sid}"),
        ("POST", f"/tasks/{uuid}/snapshot/{sid}/verify"),
        ("POST", f"/tasks/{uuid}/results/verify"),
    ):
        resp = other.request(method, url)
        assert resp.status_code == 404, (method, url, resp.text)
        assert "not found" in resp.json()["message"]
    assert user.request("DELETE", f"/tasks/{uuid}/snapshot/nope").status_code == 404
    assert user.ok("GET", f"/tasks/{uuid}/snapshot/{sid}")["deleted"] is False


def test_agent_stores_again_content_freed_under_it(user: Api, server: ServerProcess) -> None:
    """The agent reuses f.bin's digest from its first capture without uploading it again;
    deleting that capture freed the blob, so the server refuses the next commit and the agent
    reads f.bin and stores it again: the new snapshot is complete, never dangling."""
    uuid = user.submit(
        "head -c 300000 /dev/urandom > f.bin; hpcsnap job snapshot --label s1 >/dev/null; "
        "sleep 120",
        resultBucket="race-res",
    )
    s1 = wait_for(
        lambda: by_label(user, uuid).get("s1"),
        lambda s: s is not None and s["status"] == "Success",
        60,
        "snapshot s1",
    )
    content = user.download("race-res", s1["directory"] + "f.bin")
    digest = xxhash.xxh3_128(content).hexdigest()
    assert user.ok("DELETE", f"/tasks/{uuid}/snapshot/{s1['id']}")["freedBytes"] >= 300_000
    assert not list((server.data_dir / "blobs" / "objects").glob(f"*/{digest[:2]}/{digest}"))

    s2_id = user.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "s2"})["id"]
    s2 = user.wait_snapshot(uuid, s2_id)

    assert s2["status"] == "Success", s2.get("error")
    assert s2["filesRead"] == 1  # read again, not reused
    assert user.download("race-res", s2["directory"] + "f.bin") == content
    assert user.ok("POST", f"/tasks/{uuid}/snapshot/{s2_id}/verify")["ok"] is True

    # retention settings on a running task
    answer = user.ok(
        "POST", f"/tasks/{uuid}/snapshot/periodic", json={"interval": 0, "retention": 3}
    )
    assert answer["retention"] == 3 and user.task(uuid)["snapshotRetention"] == 3
    bad = user.post(f"/tasks/{uuid}/snapshot/periodic", json={"interval": 0, "retention": 0})
    assert bad.status_code == 400 and "retention" in bad.json()["message"]
    user.ok("POST", f"/tasks/{uuid}/abort")
    user.wait(uuid)


def test_submission_validates_retention(user: Api) -> None:
    for value in (0, -2, "many"):
        resp = user.post(
            "/tasks",
            json={
                "name": "r",
                "constants": [{"key": "DOCKER_CMD", "value": "true"}],
                "snapshotRetention": value,
            },
        )
        assert resp.status_code == 400 and "snapshotRetention" in resp.json()["message"], value


@pytest.fixture(scope="module")
def server_without_storing_ahead(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A server whose agents never store ahead: content stored ahead that no snapshot took (the
    file changed again before the next tick) waits for the full sweep, so storage would hold
    more than retention leaves."""
    with ServerProcess(tmp_path_factory.mktemp("server"), HPCSNAP_STORE_AHEAD="0") as srv:
        yield srv


def test_retention_keeps_the_last_n_periodic_and_storage_follows(
    server_without_storing_ahead: ServerProcess,
) -> None:
    server = server_without_storing_ahead
    api = server.user("rotator")
    uuid = api.submit(
        # files appear whole (rename), so no capture ever stores a torn copy
        "mkdir .w; head -c 200000 /dev/urandom > .w/k; mv .w/k keep.bin; "
        "for i in 1 2 3 4 5 6 7 8; do head -c 100000 /dev/urandom > .w/s; mv .w/s step.bin; "
        "if [ $i = 3 ]; then hpcsnap job snapshot --label mid >/dev/null; fi; sleep 1; done",
        resultBucket="rot-res",
        snapshotInterval=1,
        snapshotRetention=2,
        snapshotBlacklist=r"^\.w/",
        resultsBlacklist=r"^\.w/",
    )
    assert api.wait(uuid, timeout=90)["state"] == "Success"
    every = api.ok("GET", f"/tasks/{uuid}/snapshots", params={"deleted": True})
    periodic = [s for s in every if s["kind"] == "periodic" and s["status"] == "Success"]
    deleted = [s for s in every if s["deleted"]]
    live = [s for s in every if not s["deleted"]]
    assert len(periodic) >= 3, every  # so that retention had something to do

    # exactly the two newest successful periodic snapshots survive, plus the labelled one
    order = sorted(periodic, key=lambda s: s["triggerDate"])
    assert {s["id"] for s in live if s["kind"] == "periodic" and s["status"] == "Success"} == {
        s["id"] for s in order[-2:]
    }
    # the job's own snapshot, opened while periodic ones were: never failed as abandoned
    job = [(s["label"], s["status"]) for s in live if s["kind"] == "job"]
    assert job == [("mid", "Success")], every
    assert {s["id"] for s in deleted} == {s["id"] for s in order[:-2]}
    for s in deleted:  # each was deleted only once two newer periodic ones had succeeded
        newer = [p for p in periodic if p["triggerDate"] > s["triggerDate"]]
        deleted_at = dt.datetime.fromisoformat(s["deletedAt"])
        assert sum(dt.datetime.fromisoformat(p["lastUpdateDate"]) <= deleted_at for p in newer) >= 2
    keys = api.keys("rot-res")
    assert not [k for k in keys if any(k.startswith(s["directory"]) for s in deleted)]
    # the task's event stream says which snapshots retention deleted
    events = api.ok("GET", f"/tasks/{uuid}/events", params={"format": "json", "wait": 0})
    gone = [e for e in events["events"] if e["type"] == "snapshot.deleted"]
    assert {e["snapshotId"] for e in gone} == {s["id"] for s in deleted}, gone
    assert {e["reason"] for e in gone} == {"retention"}

    # storage holds exactly what live keys and live manifests reference
    listed = api.ok("GET", "/buckets/rot-res/files")
    referenced = {o["hash"] for o in listed} | {s["manifestDigest"] for s in live}
    namespace = blob_path(server, listed[0]["hash"]).parent.parent
    stored = {p.name: p.stat().st_size for p in namespace.rglob("*") if p.is_file()}
    assert set(stored) == referenced, ({d: stored.get(d) for d in set(stored) ^ referenced}, every)


def test_verify_finds_a_flipped_byte_and_a_missing_blob(
    server: ServerProcess, tmp_path: Path
) -> None:
    env = user_env(server, "verifier")
    cli = Cli(env, tmp_path)
    uuid = cli.out(
        "submit",
        "--results",
        "ver-res",
        "--wait",
        "--",
        "head -c 300000 /dev/urandom > a.bin; echo hello > b.txt; "
        "hpcsnap job snapshot --label v >/dev/null",
    )
    clean = cli("verify", uuid)
    assert "OK, 2 file(s)" in clean.stdout and "PROBLEMS" not in clean.stdout
    api = Api(server.url, env["HPCSNAP_TOKEN"])
    snap = by_label(api, uuid)["v"]
    hashes = {o["key"]: o["hash"] for o in api.ok("GET", "/buckets/ver-res/files")}

    a = blob_path(server, hashes[snap["directory"] + "a.bin"])
    data = bytearray(a.read_bytes())
    data[1234] ^= 0x01
    a.write_bytes(bytes(data))
    flipped = cli("verify", uuid, snap["id"][:8], rc=1)
    assert "corrupted  a.bin" in flipped.stdout and "PROBLEMS" in flipped.stdout

    blob_path(server, hashes["b.txt"]).unlink()
    reports = json.loads(cli("verify", uuid, "--json", rc=1).stdout)
    assert [(r.get("snapshot"), r.get("results")) for r in reports] == [
        (snap["id"], None),
        (None, "ver-res"),
    ]
    assert reports[0]["ok"] is False and reports[0]["corrupted"] == ["a.bin"]
    assert reports[0]["missing"] == ["b.txt"] and reports[0]["files"] == 2
    assert reports[1]["corrupted"] == ["a.bin"] and reports[1]["missing"] == ["b.txt"]
