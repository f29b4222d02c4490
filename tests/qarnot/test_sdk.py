"""The real ``qarnot`` SDK (2.23.0 from PyPI), unchanged, against a real hpcsnap server
(issue: Qarnot compatibility). The SDK's ``wait()``/``wait_snapshot()`` poll every 10 s, so the
main scenario runs once per module (``flow``) and the tests check what it left behind."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import qarnot
from qarnot.bucket import Bucket
from qarnot.exceptions import (
    MissingBucketException,
    MissingTaskException,
    MissingTaskInstanceException,
    QarnotGenericException,
    UnauthorizedException,
)

from tests.s3.helpers import S3User, error_code, s3_user
from tests.support import ServerProcess, wait_for

MiB = 1 << 20
COMMAND = (
    "mkdir -p out; echo héllo; for i in $(seq 1 8); do echo step $i > out/step.txt;"
    " echo $i >> log.txt; echo scratch > scratch.tmp; echo step $i; sleep 1; done;"
    " wc -l < input.txt > out/count.txt; md5sum data/big.bin | cut -c1-32 > out/big.md5;"
    " echo finished"
)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> S3User:
    return s3_user(server, "qalice")


def connect(server: ServerProcess, token: str, logger: logging.Logger | None = None) -> Any:
    """Exactly what a Qarnot user writes, with hpcsnap's URL."""
    return qarnot.Connection(cluster_url=server.url + "/v1", client_token=token, logger=logger)


@pytest.fixture(scope="module")
def conn(server: ServerProcess, alice: S3User) -> Any:
    return connect(server, alice.token)


def wait_state(task: Any, state: str, timeout: float = 30) -> None:
    def poll() -> str:
        task.update(True)
        return str(task.state)

    wait_for(poll, lambda s: s == state, timeout, f"task {task.uuid} to be {state}")


@dataclass
class Flow:
    uuid: str
    snapshot_id: str
    snapshot_done: bool
    snapshot_status: str
    early_stdout: str
    finished: bool
    state: str
    big_md5: str
    downloads: Path
    seconds: float


