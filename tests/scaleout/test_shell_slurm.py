"""``hpcsnap shell`` into a task whose agent runs in a real Slurm job (it connects out to the
server's relay, as from a compute node)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import hpcsnap
from tests.scaleout.cluster import ClusterServer, start_server
from tests.services import SlurmCluster

WAITER = "trap 'exit 143' TERM; while [ ! -e stop ]; do sleep 0.1; done"


@pytest.fixture(scope="module")
def slurm_server(
    tmp_path_factory: pytest.TempPathFactory, slurm: SlurmCluster
) -> Iterator[ClusterServer]:
    server = start_server(
        tmp_path_factory.mktemp("shell-slurm"), {"HPCSNAP_EXECUTOR": "slurm", **slurm.env}
    )
    try:
        yield server
    finally:
        server.cleanup()


def test_shell_into_a_task_running_on_slurm(
    slurm_server: ClusterServer, slurm: SlurmCluster
) -> None:
    api = slurm_server.user("shell-slurm")
    uuid = api.submit(WAITER)
    api.wait(uuid, {"FullyExecuting"}, timeout=90)
    jobs = slurm.run("squeue", "--noheader", "--states=RUNNING", "--format=%j")
    assert f"hpcsnap-{uuid}" in jobs.split()
    token = str(api.http.headers["Authorization"])
    with hpcsnap.Connection(client_token=token, cluster_url=slurm_server.url) as conn:
        task = conn.retrieve_task(uuid)
        with task.shell("pwd; id -un; echo $HPCSNAP_TASK_UUID") as sh:
            assert sh.banner is not None and f"({uuid}) in /job" in sh.banner
            result = sh.communicate(timeout=60)
        assert result.stdout.decode().splitlines() == ["/job", "hpcsnap-task", uuid]
        assert result.exit_code == 0
        # the task ends from the shell; the session is closed with it
        with task.shell("touch stop; sleep 600") as sh:
            ended = sh.communicate(timeout=60)
        assert (ended.exit_code, ended.reason) == (None, "the task ended")
    assert api.wait(uuid, timeout=60)["state"] == "Success"
