"""The full garbage-collection sweep (``hpcsnap admin gc``, ``POST /v1/admin/gc``) and bucket
deletion freeing content, on a real server with a real agent; the local store here, S3
(``rclone serve s3``) for the blob ages the sweep relies on."""

from __future__ import annotations

import os
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
