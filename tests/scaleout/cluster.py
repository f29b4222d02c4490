"""Servers of the scale-out shape (Slurm + PostgreSQL + S3) for end-to-end tests, and the
acceptance scenario shared with the embedded default."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.services import MEASUREMENTS, Postgres, S3Server, SlurmCluster
from tests.support import Api, ServerProcess, hpcsnap


class ClusterServer(ServerProcess):
    """``hpcsnap serve`` configured by environment only (executor, database, storage)."""

    def user(self, name: str) -> Api:
        token = hpcsnap(
            "user", "create", name, "--data-dir", str(self.data_dir), env=self.env
        ).stdout.strip()
        return Api(self.url, token)


def cluster_env(pg_url: str, s3: S3Server, bucket: str, slurm: SlurmCluster) -> dict[str, str]:
    """The environment of a server using Slurm, PostgreSQL at ``pg_url`` and ``bucket``."""
    return {
        "HPCSNAP_EXECUTOR": "slurm",
        "HPCSNAP_SLURM_SIGNAL_GRACE": "30",
        "HPCSNAP_DATABASE_URL": pg_url,
        **s3.server_env(bucket),
        **slurm.env,
    }


def s3_object_sizes(s3: S3Server, bucket: str) -> Callable[[], list[int]]:
    """A function listing the sizes of every object stored in ``bucket``."""
    client: Any = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )

    def sizes() -> list[int]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [int(o["Size"]) for page in pages for o in page.get("Contents", ())]

    return sizes


def local_blob_sizes(server: ServerProcess) -> Callable[[], list[int]]:
    def sizes() -> list[int]:
        return [p.stat().st_size for p in (server.data_dir / "blobs").rglob("*") if p.is_file()]

    return sizes


def acceptance(user: Api, blob_sizes: Callable[[], list[int]], deployment: str) -> None:
    """A task writing a time step per second, periodic snapshots every 2 s, one labelled
    manual snapshot, results; every snapshot complete, incremental, content stored once.
    (The scenario of ``tests/server/test_snapshots.py``, with the blob store abstracted.)"""
    cmd = (
        "dd if=/dev/urandom of=mesh.bin bs=1M count=2 2>/dev/null; "
        "for i in $(seq 1 9); do mkdir -p $i; echo step $i > $i/U; echo t=$i >> log.run; "
        "echo step $i; sleep 1; done"
    )
    submitted = time.monotonic()
    uuid = user.submit(cmd, snapshotInterval=2, resultBucket="acceptance")
    user.wait(uuid, {"FullyExecuting"})
    MEASUREMENTS[f"{deployment}: task submitted → FullyExecuting"] = (
        f"{time.monotonic() - submitted:.2f} s"
    )
    user.wait_output(uuid, "^step 3$")  # mid-run, with its first files written
    posted = time.monotonic()
    snap_id = user.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "mid-run"})["id"]
    manual = user.wait_snapshot(uuid, snap_id)
    latency = time.monotonic() - posted
    MEASUREMENTS[f"{deployment}: manual snapshot, request → Success"] = f"{latency:.2f} s"
    assert manual["status"] == "Success", manual
    task = user.wait(uuid)
    assert task["state"] == "Success", task
    snaps = list(user.ok("GET", f"/tasks/{uuid}/snapshots"))
    periodic = [s for s in snaps if s["kind"] == "periodic" and s["status"] == "Success"]
    labelled = [s for s in snaps if s["label"] == "mid-run"]
    assert len(periodic) >= 3, snaps
    assert len(labelled) == 1 and labelled[0]["directory"].endswith("_mid-run/")
    keys = user.keys("acceptance")
    mesh = user.download("acceptance", "mesh.bin")  # the results
    assert user.download("acceptance", "log.run").decode().endswith("t=9\n")
    for snap in periodic + labelled:
        d = snap["directory"]
        assert d.startswith("snapshots/20") and d.endswith("/")
        mine = [k for k in keys if k.startswith(d)]
        assert len(mine) == snap["filesTotal"], (d, mine)
        assert f"{d}mesh.bin" in mine
        assert user.download("acceptance", f"{d}mesh.bin") == mesh
        steps = sorted(int(k[len(d) :].split("/")[0]) for k in mine if k.endswith("/U"))
        assert steps == list(range(1, len(steps) + 1))
        for step in steps:
            assert user.download("acceptance", f"{d}{step}/U") == f"step {step}\n".encode()
        assert user.download("acceptance", f"{d}log.run").decode().startswith("t=1\n")
    # incremental: the 2 MiB mesh was read once, then reused by every later snapshot
    ordered = sorted(periodic + labelled, key=lambda s: s["triggerDate"])
    assert all(s["filesReused"] >= 1 for s in ordered[1:])
    assert sum(s["bytesStored"] for s in ordered) < 2 * len(mesh)
    assert blob_sizes().count(len(mesh)) == 1


def start_server(root: Path, env: dict[str, str]) -> ClusterServer:
    server = ClusterServer(root, **env)
    server.start()
    return server


__all__ = ["Postgres", "S3Server", "SlurmCluster"]
