"""Snapshots end to end: periodic, manual, in-job, final; filters; limits; hostile /job.

The acceptance scenario (periodic + labelled manual snapshot, incremental storage) runs on every
deployment shape in ``tests/scaleout/test_cluster.py``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support import REPO, Api, ServerProcess, wait_for

HEAT = REPO / "examples" / "heat" / "heat.py"


@pytest.fixture(scope="module")
def user(server: ServerProcess) -> Api:
    return server.user("snapper")


def snapshots(api: Api, uuid: str) -> list[dict]:
    return list(api.ok("GET", f"/tasks/{uuid}/snapshots"))


def test_seed_filters_on_a_decomposed_case(user: Api) -> None:
    user.ok("POST", "/buckets", json={"name": "heat-in"})
    user.upload("heat-in", "heat.py", HEAT.read_bytes())
    uuid = user.submit(
        # runs on for 5 s after "Time = 0.2": the three snapshots below are taken while it runs
        "python3 heat.py --np 2 --end-time 1.2 --write-interval 0.1 --step-seconds 0.5",
        snapshotBlacklist=r"processor\d+",
        resultBucket="heat-filters",
        advancedResourceBuckets=[{"bucketName": "heat-in"}],
    )
    user.wait(uuid, {"FullyExecuting"})
    wait_for(
        lambda: user.get(f"/tasks/{uuid}/stdout").text, lambda t: "Time = 0.2" in t, 30, "two steps"
    )
    black = user.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "black"})["id"]
    white = user.ok(
        "POST", f"/tasks/{uuid}/snapshot", json={"label": "white", "whitelist": r"log\..*"}
    )["id"]
    both = user.ok(
        "POST",
        f"/tasks/{uuid}/snapshot",
        json={"label": "both", "whitelist": r"processor0/", "blacklist": ""},
    )["id"]
    for sid in (black, white, both):
        assert user.wait_snapshot(uuid, sid)["status"] == "Success"
    user.wait(uuid)
    by_label = {s["label"]: s for s in snapshots(user, uuid)}
    keys = user.keys("heat-filters")

    def files(label: str) -> list[str]:
        d = by_label[label]["directory"]
        return sorted(k[len(d) :] for k in keys if k.startswith(d))

    assert "log.heatFoam" in files("black")
    assert not any(f.startswith("processor") for f in files("black"))
    assert files("white") == ["log.heatFoam"]
    # a whitelist given in the request replaces the task's; an empty blacklist clears it
    assert files("both") and all(f.startswith("processor0/") for f in files("both"))
    assert by_label["white"]["snapshotConfig"]["blacklist"] == r"processor\d+"


def test_in_job_snapshot_and_failed_task_keeps_snapshots(user: Api) -> None:
    uuid = user.submit(
        "echo mesh > mesh.txt; hpcsnap job snapshot --label mesh-done > reply.json; "
        "echo after >> mesh.txt; exit 4",
        resultBucket="injob",
    )
    task = user.wait(uuid)
    assert task["state"] == "Failure" and task["exitCode"] == 4
    snaps = snapshots(user, uuid)
    assert [(s["kind"], s["label"], s["status"]) for s in snaps] == [
        ("job", "mesh-done", "Success")
    ]
    d = snaps[0]["directory"]
    assert user.download("injob", f"{d}mesh.txt") == b"mesh\n"
    assert b'"status": "Success"' in user.download("injob", "reply.json")
    assert user.download("injob", "mesh.txt") == b"mesh\nafter\n"


def test_snapshot_rules(user: Api, server: ServerProcess) -> None:
    done = user.submit("echo x")
    user.wait(done)
    resp = user.post(f"/tasks/{done}/snapshot", json={})
    assert resp.status_code == 409 and "running" in resp.json()["message"]
    uuid = user.submit("sleep 60")
    user.wait(uuid, {"FullyExecuting"})
    assert user.get(f"/tasks/{uuid}/snapshot/nope").status_code == 404
    for body in ({"interval": -1}, {"interval": 5, "whitelist": "("}):
        resp = user.post(f"/tasks/{uuid}/snapshot/periodic", json=body)
        assert resp.status_code == 400, body
    resp = user.post(f"/tasks/{uuid}/snapshot", json={"label": "../../x"})
    assert resp.status_code == 400 and "label" in resp.json()["message"]
    # the SDK's instant() with nulls, and an empty body, both work
    sid = user.ok(
        "POST",
        f"/tasks/{uuid}/snapshot",
        json={"whitelist": None, "blacklist": None, "bucket": None, "bucketPrefix": None},
    )["id"]
    assert user.wait_snapshot(uuid, sid)["status"] == "Success"
    sid = user.ok("POST", f"/tasks/{uuid}/snapshot", content=b"")["id"]
    assert user.wait_snapshot(uuid, sid)["status"] == "Success"
    user.ok("POST", f"/tasks/{uuid}/abort")
    user.wait(uuid)


def test_periodic_set_while_running_changed_and_stopped(user: Api) -> None:
    uuid = user.submit(
        "for i in $(seq 1 120); do echo $i >> n.txt; sleep 0.5; done", resultBucket="periodic-later"
    )
    user.wait(uuid, {"FullyExecuting"})
    user.ok(
        "POST",
        f"/tasks/{uuid}/snapshot/periodic",
        json={
            "interval": 1,
            "whitelist": None,
            "blacklist": None,
            "bucket": None,
            "bucketPrefix": "ckpt",
        },
    )
    wait_for(lambda: snapshots(user, uuid), lambda s: len(s) >= 3, 60, "3 periodic snapshots")
    user.ok("POST", f"/tasks/{uuid}/snapshot/periodic", json={"interval": 0})
    time.sleep(1.5)
    count = len(snapshots(user, uuid))
    time.sleep(3)
    assert len(snapshots(user, uuid)) == count
    assert user.ok("GET", f"/tasks/{uuid}")["snapshotInterval"] == 0
    user.ok("POST", f"/tasks/{uuid}/abort")
    assert user.wait(uuid)["state"] == "Cancelled"
    snaps = snapshots(user, uuid)
    assert all(s["directory"].startswith("ckpt/snapshots/") for s in snaps)
    # still retrievable after the task was cancelled
    last = snaps[-1]
    numbers = user.download("periodic-later", last["directory"] + "n.txt").decode().split()
    assert numbers == [str(i) for i in range(1, len(numbers) + 1)]


def test_symlinks_and_fifos_in_job(user: Api) -> None:
    uuid = user.submit(
        "ln -s /etc/passwd passwd-link; ln -s /etc etc-link; mkfifo fifo; echo ok > real.txt;"
        "echo odd > \"$(printf 'bad\\377name')\"; echo ready; sleep 300",
        resultBucket="hostile",
    )
    user.wait_output(uuid, "^ready$")
    sid = user.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "hostile"})["id"]
    snap = user.wait_snapshot(uuid, sid, timeout=60)
    assert snap["status"] == "Success"
    user.ok("POST", f"/tasks/{uuid}/abort")
    user.wait(uuid)
    d = snap["directory"]
    captured = sorted(k[len(d) :] for k in user.keys("hostile") if k.startswith(d))
    # a name that is not UTF-8 is kept, its odd byte escaped in the key
    assert captured == ["bad\\xffname", "real.txt"]
    passwd = Path("/etc/passwd").read_bytes()
    for key in user.keys("hostile"):
        assert user.download("hostile", key) != passwd


def test_killed_mid_snapshot_is_failure_and_earlier_ones_intact(
    fresh_server: ServerProcess,
) -> None:
    api = fresh_server.user("crash")
    uuid = api.submit(
        "echo first > a.txt; echo ready; sleep 2;"
        "dd if=/dev/urandom of=big.bin bs=1M count=400 2>/dev/null; echo written; sleep 300",
        resultBucket="crash",
    )
    api.wait_output(uuid, "^ready$")
    first = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "first"})["id"]
    assert api.wait_snapshot(uuid, first)["status"] == "Success"
    api.wait_output(uuid, "^written$")  # big.bin is whole: the next capture reads 400 MB
    second = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "second"})["id"]
    wait_for(
        lambda: api.ok("GET", f"/tasks/{uuid}/snapshot/{second}"),
        lambda s: s["status"] == "InProgress",
        60,
        "capture in progress",
    )
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if uuid.encode() in cmd and b"hpcsnap.agent" in cmd:
            os.kill(int(p.name), signal.SIGKILL)
    snap = api.wait_snapshot(uuid, second, timeout=30)
    assert snap["status"] == "Failure" and snap["error"]
    assert api.wait(uuid, timeout=30)["state"] == "Failure"
    d = api.ok("GET", f"/tasks/{uuid}/snapshot/{first}")["directory"]
    assert api.download("crash", f"{d}a.txt") == b"first\n"
    second_dir = snap["directory"]
    assert not [k for k in api.keys("crash") if k.startswith(second_dir)]


def test_limits_and_minimum_interval(tmp_path: Path) -> None:
    srv = ServerProcess(
        tmp_path / "limits",
        HPCSNAP_SNAPSHOT_SOFT_LIMIT="4000",
        HPCSNAP_SNAPSHOT_HARD_LIMIT="100000",
        HPCSNAP_MIN_SNAPSHOT_INTERVAL="3",
    )
    srv.start()
    try:
        api = srv.user("limits")
        resp = api.post(
            "/tasks",
            json={
                "name": "x",
                "snapshotInterval": 2,
                "constants": [{"key": "DOCKER_CMD", "value": "ls"}],
            },
        )
        assert resp.status_code == 400 and "minimum of 3 s" in resp.json()["message"]
        uuid = api.submit(
            "head -c 5000 /dev/urandom > a.bin; hpcsnap job snapshot --label soft;"
            "head -c 200000 /dev/urandom > b.bin; hpcsnap job snapshot --label hard;"
            "rm b.bin; hpcsnap job snapshot --label after; echo alive"
        )
        task = api.wait(uuid)
        assert task["state"] == "Success", task
        assert api.get(f"/tasks/{uuid}/stdout").text.endswith("alive\n")
        snaps = {s["label"]: s for s in api.ok("GET", f"/tasks/{uuid}/snapshots")}
        assert snaps["soft"]["status"] == "Success"
        assert any("soft limit" in w for w in snaps["soft"]["warnings"])
        assert snaps["hard"]["status"] == "Failure"
        assert "limit" in snaps["hard"]["error"]
        assert snaps["after"]["status"] == "Success"
        d = snaps["after"]["directory"]
        assert [k[len(d) :] for k in api.keys(task["resultBucket"]) if k.startswith(d)] == ["a.bin"]
    finally:
        srv.cleanup()
