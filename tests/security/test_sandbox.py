"""The task sandbox: a task's command cannot read what is not its own (issue #10, item 9).

A real task, in namespace mode (the server runs as root), tries to read the metadata DB, the
blob store, the admin token, the server's keys, another running task's /job, its own agent's
credential (/proc/<agent>/environ and cmdline, the agents' logs) and /root. Each attempt must fail
with a permission error or "no such file" and show no content. Direct mode (no root) runs the
command as the server's user: there it can read all of this, a documented limit of that mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import Api, ServerProcess, agent_pids, wait_for

SECRET = b"VICTIM-SECRET-58ab"


def _try(label: str, path: str, how: str = "cat") -> str:
    """A shell snippet printing ``label|exit code|what the command said`` (its output too)."""
    return f'printf "%s|" "{label}"; out=$({how} "{path}" 2>&1); echo "$?|$out" | head -c 300\n'


@pytest.mark.timeout(180)
def test_a_task_cannot_read_the_platform_or_other_tasks(server: ServerProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("namespace mode needs root (direct mode runs tasks as the server's user)")
    alice = server.user("sandbox-alice")
    mallory: Api = server.user("sandbox-mallory")
    alice.ok("POST", "/buckets", json={"name": "alice-in"})
    alice.upload("alice-in", "secret.txt", SECRET)
    victim = alice.submit(
        "cat secret.txt > copy.txt; sleep 600", advancedResourceBuckets=[{"bucketName": "alice-in"}]
    )
    alice.wait(victim, {"FullyExecuting"})
    data = server.data_dir
    victim_job = data / "work" / victim / "job"
    wait_for(lambda: (victim_job / "copy.txt").exists(), bool, 60, "the victim's copy")
    blobs = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    assert blobs, "the blob store holds alice's file"
    targets = [
        ("db", str(data / "hpcsnap.db"), "cat"),
        ("admin-token", str(data / "admin-token"), "cat"),
        ("seal-key", str(data / "s3-seal.key"), "cat"),
        ("web-secret", str(data / "web-secret"), "cat"),
        ("data-dir", str(data), "ls"),
        ("blob-dir", str(data / "blobs"), "ls"),
        ("blob", str(blobs[0]), "cat"),
        ("agents-logs", str(data / "agents"), "ls"),
        ("victim-dir", str(victim_job), "ls"),
        ("victim-file", str(victim_job / "copy.txt"), "cat"),
        ("root-home", "/root", "ls"),
    ]
    script = "".join(_try(label, path, how) for label, path, how in targets)
    # its own agent: the pid is handed over in a file the task reads when it exists
    script += (
        'while [ ! -s "$JOB_DIR/agent.pid" ]; do sleep 0.1; done\n'
        'pid=$(cat "$JOB_DIR/agent.pid")\n'
        + _try("agent-environ", "/proc/$pid/environ")
        + _try("agent-cmdline", "/proc/$pid/cmdline")
        + 'echo "uid|$(id -u)|"\n'
        + 'env | grep -c HPCSNAP_AGENT_TOKEN | sed "s/^/token-in-env|/"\n'
    )
    thief = mallory.submit(script)
    mallory.wait(thief, {"FullyExecuting", "Success", "Failure"})
    pids = agent_pids(thief)
    assert pids, f"no agent process for task {thief}"
    pid = pids[0]
    # the task's /job is its work dir; write the agent's host pid where it looks
    job = data / "work" / thief / "job"
    wait_for(job.exists, bool, 20, "the thief's /job")
    (job / "agent.pid").write_text(str(pid))
    task = mallory.wait(thief, timeout=60)
    assert task["jobMode"] == "namespace"
    out = mallory.get(f"/tasks/{thief}/stdout").text
    lines = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    assert set(lines) >= {label for label, _, _ in targets} | {"agent-environ", "uid"}, out
    for label, _, _ in [*targets, ("agent-environ", "", ""), ("agent-cmdline", "", "")]:
        code, said = lines[label].split("|", 1)
        assert code != "0" or not said, f"{label} was readable: {said!r}"
        assert "Permission denied" in said or "No such file" in said, (label, said)
        assert SECRET.decode() not in said and "hps_" not in said, (label, said)
    uid = int(lines["uid"].split("|")[0])
    assert uid != 0 and uid != os.geteuid()
    assert lines["token-in-env"] == "0"
    # the victim ran on untouched
    assert alice.task(victim)["state"] == "FullyExecuting"
    alice.ok("POST", f"/tasks/{victim}/abort")


def test_task_variables_reach_the_command_but_never_roots_tools(
    server: ServerProcess, tmp_path: Path
) -> None:
    """PATH, LD_* and friends of the task are the command's, exactly as given; the tools the
    agent runs as root on the way (setpriv, unshare, sh, mount) never see them."""
    if os.geteuid() != 0:
        pytest.skip("no root-side tools in direct mode")
    api: Api = server.user("sandbox-env")
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "fake-tool-ran"
    for name in ("mount", "setpriv", "unshare", "sh", "kill"):
        (fake / name).write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
        (fake / name).chmod(0o755)
    tmp_path.chmod(0o755)
    odd = "a b 'c' \"d\" $(touch /tmp/never) `x` ; \\ \n second line"
    constants = {
        "PATH": f"{fake}:/usr/bin:/bin",
        "LD_LIBRARY_PATH": "/nowhere",
        "IFS": "x",
        "ODD": odd,
        "DOCKER_CMD": 'printf "%s|" "$PATH" "$LD_LIBRARY_PATH" "$ODD" > env.txt; env > all.txt',
    }
    uuid = api.submit(
        constants["DOCKER_CMD"],
        constants=[{"key": k, "value": v} for k, v in constants.items()],
        resultBucket="env-out",
    )
    task = api.wait(uuid, timeout=60)
    assert task["state"] == "Success", task
    assert not marker.exists(), "a tool of the task's PATH ran as root"
    got = api.download("env-out", "env.txt").decode()
    assert got == f"{constants['PATH']}|/nowhere|{odd}|"
    everything = api.download("env-out", "all.txt").decode()
    assert "HPCSNAP_ENV_" not in everything  # the carried copies are gone
    assert not Path("/tmp/never").exists()
