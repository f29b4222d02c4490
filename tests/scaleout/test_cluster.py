"""End to end on the scale-out shape: agents in Slurm jobs, metadata in PostgreSQL, blobs in S3
(all three real, started by ``tests/services.py``; skipped, saying why, where they cannot run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scaleout.cluster import (
    ClusterServer,
    acceptance,
    cluster_env,
    local_blob_sizes,
    s3_object_sizes,
    start_server,
)
from tests.services import MEASUREMENTS, Postgres, S3Server, SlurmCluster
from tests.support import Api, ServerProcess, wait_for


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: Postgres,
    s3_server: S3Server,
    slurm: SlurmCluster,
) -> Iterator[tuple[ClusterServer, str]]:
    bucket = s3_server.new_bucket("cluster")
    env = cluster_env(postgres.create_database("cluster"), s3_server, bucket, slurm)
    server = start_server(tmp_path_factory.mktemp("cluster"), env)
    try:
        yield server, bucket
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def user(cluster: tuple[ClusterServer, str]) -> Api:
    return cluster[0].user("cluster-user")


def slurm_jobs_of(slurm: SlurmCluster, task_uuid: str) -> list[tuple[str, str]]:
    out = slurm.run("squeue", "--noheader", "--states=all", "--format=%i %j %T")
    rows = [line.split() for line in out.splitlines()]
    return [(r[0], r[2]) for r in rows if r[1] == f"hpcsnap-{task_uuid}"]


@pytest.mark.parametrize("deployment", ["embedded", "slurm+postgresql+s3"])
def test_acceptance_scenario(deployment: str, request: pytest.FixtureRequest) -> None:
    """The same task + periodic + manual snapshot + results scenario on both shapes."""
    if deployment == "embedded":
        server: ServerProcess = request.getfixturevalue("server")
        acceptance(server.user("acceptance"), local_blob_sizes(server), deployment)
        return
    cluster_server, bucket = request.getfixturevalue("cluster")
    api: Api = request.getfixturevalue("user")
    s3: S3Server = request.getfixturevalue("s3_server")
    info = api.ok("GET", "/info")
    assert info["executor"] == "slurm" and info["jobMode"] == "namespace"
    acceptance(api, s3_object_sizes(s3, bucket), deployment)
    assert not list((cluster_server.data_dir / "blobs").glob("**/*")), "no local blob"
    assert not list(cluster_server.data_dir.glob("*.db")), "no SQLite database"


def test_usr1_before_the_time_limit_takes_a_final_snapshot(user: Api, slurm: SlurmCluster) -> None:
    uuid = user.submit("echo one > a.txt; echo ready; sleep 120", resultBucket="usr1")
    user.wait_output(uuid, "^ready$")
    ((job_id, state),) = slurm_jobs_of(slurm, uuid)
    assert state == "RUNNING"
    # what `--signal=B:USR1@grace` makes Slurm send before the time limit, sent now
    slurm.run("scancel", "--signal=USR1", "--batch", job_id)
    task = user.wait(uuid, timeout=30)
    assert task["state"] == "Failure"
    assert "wall-time limit of its job nearly reached" in task["errors"][-1]["message"]
    (final,) = user.ok("GET", f"/tasks/{uuid}/snapshots")
    assert final["kind"] == "final" and final["status"] == "Success"
    assert user.download("usr1", f"{final['directory']}a.txt") == b"one\n"
    assert user.download("usr1", "a.txt") == b"one\n"  # the results
    wait_for(lambda: slurm_jobs_of(slurm, uuid), lambda j: j[0][1] == "COMPLETED", 60, "end")


def test_credentials_never_reach_the_task(
    user: Api, s3_server: S3Server, slurm: SlurmCluster, cluster: tuple[ClusterServer, str]
) -> None:
    uuid = user.submit(
        "env > env.txt; cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null "
        "| tr '\\0' '\\n' > proc.txt; ls -la /proc > ps.txt; echo done",
        resultBucket="leak",
    )
    assert user.wait(uuid)["state"] == "Success"
    seen = b"".join(user.download("leak", k) for k in ("env.txt", "proc.txt"))
    assert b"HPCSNAP_AGENT_TOKEN" not in seen and b"hps_" not in seen
    assert s3_server.secret_key.encode() not in seen
    assert b"HPCSNAP_S3" not in seen and b"SLURM_CONF" not in seen
    # nor does the job script Slurm keeps, nor the server's log
    ((job_id, _),) = slurm_jobs_of(slurm, uuid)
    script = slurm.run("scontrol", "write", "batch_script", job_id, "-")
    assert script.startswith("#!/bin/sh") and "hps_" not in script
    assert s3_server.secret_key not in script
    assert s3_server.secret_key not in (cluster[0].root / "server.log").read_text()


def test_aborting_a_queued_task_cancels_its_job_at_once(user: Api, slurm: SlurmCluster) -> None:
    # a job holding every CPU of the node (once other jobs are done), so that the task's waits
    cpus = int(slurm.run("sinfo", "--noheader", "--format=%C").strip().split("/")[3])
    blocker = slurm.run(
        "sbatch", "--parsable", f"--cpus-per-task={cpus}", "--output=/dev/null", "--chdir=/",
        "--wrap=sleep 300",
    ).strip()  # fmt: skip
    try:
        wait_for(lambda: slurm.jobs(), lambda j: j.get(blocker) == "RUNNING", 60, "blocker")
        uuid = user.submit("echo never", resultBucket="queued")
        user.wait(uuid, {"FullyDispatched"})
        wait_for(lambda: slurm_jobs_of(slurm, uuid), lambda j: bool(j), 20, "the job")
        time.sleep(1.5)
        ((job_id, state),) = slurm_jobs_of(slurm, uuid)
        assert state == "PENDING"
        assert user.task(uuid)["state"] == "FullyDispatched"
        aborted = time.monotonic()
        user.ok("POST", f"/tasks/{uuid}/abort")
        task = user.wait(uuid, timeout=20)
        assert task["state"] == "Cancelled" and time.monotonic() - aborted < 10
        assert slurm_jobs_of(slurm, uuid) == [(job_id, "CANCELLED")]
    finally:
        slurm.run("scancel", blocker, check=False)


def test_two_servers_share_one_postgresql(
    tmp_path: Path, postgres: Postgres, s3_server: S3Server, slurm: SlurmCluster
) -> None:
    """Two ``hpcsnap serve`` on different ports, one database, one bucket, one cluster: every
    task is dispatched once, either server answers for any task, and a task outlives the
    server that started it. Agents started by A talk to B (A's public URL is B's)."""
    env = cluster_env(
        postgres.create_database("two"), s3_server, s3_server.new_bucket("two"), slurm
    )
    b = start_server(tmp_path / "b", env)
    a = start_server(tmp_path / "a", {**env, "HPCSNAP_PUBLIC_URL": b.url})
    try:
        via_a = a.user("shared")
        via_b = Api(b.url, via_a.http.headers["Authorization"])
        via_a.ok("POST", "/buckets", json={"name": "inputs"})
        via_a.upload("inputs", "in.txt", b"from A\n")
        assert via_b.download("inputs", "in.txt") == b"from A\n"
        uuids = [
            (via_a if i % 2 else via_b).submit(
                f"cat in.txt > out.txt; echo {i} >> out.txt",
                resultBucket=f"two-{i}",
                advancedResourceBuckets=[{"bucketName": "inputs"}],
            )
            for i in range(4)
        ]
        for i, uuid in enumerate(uuids):
            assert via_a.wait(uuid)["state"] == "Success"
            assert via_b.download(f"two-{i}", "out.txt") == f"from A\n{i}\n".encode()
            assert len(slurm_jobs_of(slurm, uuid)) == 1, "dispatched exactly once"
        # a task started through A, snapshotted and finished through B while A is down
        uuid = via_a.submit(
            "for i in $(seq 1 6); do echo $i >> n.txt; sleep 1; done", resultBucket="outlive"
        )
        via_a.wait(uuid, {"FullyExecuting"})
        a.stop()
        snap = via_b.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "via-b"})["id"]
        assert via_b.wait_snapshot(uuid, snap)["status"] == "Success"
        assert via_b.wait(uuid)["state"] == "Success"
        assert via_b.download("outlive", "n.txt") == b"1\n2\n3\n4\n5\n6\n"
        assert {t["uuid"] for t in via_b.ok("GET", "/tasks")} >= {*uuids, uuid}
        MEASUREMENTS["two servers: tasks dispatched once each"] = (
            f"{len(uuids) + 1} of {len(uuids) + 1}"
        )
    finally:
        a.cleanup()
        b.cleanup()


@pytest.mark.skipif(
    not os.environ.get("HPCSNAP_TEST_SLURM_TIMEOUT"),
    reason="waits for Slurm's own time limit (1 to 2 minutes): set HPCSNAP_TEST_SLURM_TIMEOUT=1 "
    "to run it",
)
def test_slurm_time_limit_ends_the_task_after_a_final_snapshot(
    tmp_path: Path, postgres: Postgres, s3_server: S3Server, slurm: SlurmCluster
) -> None:
    """The real thing: a 1-minute Slurm limit, SIGUSR1 30 s before it (Slurm may send it up to
    a minute early), the final snapshot, then the task ends Failure before Slurm kills it."""
    env = cluster_env(
        postgres.create_database("limit"), s3_server, s3_server.new_bucket("limit"), slurm
    )
    server = start_server(tmp_path / "s", {**env, "HPCSNAP_SLURM_TIME_LIMIT": "1"})
    try:
        api = server.user("limited")
        uuid = api.submit("echo start > a.txt; sleep 600", resultBucket="limited")
        api.wait(uuid, {"FullyExecuting"})
        started = time.monotonic()
        task = api.wait(uuid, timeout=150)
        MEASUREMENTS["Slurm 1-minute limit: FullyExecuting → task ended"] = (
            f"{time.monotonic() - started:.0f} s"
        )
        assert task["state"] == "Failure"
        assert "wall-time limit of its job nearly reached" in task["errors"][-1]["message"]
        (final,) = api.ok("GET", f"/tasks/{uuid}/snapshots")
        assert final["kind"] == "final" and final["status"] == "Success"
        assert api.download("limited", "a.txt") == b"start\n"
        wait_for(lambda: slurm_jobs_of(slurm, uuid), lambda j: j[0][1] == "COMPLETED", 60, "end")
    finally:
        server.cleanup()
