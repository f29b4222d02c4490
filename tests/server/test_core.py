"""The platform core against a real server process running real tasks (issue: platform core)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support import Api, ServerProcess, wait_for


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> Api:
    return server.user("alice")


def test_happy_path_stage_run_results(alice: Api) -> None:
    alice.ok("POST", "/buckets", json={"name": "inputs"})
    alice.upload("inputs", "input.txt", b"a\nb\nc\n")
    uuid = alice.submit(
        "wc -l input.txt > count.txt; echo done",
        advancedResourceBuckets=[{"bucketName": "inputs"}],
        resultBucket="outputs",
    )
    task = alice.wait(uuid)
    assert task["state"] == "Success", task
    assert task["exitCode"] == 0
    assert alice.download("outputs", "count.txt") == b"3 input.txt\n"
    # unchanged inputs are not results: they are already in the resource bucket
    assert alice.keys("outputs") == ["count.txt"]
    assert alice.get(f"/tasks/{uuid}/stdout").text == "done\n"
    assert task["resultsCount"] >= 1
    assert task["creationDate"].endswith("Z") and "." not in task["creationDate"]


def test_runs_unprivileged_in_job_and_cannot_read_server_data(
    alice: Api, server: ServerProcess
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the /job namespace and task user need root")
    db = server.data_dir / "hpcsnap.db"
    uuid = alice.submit(
        f"id -u; pwd; echo $JOB_DIR; cat {db} > stolen 2>/dev/null || echo denied; "
        f"ls {server.data_dir} 2>/dev/null || echo denied-dir; ps -e | wc -l; nice"
    )
    task = alice.wait(uuid)
    out = alice.get(f"/tasks/{uuid}/stdout").text.split("\n")
    assert task["jobMode"] == "namespace"
    assert out[0] != "0"
    assert out[1] == "/job" and out[2] == "/job"
    assert out[3] == "denied" and out[4] == "denied-dir"
    # own PID namespace: only the task's processes are visible (header + sh + ps + wc)
    assert int(out[5]) <= 6
    # snapshot work is niced per thread; the task keeps its normal priority
    assert out[6] == "0"


def test_failure_keeps_exit_code_and_uploads_results(alice: Api) -> None:
    uuid = alice.submit("echo partial > out.dat; echo oops >&2; exit 3", resultBucket="fail-out")
    task = alice.wait(uuid)
    assert task["state"] == "Failure"
    assert task["exitCode"] == 3
    assert any("code 3" in e["message"] for e in task["errors"])
    assert alice.download("fail-out", "out.dat") == b"partial\n"
    assert alice.get(f"/tasks/{uuid}/stderr").text == "oops\n"


def test_results_filters(alice: Api) -> None:
    uuid = alice.submit(
        "mkdir -p out processor0; echo 1 > out/a.txt; echo 2 > out/b.tmp; echo 3 > top.txt;"
        "echo 4 > processor0/U",
        resultBucket="filtered",
        resultsWhitelist=r"out/.*|.*\.txt",
        resultsBlacklist=r".*\.tmp",
    )
    assert alice.wait(uuid)["state"] == "Success"
    assert sorted(alice.keys("filtered")) == ["out/a.txt", "top.txt"]


def test_abort_kills_the_whole_tree_and_skips_results(alice: Api) -> None:
    marker = f"hpcsnap-abort-{time.time_ns()}"
    uuid = alice.submit(
        f"echo x > kept.txt; cp /bin/sleep {marker}; ./{marker} 300 & setsid sleep 301 & sleep 302",
        resultBucket="aborted",
    )
    alice.wait(uuid, {"FullyExecuting"})
    # the whole tree runs before the abort (the last process started in the background is
    # the setsid one): otherwise the check below would pass with nothing to kill
    wait_for(
        lambda: [p for p in Path("/proc").iterdir() if b"sleep\x00301" in _cmdline(p)],
        bool,
        30,
        "the command's processes",
    )
    alice.ok("POST", f"/tasks/{uuid}/abort")
    task = alice.wait(uuid)
    assert task["state"] == "Cancelled"
    assert alice.keys("aborted") == []

    def leftovers() -> list[str]:
        found = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    cmd = (p / "cmdline").read_bytes()
                    stat = (p / "stat").read_text()
                except OSError:
                    continue
                if (marker.encode() in cmd or b"sleep\x00301" in cmd) and ") Z " not in stat:
                    found.append(p.name)
        return found

    wait_for(leftovers, lambda x: not x, 15, "the task's processes to end")
    resp = alice.post(f"/tasks/{uuid}/abort")
    assert resp.status_code == 403 and "already completed" in resp.json()["message"]


def test_abort_with_upload_results_on_cancellation(alice: Api) -> None:
    uuid = alice.submit(
        "echo kept > kept.txt; echo ready; sleep 300",
        resultBucket="cancel-up",
        uploadResultsOnCancellation=True,
    )
    alice.wait_output(uuid, "^ready$")
    alice.ok("POST", f"/tasks/{uuid}/abort")
    assert alice.wait(uuid)["state"] == "Cancelled"
    assert alice.download("cancel-up", "kept.txt") == b"kept\n"


def test_wall_time_limit(alice: Api) -> None:
    start = time.monotonic()
    uuid = alice.submit("echo begun > begun.txt; sleep 120", wallTimeLimit=2, resultBucket="wall")
    task = alice.wait(uuid, timeout=60)
    assert time.monotonic() - start < 30
    assert task["state"] == "Failure"
    assert any("wall-time" in e["message"] for e in task["errors"])
    assert alice.download("wall", "begun.txt") == b"begun\n"
    snaps = alice.ok("GET", f"/tasks/{uuid}/snapshots")
    assert [s["kind"] for s in snaps] == ["final"] and snaps[0]["status"] == "Success"


def test_fresh_stdout_returns_only_new_output(alice: Api) -> None:
    uuid = alice.submit("echo one; sleep 5; echo two")  # far apart: "two" is not read with "one"
    wait_for(lambda: alice.get(f"/tasks/{uuid}/stdout").text, lambda t: "one" in t, 30, "one")
    assert alice.post(f"/tasks/{uuid}/stdout").text == "one\n"
    alice.wait(uuid)
    assert alice.post(f"/tasks/{uuid}/stdout").text == "two\n"
    assert alice.post(f"/tasks/{uuid}/stdout").text == ""
    assert alice.get(f"/tasks/{uuid}/stdout").text == "one\ntwo\n"
    resp = alice.get(f"/tasks/{uuid}/stdout")
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"


def test_delete_task(alice: Api) -> None:
    uuid = alice.submit("sleep 300", resultBucket="deleted-task")
    alice.wait(uuid, {"FullyExecuting"})
    assert alice.delete(f"/tasks/{uuid}").status_code == 204
    assert alice.get(f"/tasks/{uuid}").status_code == 404
    assert uuid not in [t["uuid"] for t in alice.ok("GET", "/tasks")]


def test_two_users_are_isolated(server: ServerProcess, alice: Api) -> None:
    bob = server.user("bob")
    alice.ok("POST", "/buckets", json={"name": "secret"})
    alice.upload("secret", "k.txt", b"alice's")
    uuid = alice.submit("echo hi", resultBucket="secret-out")
    alice.wait(uuid)
    for method, url in [
        ("GET", f"/tasks/{uuid}"),
        ("GET", f"/tasks/{uuid}/stdout"),
        ("POST", f"/tasks/{uuid}/abort"),
        ("DELETE", f"/tasks/{uuid}"),
        ("GET", f"/tasks/{uuid}/snapshots"),
        ("GET", "/buckets/secret/files"),
        ("GET", "/buckets/secret/files/k.txt"),
        ("DELETE", "/buckets/secret/files/k.txt"),
        ("DELETE", "/buckets/secret"),
    ]:
        resp = bob.request(method, url)
        assert resp.status_code == 404, (method, url, resp.status_code)
        assert "alice" not in resp.text
    assert uuid not in [t["uuid"] for t in bob.ok("GET", "/tasks")]
    assert "secret" not in [b["name"] for b in bob.ok("GET", "/buckets")]
    # bob cannot use alice's bucket as a resource either
    resp = bob.post(
        "/tasks",
        json={
            "name": "x",
            "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
            "advancedResourceBuckets": [{"bucketName": "secret"}],
        },
    )
    assert resp.status_code == 404
    # bob's bucket of the same name is his own
    bob.ok("POST", "/buckets", json={"name": "secret"})
    assert bob.keys("secret") == []
    assert alice.download("secret", "k.txt") == b"alice's"


def test_authentication_required(server: ServerProcess) -> None:
    anon = server.anonymous()
    assert anon.get("/health").status_code == 200
    for url in ("/tasks", "/buckets", "/settings", "/info"):
        resp = anon.get(url)
        assert resp.status_code == 401 and resp.json()["message"]
    bad = Api(server.url, "hps_not-a-token")
    assert bad.get("/tasks").status_code == 401
    bearer = server.user("carol")
    token = bearer.http.headers["Authorization"]
    assert Api(server.url, f"Bearer {token}").get("/tasks").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "x", "constants": []}, 400, "DOCKER_CMD"),
        (
            {
                "name": "x",
                "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
                "resultsWhitelist": "a(",
            },
            400,
            "resultsWhitelist",
        ),
        (
            {
                "name": "x",
                "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
                "snapshotBlacklist": "[z-a]",
            },
            400,
            "snapshotBlacklist",
        ),
        (
            {
                "name": "x",
                "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
                "advancedResourceBuckets": [{"bucketName": "nope-missing"}],
            },
            404,
            "nope-missing",
        ),
        (
            {
                "name": "x",
                "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
                "snapshotInterval": -1,
            },
            400,
            "snapshotInterval",
        ),
        (
            {
                "name": "x",
                "constants": [{"key": "1BAD", "value": "v"}, {"key": "DOCKER_CMD", "value": "ls"}],
            },
            400,
            "1BAD",
        ),
        ({"constants": [{"key": "DOCKER_CMD", "value": "ls"}]}, 400, "name"),
        (
            {
                "name": "x",
                "profile": "windows",
                "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
            },
            400,
            "profile",
        ),
        (
            {
                "name": "x",
                "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
                "wallTimeLimit": "soon",
            },
            400,
            "wallTimeLimit",
        ),
    ],
)
def test_bad_submissions_are_refused_with_the_field(
    alice: Api, body: dict[str, object], status: int, words: str
) -> None:
    before = len(alice.ok("GET", "/tasks"))
    resp = alice.post("/tasks", json=body)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["message"]
    assert len(alice.ok("GET", "/tasks")) == before


def test_malformed_json_and_bad_keys(alice: Api) -> None:
    resp = alice.post("/tasks", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "malformed JSON" in resp.json()["message"]
    alice.ok("POST", "/buckets", json={"name": "keys"})
    for key in ("%2E%2E/etc/passwd", "a/%2E%2E/%2E%2E/b", "%2E/x", "a/%00/b"):
        resp = alice.put(f"/buckets/keys/files/{key}", content=b"x")
        assert resp.status_code in (400, 404), (key, resp.status_code)
        if resp.status_code == 400:
            assert resp.json()["message"]
    resp = alice.post("/buckets", json={"name": "Bad_Name"})
    assert resp.status_code == 400 and "bucket name" in resp.json()["message"]
    assert alice.keys("keys") == []
    # duplicate slashes in URLs are merged, so "a//b" names the key "a/b"
    alice.upload("keys", "a//b", b"x")
    assert alice.keys("keys") == ["a/b"]


def test_bucket_files_roundtrip_and_delete_rules(alice: Api) -> None:
    alice.ok("POST", "/buckets", json={"name": "files"})
    alice.ok("POST", "/buckets", json={"name": "files"})  # idempotent
    big = os.urandom(3 << 20)
    alice.upload("files", "dir/big.bin", big)
    alice.upload("files", "dir/small.txt", b"small")
    assert alice.download("files", "dir/big.bin") == big
    listing = alice.ok("GET", "/buckets/files/files", params={"prefix": "dir/b"})
    assert [o["key"] for o in listing] == ["dir/big.bin"] and listing[0]["size"] == len(big)
    assert alice.delete("/buckets/files/files/dir/small.txt").status_code == 204
    assert alice.get("/buckets/files/files/dir/small.txt").status_code == 404
    uuid = alice.submit("sleep 300", advancedResourceBuckets=[{"bucketName": "files"}])
    resp = alice.delete("/buckets/files")
    assert resp.status_code == 409 and uuid in resp.json()["message"]
    alice.ok("POST", f"/tasks/{uuid}/abort")
    alice.wait(uuid)
    assert alice.delete("/buckets/files").status_code == 204


def test_settings_and_info(alice: Api) -> None:
    assert "storage" in alice.ok("GET", "/settings")
    info = alice.ok("GET", "/info")
    assert info["email"] == "alice@hpcsnap.local"
    assert info["jobMode"] in ("namespace", "direct")
    # clients that join URLs naively send double slashes
    token = alice.http.headers["Authorization"]
    url = str(alice.http.base_url).rstrip("/") + "//info"
    assert httpx.get(url, headers={"Authorization": token}).status_code == 200


def test_server_kill9_and_restart_keeps_tasks(fresh_server: ServerProcess) -> None:
    api = fresh_server.user("dora")
    uuid = api.submit(
        "for i in 1 2 3 4 5 6; do echo $i >> progress.txt; sleep 1; done", resultBucket="survivor"
    )
    api.wait(uuid, {"FullyExecuting"})
    fresh_server.kill9()
    time.sleep(2)
    fresh_server.start()
    task = api.wait(uuid, timeout=60)
    assert task["state"] == "Success", task
    assert api.download("survivor", "progress.txt") == b"1\n2\n3\n4\n5\n6\n"


def test_dead_agent_fails_its_task_and_takes_the_task_with_it(
    fresh_server: ServerProcess,
) -> None:
    api = fresh_server.user("erin")
    marker = f"hpcsnap-orphan-{time.time_ns()}"
    uuid = api.submit(f"cp /bin/sleep {marker}; ./{marker} 300 & wait")
    api.wait(uuid, {"FullyExecuting"})
    pids = [
        p.name
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and uuid.encode() in _cmdline(p) and b"hpcsnap.agent" in _cmdline(p)
    ]
    assert pids
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    task = api.wait(uuid, timeout=30)
    assert task["state"] == "Failure"
    assert any("agent" in e["message"] for e in task["errors"])
    if task["jobMode"] == "namespace":
        # no process of the task outlives its agent
        wait_for(
            lambda: [p for p in Path("/proc").iterdir() if marker.encode() in _cmdline(p)],
            lambda found: not found,
            15,
            "the task's processes to end with their agent",
        )


def test_slots_queue_tasks(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "slots", HPCSNAP_SLOTS="1")
    srv.start()
    try:
        api = srv.user("fay")
        first = api.submit("sleep 10")  # runs while its state and the other's are read
        second = api.submit("echo second")
        api.wait(first, {"FullyExecuting"})
        assert api.task(second)["state"] == "Submitted"
        assert api.wait(second)["state"] == "Success"
        assert api.task(first)["state"] == "Success"
    finally:
        srv.cleanup()


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


def test_abort_sends_sigterm_first_so_the_job_can_save_its_state(alice: Api) -> None:
    uuid = alice.submit(
        "trap 'echo saved > checkpoint.txt; exit 0' TERM; echo started; "
        "while :; do sleep 0.1; done",
        resultBucket="graceful",
        uploadResultsOnCancellation=True,
    )
    wait_for(lambda: alice.get(f"/tasks/{uuid}/stdout").text, lambda t: "started" in t, 30, "")
    alice.ok("POST", f"/tasks/{uuid}/abort")
    assert alice.wait(uuid)["state"] == "Cancelled"
    assert alice.download("graceful", "checkpoint.txt") == b"saved\n"


def test_abort_terminates_a_shell_loop_without_waiting_for_sigkill(alice: Api) -> None:
    """The command is not the PID namespace's init, so SIGTERM's default action applies."""
    uuid = alice.submit(
        "while :; do date +%s.%N >> ticks; echo tick; sleep 0.2; done",
        resultBucket="ticks",
        uploadResultsOnCancellation=True,
    )
    alice.wait_output(uuid, "^tick$")
    aborted_at = time.time()
    alice.ok("POST", f"/tasks/{uuid}/abort")
    assert alice.wait(uuid)["state"] == "Cancelled"
    last_tick = float(alice.download("ticks", "ticks").split()[-1])
    # under the 5 s of SIGKILL's delay, with room for the abort to reach the agent when loaded
    assert last_tick < aborted_at + 4.5, "the loop ran on until SIGKILL (5 s after SIGTERM)"