@pytest.fixture(scope="module")
def flow(conn: Any, tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """Buckets and resources with the SDK; a task with DOCKER_CMD, results and snapshot
    filters and ``snapshot(2)`` before submit; ``instant()`` + ``wait_snapshot``; ``wait``;
    ``download_results``."""
    tmp = tmp_path_factory.mktemp("flow")
    big = tmp / "big.bin"
    big.write_bytes(os.urandom(9 * MiB))  # 8 MiB and more: the SDK sends it in parts
    resources = conn.create_bucket("q-res")
    resources.add_string("a\nb\nc\n", "input.txt")
    resources.add_file(str(big), "data/big.bin")
    results = conn.create_bucket("q-out")

    task = conn.create_task("q-flow", "docker-batch", 1)
    task.constants["DOCKER_CMD"] = COMMAND
    task.resources = [resources]
    task.results = results
    task.snapshot_whitelist = r"out/.*|log\.txt"
    task.snapshot_blacklist = r".*\.tmp"
    task.results_whitelist = r"out/.*|.*\.txt"
    task.results_blacklist = r".*\.tmp"
    task.snapshot(2)
    start = time.monotonic()
    task.submit()
    wait_state(task, "FullyExecuting")
    # its first files are there once it printed its first step
    wait_for(task.stdout, lambda out: "step 1" in out.splitlines(), 30, "the first step")
    snapshot_id = task.instant()
    snapshot_done = task.wait_snapshot(snapshot_id, timeout=60)
    status = task.snapshot_status(snapshot_id)._status.status
    early = task.fresh_stdout()
    finished = task.wait(timeout=90)
    downloads = tmp / "results"
    task.download_results(str(downloads))
    return Flow(
        uuid=task.uuid,
        snapshot_id=snapshot_id,
        snapshot_done=snapshot_done,
        snapshot_status=status,
        early_stdout=early,
        finished=finished,
        state=task.state,
        big_md5=hashlib.md5(big.read_bytes()).hexdigest(),
        downloads=downloads,
        seconds=time.monotonic() - start,
    )


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_task_runs_to_success(flow: Flow) -> None:
    assert flow.finished and flow.state == "Success"
    assert flow.seconds < 60


def test_instant_snapshot_completes(flow: Flow, alice: S3User) -> None:
    assert flow.snapshot_done
    assert flow.snapshot_status.lower() == "success"
    snap = alice.api.ok("GET", f"/tasks/{flow.uuid}/snapshot/{flow.snapshot_id}")
    assert snap["kind"] == "manual" and snap["status"] == "Success"
    # the task's snapshot filters apply to a snapshot requested with null filters
    assert snap["snapshotConfig"]["whitelist"] == r"out/.*|log\.txt"
    files = tree(flow.downloads / snap["directory"])
    assert set(files) <= {"log.txt", "out/step.txt"} and "log.txt" in files


def test_periodic_snapshots_set_before_submit_ran(flow: Flow, alice: S3User) -> None:
    task = alice.api.task(flow.uuid)
    assert task["snapshotInterval"] == 2
    snaps = alice.api.ok("GET", f"/tasks/{flow.uuid}/snapshots")
    periodic = [s for s in snaps if s["kind"] == "periodic" and s["status"] == "Success"]
    assert len(periodic) >= 2
    assert task["resultsCount"] >= len(periodic) + 2  # each snapshot, the instant one, results


def test_download_results_has_results_and_every_snapshot(flow: Flow, alice: S3User) -> None:
    files = tree(flow.downloads)
    assert files["out/count.txt"] == b"3\n"
    # the 9 MiB resource, uploaded by the SDK in parts, was staged intact
    assert files["out/big.md5"].decode().strip() == flow.big_md5
    assert files["out/step.txt"] == b"step 8\n"
    assert "input.txt" not in files  # unchanged inputs are not results
    assert not any(name.endswith(".tmp") for name in files)
    snaps = alice.api.ok("GET", f"/tasks/{flow.uuid}/snapshots")
    directories = {s["directory"] for s in snaps if s["status"] == "Success"}
    assert len(directories) >= 3
    for directory in directories:
        for key in alice.api.keys("q-out", directory):
            assert files[key] == alice.api.download("q-out", key), key


def test_stdout_fresh_stdout_and_instances(flow: Flow, conn: Any) -> None:
    task = conn.retrieve_task(flow.uuid)
    whole = task.stdout()
    assert whole.startswith("héllo\n") and whole.endswith("finished\n")  # UTF-8 charset
    rest = task.fresh_stdout()
    assert flow.early_stdout + rest == whole
    assert task.fresh_stdout() == ""
    assert task.stdout(instanceId=0) == whole
    with pytest.raises(MissingTaskInstanceException):
        task.stdout(instanceId=1)
    assert task.stderr() == ""
    status = task.status  # a complete status object (the SDK's Status needs its lists)
    assert status.execution_progress == 100 and status.execution_time_by_cpu_model == []


def test_retrieve_task_from_a_second_connection(
    flow: Flow, server: ServerProcess, alice: S3User, tmp_path: Path
) -> None:
    other = connect(server, alice.token)
    task = other.retrieve_task(flow.uuid)
    assert task.state == "Success" and task.name == "q-flow"
    assert task.results.uuid == "q-out"  # builds Bucket(create=True): CreateBucket is idempotent
    assert [b.uuid for b in task.resources] == ["q-res"]
    assert task.snapshot_whitelist == r"out/.*|log\.txt"
    task.download_results(str(tmp_path / "again"))
    assert tree(tmp_path / "again") == tree(flow.downloads)
    with pytest.raises(UnauthorizedException):
        task.abort()  # already finished: 403


def test_buckets_with_the_sdk(server: ServerProcess, alice: S3User, tmp_path: Path) -> None:
    lines = Lines()
    logger = logging.getLogger("qarnot-sync-test")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    conn = connect(server, alice.token, logger)
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("same")
    (local / "sub" / "b.txt").write_text("same")
    (local / "big.bin").write_bytes(os.urandom(17 * MiB))
    bucket = conn.create_bucket("q-sync")
    bucket.sync_directory(str(local), verbose=True)
    assert any(line.startswith("Upload") for line in lines.lines)
    assert sorted(f.key for f in bucket.list_files()) == ["a.txt", "big.bin", "sub/b.txt"]
    # nothing changed: a second sync does nothing (listing ETags match local MD5s, "-N" ones too)
    lines.lines.clear()
    bucket.sync_directory(str(local), verbose=True)
    assert lines.lines == []
    # a rename is a same-bucket copy, not an upload
    (local / "sub" / "b.txt").rename(local / "c.txt")
    bucket.sync_directory(str(local), verbose=True)
    assert not any(line.startswith("Upload") for line in lines.lines)
    assert sorted(f.key for f in bucket.list_files()) == ["a.txt", "big.bin", "c.txt"]
    assert [f.key for f in bucket.directory("c")] == ["c.txt"]
    bucket.get_file("big.bin", str(tmp_path / "big.copy"))
    assert (tmp_path / "big.copy").read_bytes() == (local / "big.bin").read_bytes()
    assert "q-sync" in [b.uuid for b in conn.buckets()]
    assert conn.retrieve_bucket("q-sync").uuid == "q-sync"
    bucket.delete()  # GetBucketVersioning → ListObjectVersions → DeleteObjects → DeleteBucket
    assert "q-sync" not in [b.uuid for b in conn.buckets()]
    with pytest.raises(MissingBucketException):
        bucket.delete()


def write_seed_script(path: Path, server: ServerProcess, token: str, body: str) -> Path:
    header = (
        "import qarnot\n"
        "# Connect to Qarnot\n"
        f"conn = qarnot.Connection(cluster_url={server.url + '/v1'!r}, client_token={token!r})\n"
    )
    path.write_text(header + body)
    return path


SEED_MANUAL = """\
# Retrieve an existing task
task = conn.retrieve_task( "TASK-UUID" )
# Trigger a manual snapshot
task.instant()
"""

SEED_PERIODIC = """\
# Retrieve an existing task
task = conn.retrieve_task( "TASK-UUID" )
# Configure periodic snapshots (every hour)
task.snapshot(interval= 3600 )
# Configure periodic snapshots with filtering options
task.snapshot( 3600 )
"""


def test_seed_scripts_then_abort_then_purge(
    conn: Any, server: ServerProcess, alice: S3User, tmp_path: Path
) -> None:
    """The seed's scripts (``snapshot_periodic`` → ``snapshot``) on a running task, then
    ``abort`` and ``delete(purge_results=True)``."""
    task = conn.create_task("q-long", "docker-batch", 1)
    task.constants["DOCKER_CMD"] = "echo running > state.txt; sleep 300"
    task.results = conn.create_bucket("q-long-out")
    task.submit()
    wait_state(task, "FullyExecuting")
    for name, body in (("manual.py", SEED_MANUAL), ("periodic.py", SEED_PERIODIC)):
        script = write_seed_script(
            tmp_path / name, server, alice.token, body.replace("TASK-UUID", task.uuid)
        )
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    assert alice.api.task(task.uuid)["snapshotInterval"] == 3600
    # The seed's last lines set filters on the retrieved (launched) task: the SDK itself refuses
    # that before sending anything, on Qarnot as here; filters are set before submit.
    setters = SEED_PERIODIC.split("# Configure")[0] + 'task.snapshot_blacklist = r"processor\\d+"\n'
    script = write_seed_script(
        tmp_path / "setters.py", server, alice.token, setters.replace("TASK-UUID", task.uuid)
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert "can't set attribute on a launched task" in run.stderr
    manual = [s for s in alice.api.ok("GET", f"/tasks/{task.uuid}/snapshots")]
    assert [s["kind"] for s in manual] == ["manual"]
    with pytest.raises(ValueError):
        task.snapshot(-5)  # 400 → ValueError, as on Qarnot
    task.abort()
    assert task.state in ("PendingCancel", "Cancelled")
    started = time.monotonic()
    assert task.wait()  # PendingCancel ends wait() at once, as on Qarnot
    assert time.monotonic() - started < 5
    assert alice.api.wait(task.uuid)["state"] == "Cancelled"
    task.update(True)
    assert task.state == "Cancelled"
    uuid = task.uuid
    task.delete(purge_results=True)
    assert task.state == "Deleted" and task.uuid is None
    assert "q-long-out" not in [b.uuid for b in conn.buckets()]
    with pytest.raises(MissingTaskException):
        conn.retrieve_task(uuid)


def test_delete_a_running_task_cancels_it(conn: Any, alice: S3User) -> None:
    task = conn.create_task("q-doomed", "docker-batch", 1)
    task.constants["DOCKER_CMD"] = "sleep 300"
    task.submit()
    wait_state(task, "FullyExecuting")
    uuid = task.uuid
    task.delete()
    assert task.state == "Deleted"
    with pytest.raises(MissingTaskException):
        conn.retrieve_task(uuid)
    assert alice.api.get(f"/tasks/{uuid}").status_code == 404


def test_submission_errors(conn: Any, alice: S3User) -> None:
    task = conn.create_task("q-missing", "docker-batch", 1)
    task.constants["DOCKER_CMD"] = "true"
    task.resources = [Bucket(conn, "q-does-not-exist", create=False)]
    with pytest.raises(MissingBucketException):
        task.submit()
    good = conn.create_task("q-bulk-ok", "docker-batch", 1)
    good.constants["DOCKER_CMD"] = "true"
    bad = conn.create_task("q-bulk-bad", "docker-batch", 3)  # hpcsnap runs one instance
    bad.constants["DOCKER_CMD"] = "true"
    with pytest.raises(QarnotGenericException, match="400"):
        conn.submit_tasks([good, bad])
    assert good.uuid is not None and bad.uuid is None
    assert alice.api.wait(good.uuid)["state"] == "Success"


def test_bad_token_is_unauthorized(server: ServerProcess) -> None:
    with pytest.raises(UnauthorizedException):
        connect(server, "hps_not-a-token")


def test_second_user_cannot_see_the_first_users_buckets(flow: Flow, server: ServerProcess) -> None:
    bob = s3_user(server, "qbob")
    s3 = bob.client()
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "q-res" not in names and "q-out" not in names
    for call in (
        lambda: s3.list_objects(Bucket="q-out"),
        lambda: s3.get_object(Bucket="q-res", Key="input.txt"),
        lambda: s3.head_object(Bucket="q-out", Key="out/count.txt"),
    ):
        with pytest.raises(Exception) as denied:
            call()
        assert error_code(denied.value) in ("404", "NoSuchBucket")
    with pytest.raises(MissingTaskException):
        connect(server, bob.token).retrieve_task(flow.uuid)
