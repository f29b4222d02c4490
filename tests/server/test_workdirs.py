"""Settings the server hands its agents: an ended task's working directory is deleted by its
agent unless the server keeps them (``HPCSNAP_KEEP_WORKDIRS``, used by bench/ to measure
without mass deletions); storing ahead can be turned off (``HPCSNAP_STORE_AHEAD``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Api, ServerProcess, agent_pids, agent_token, wait_for


@pytest.mark.parametrize("keep", [False, True])
def test_an_ended_tasks_workdir_is_deleted_unless_kept(tmp_path: Path, keep: bool) -> None:
    server = ServerProcess(tmp_path, **({"HPCSNAP_KEEP_WORKDIRS": "1"} if keep else {}))
    server.start()
    try:
        api = server.user("alice")
        uuid = api.submit("echo left > out.txt")
        assert api.wait(uuid, timeout=120)["state"] == "Success"
        wait_for(lambda: agent_pids(uuid), lambda pids: not pids, 60, "the agent to exit")
        job = server.data_dir / "work" / uuid / "job"
        if keep:
            assert (job / "out.txt").read_text() == "left\n"
        else:
            assert not job.exists()
    finally:
        server.cleanup()


def test_a_keep_setting_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    code = "from hpcsnap.server.config import Settings; Settings.from_env()"
    env = {"HPCSNAP_KEEP_WORKDIRS": "maybe", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "HPCSNAP_KEEP_WORKDIRS must be 1 or 0 (true or false), got 'maybe'" in done.stderr


@pytest.mark.parametrize("env", [{}, {"HPCSNAP_STORE_AHEAD": "0", "HPCSNAP_KEEP_WORKDIRS": "yes"}])
def test_the_spec_an_agent_gets_carries_the_servers_settings(
    tmp_path: Path, env: dict[str, str]
) -> None:
    server = ServerProcess(tmp_path, **env)
    server.start()
    try:
        api = server.user("alice")
        uuid = api.submit("sleep 60", snapshotInterval=5)
        api.wait(uuid, {"FullyExecuting"}, timeout=60)
        spec = Api(server.url, agent_token(uuid)).ok("GET", f"/agent/tasks/{uuid}/spec")
        assert spec["store_ahead"] is (not env)
        assert spec["keep_workdir"] is bool(env)
        api.ok("POST", f"/tasks/{uuid}/abort")
    finally:
        server.cleanup()
