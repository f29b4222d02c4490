"""The full garbage-collection sweep (``hpcsnap admin gc``, ``POST /v1/admin/gc``) and bucket
deletion freeing content, on a real server with a real agent; the local store here, S3
(``rclone serve s3``) for the blob ages the sweep relies on."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import xxhash

from hpcsnap.blobstore import ContentStore, LocalBackend, open_backend
from tests.services import S3Server
from tests.support import Api, ServerProcess, hpcsnap


def digest(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def namespace_dir(server: ServerProcess, some_digest: str) -> Path:
    (found,) = (server.data_dir / "blobs" / "objects").glob(f"*/{some_digest[:2]}/{some_digest}")
    return found.parent.parent


def stored(ns: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in ns.rglob("*") if p.is_file()}


def admin(server: ServerProcess) -> Api:
    assert server.admin_token
    return Api(server.url, server.admin_token)


def test_sweep_frees_exactly_the_unreferenced_old_blobs(
    server: ServerProcess, tmp_path: Path
) -> None:
    user = server.user("sweeper")
    # a live snapshot whose m.bin is no key any more (its key deleted): only its manifest holds it
    uuid = user.submit(
        "head -c 150000 /dev/urandom > m.bin; echo kept > k.txt; "
        "hpcsnap job snapshot --label s >/dev/null; rm m.bin",
        resultBucket="gc-res",
    )
    assert user.wait(uuid)["state"] == "Success"
    (snap,) = user.ok("GET", f"/tasks/{uuid}/snapshots")
    m_bin = user.download("gc-res", snap["directory"] + "m.bin")
    user.ok("DELETE", f"/buckets/gc-res/files/{snap['directory']}m.bin")

    keep, old, gone, shared = (os.urandom(40_000 + i) for i in range(4))
    user.ok("POST", "/buckets", json={"name": "gc-up"})
    user.upload("gc-up", "keep.bin", keep)
    user.upload("gc-up", "over.bin", old)
    user.upload("gc-up", "over.bin", b"new content")  # the old content is referenced no more
    user.upload("gc-up", "gone.bin", gone)
    user.ok("DELETE", "/buckets/gc-up/files/gone.bin")
    user.upload("gc-up", "shared-1.bin", shared)
    user.upload("gc-up", "shared-2.bin", shared)
    user.ok("DELETE", "/buckets/gc-up/files/shared-1.bin")  # still held by shared-2.bin

    ns = namespace_dir(server, digest(keep))
    store = ContentStore(LocalBackend(server.data_dir / "blobs"), ns.name)
    torn = tmp_path / "torn"  # what an agent killed before its commit left behind
    torn.write_bytes(os.urandom(70_000))
    torn_digest = store.put_file(torn).digest
    hours_ago = time.time() - 2 * 3600
    for path in ns.rglob("*"):
        if path.is_file():
            os.utime(path, (hours_ago, hours_ago))
    young = tmp_path / "young"  # a capture's upload not committed yet
    young.write_bytes(os.urandom(30_000))
    young_digest = store.put_file(young).digest

    before = stored(ns)
    garbage = {digest(old), digest(gone), torn_digest}
    assert garbage | {digest(keep), digest(shared), digest(m_bin), young_digest} <= set(before)

    dry = admin(server).ok("POST", "/admin/gc", json={"dryRun": True})
    assert dry["dryRun"] is True and stored(ns) == before
    assert dry["freedBlobs"] >= len(garbage) and dry["youngBlobs"] >= 1

    report = admin(server).ok("POST", "/admin/gc", json={})
    after = stored(ns)

    assert set(before) - set(after) == garbage
    assert report["graceMinutes"] == 60 and report["dryRun"] is False
    assert report["freedBlobs"] == dry["freedBlobs"] >= len(garbage)
    assert sum(before.values()) - sum(after.values()) == sum(before[d] for d in garbage)
    # what is referenced stayed readable: keys, shared content, the live snapshot entirely
    assert user.download("gc-up", "keep.bin") == keep
    assert user.download("gc-up", "shared-2.bin") == shared
    assert user.download("gc-up", "over.bin") == b"new content"
    assert user.ok("POST", f"/tasks/{uuid}/snapshot/{snap['id']}/verify")["ok"] is True
    assert snap["manifestDigest"] in after and digest(m_bin) in after

    # young blobs go once they are older than the grace period
    again = admin(server).ok("POST", "/admin/gc", json={"graceMinutes": 0})
    assert set(after) - set(stored(ns)) == {young_digest} and again["freedBlobs"] >= 1
    assert admin(server).ok("POST", "/admin/gc", json={"graceMinutes": 0})["freedBlobs"] == 0


def test_only_an_administrator_may_sweep(server: ServerProcess) -> None:
    user = server.user("not-admin")
    resp = user.post("/admin/gc", json={"dryRun": True})
    assert resp.status_code == 403 and "administrator" in resp.json()["message"]
    assert server.anonymous().post("/admin/gc", json={}).status_code == 401
    bad = admin(server).post("/admin/gc", json={"graceMinutes": -1})
    assert bad.status_code == 400 and "graceMinutes" in bad.json()["message"]


def test_cli_admin_gc(server: ServerProcess) -> None:
    user = server.user("cli-sweeper")
    user.ok("POST", "/buckets", json={"name": "cli-gc"})
    user.upload("cli-gc", "f", os.urandom(10_000))
    user.upload("cli-gc", "f", b"other")
    env = {"HPCSNAP_URL": server.url, "HPCSNAP_TOKEN": server.admin_token or ""}
    dry = hpcsnap("admin", "gc", "--grace", "0", "--dry-run", env=env)
    assert "would free" in dry.stdout and "scanned" in dry.stdout
    out = hpcsnap("admin", "gc", "--grace", "0", "--json", env=env)
    assert '"freedBlobs"' in out.stdout
    denied = hpcsnap(
        "admin", "gc", env={**env, "HPCSNAP_TOKEN": user.http.headers["Authorization"]}, check=False
    )
    assert denied.returncode == 1 and "administrator" in denied.stderr


def test_deleting_a_bucket_frees_what_only_it_held(server: ServerProcess) -> None:
    user = server.user("purger")
    only, both = os.urandom(50_000), os.urandom(60_000)
    for bucket in ("purge-a", "purge-b"):
        user.ok("POST", "/buckets", json={"name": bucket})
    user.upload("purge-a", "only.bin", only)
    user.upload("purge-a", "both.bin", both)
    user.upload("purge-b", "copy.bin", both)
    ns = namespace_dir(server, digest(only))
    assert {digest(only), digest(both)} <= set(stored(ns))

    assert user.delete("/buckets/purge-a").status_code == 204

    assert digest(only) not in stored(ns) and digest(both) in stored(ns)
    assert user.download("purge-b", "copy.bin") == both


def snapshotted(user: Api, make: str, bucket: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    """A finished task that ran ``make`` then took one snapshot: its uuid and snapshot."""
    uuid = user.submit(
        make + "; hpcsnap job snapshot --label s >/dev/null", resultBucket=bucket, **fields
    )
    task = user.wait(uuid)
    assert task["state"] == "Success", user.get(f"/tasks/{uuid}/stderr").text
    (snap,) = user.ok("GET", f"/tasks/{uuid}/snapshots")
    assert snap["status"] == "Success", snap
    return uuid, snap


def test_deleting_a_task_frees_what_only_its_snapshots_held(server: ServerProcess) -> None:
    user = server.user("task-deleter")
    uuid_a, snap_a = snapshotted(user, "head -c 120000 /dev/urandom > a.bin", "del-a")
    a_bin = user.download("del-a", snap_a["directory"] + "a.bin")
    ns = namespace_dir(server, digest(a_bin))
    # the bucket (results and snapshot keys) goes first: the live snapshot still holds a.bin
    assert user.delete("/buckets/del-a").status_code == 204
    before = stored(ns)
    assert {digest(a_bin), snap_a["manifestDigest"]} <= set(before)

    assert user.delete(f"/tasks/{uuid_a}").status_code == 204

    after = stored(ns)
    assert set(before) - set(after) == {digest(a_bin), snap_a["manifestDigest"]}
    assert sum(before.values()) - sum(after.values()) > len(a_bin)


@pytest.mark.timeout(180)
def test_a_deleted_tasks_snapshot_stays_while_a_resumed_task_may_restore_it(
    server: ServerProcess,
) -> None:
    user = server.user("line-keeper")
    uuid_b, snap_b = snapshotted(user, "head -c 150000 /dev/urandom > b.bin", "del-b")
    b_bin = user.download("del-b", snap_b["directory"] + "b.bin")
    resumed = {"taskUuid": uuid_b, "snapshotId": snap_b["id"]}
    uuid_r, _ = snapshotted(user, "echo r > r.txt", "del-r", resumeFrom=resumed)
    ns = namespace_dir(server, digest(b_bin))
    assert user.delete("/buckets/del-b").status_code == 204
    assert user.delete(f"/tasks/{uuid_b}").status_code == 204
    kept = {digest(b_bin), snap_b["manifestDigest"]}
    assert kept <= set(stored(ns))  # R may be resumed from: its line restores b.bin

    # ... and it can: a restart from R's snapshot restores b.bin byte for byte (and the sweep
    # keeps it too)
    admin(server).ok("POST", "/admin/gc", json={"graceMinutes": 0})
    assert kept <= set(stored(ns))
    again = user.submit("sha256sum b.bin r.txt", name="again", resumeFrom={"taskUuid": uuid_r})
    assert user.wait(again)["state"] == "Success", user.get(f"/tasks/{again}/stderr").text
    out = user.get(f"/tasks/{again}/stdout").text
    assert f"{hashlib.sha256(b_bin).hexdigest()}  b.bin" in out, out

    # once no task that is not deleted has B's snapshot on its line, it goes
    assert user.delete(f"/tasks/{again}").status_code == 204
    assert kept <= set(stored(ns))  # R is still there
    assert user.delete(f"/tasks/{uuid_r}").status_code == 204
    assert not kept & set(stored(ns))


def test_the_sweep_frees_what_deleted_tasks_left(server: ServerProcess) -> None:
    """A task marked deleted without its collection (as after a crash): the sweep applies the
    same rule, keeping a line some task may restore."""
    user = server.user("sweep-deleted")
    uuid_c, snap_c = snapshotted(user, "head -c 90000 /dev/urandom > c.bin", "del-c")
    c_bin = user.download("del-c", snap_c["directory"] + "c.bin")
    uuid_d, snap_d = snapshotted(user, "echo d > d.txt", "del-d", resumeFrom={"taskUuid": uuid_c})
    ns = namespace_dir(server, digest(c_bin))
    assert user.delete("/buckets/del-c").status_code == 204
    kept = {digest(c_bin), snap_c["manifestDigest"]}

    def mark_deleted(uuid: str) -> None:
        with sqlite3.connect(server.data_dir / "hpcsnap.db") as db:
            db.execute("UPDATE tasks SET deleted = 1 WHERE uuid = ?", (uuid,))

    mark_deleted(uuid_c)
    admin(server).ok("POST", "/admin/gc", json={"graceMinutes": 0})
    assert kept <= set(stored(ns))  # D's line
    mark_deleted(uuid_d)
    admin(server).ok("POST", "/admin/gc", json={"graceMinutes": 0})
    left = set(stored(ns))
    assert not kept & left
    assert snap_d["manifestDigest"] not in left  # D's own snapshot: its keys hold d.txt only
    assert user.download("del-d", snap_d["directory"] + "d.txt") == b"d\n"


@pytest.fixture()
def s3_storage_server(s3_server: S3Server, tmp_path: Path) -> Any:
    bucket = s3_server.new_bucket("gc")
    srv = ServerProcess(tmp_path / "srv", **s3_server.server_env(bucket))
    srv.start()
    try:
        yield srv, open_backend(s3_server.description(bucket, prefix="blobs"))
    finally:
        srv.cleanup()


def test_sweep_on_s3_uses_the_blobs_age(s3_storage_server: Any) -> None:
    server, backend = s3_storage_server
    user = server.user("s3-sweeper")
    old, kept = os.urandom(20_000), os.urandom(30_000)
    user.ok("POST", "/buckets", json={"name": "s3-gc"})
    user.upload("s3-gc", "k", old)
    user.upload("s3-gc", "k", kept)
    keys = {k.rsplit("/", 1)[-1] for k in backend.list()}
    assert {digest(old), digest(kept)} <= keys

    young = admin(server).ok("POST", "/admin/gc", json={})  # both just written: kept
    assert young["freedBlobs"] == 0 and young["youngBlobs"] >= 2
    assert {k.rsplit("/", 1)[-1] for k in backend.list()} == keys

    swept = admin(server).ok("POST", "/admin/gc", json={"graceMinutes": 0})
    assert swept["freedBlobs"] == 1 and swept["freedBytes"] == len(old)
    assert {k.rsplit("/", 1)[-1] for k in backend.list()} == keys - {digest(old)}
    assert user.download("s3-gc", "k") == kept
