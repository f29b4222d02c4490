"""The executor contract, run against every executor with a real agent and a fake server.

To add an executor, append a factory to ``FACTORIES``: it takes a temp dir and returns the
executor and an id no job ever had. The Slurm factory needs the real one-node cluster of
``tests/services.py`` (root only; skipped, saying why, elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hpcsnap.executors import (
    TERMINAL_JOB_STATES,
    AgentLaunch,
    Executor,
    JobState,
    LocalExecutor,
    SlurmExecutor,
    SlurmOptions,
)
from hpcsnap.executors.commands import command_env
from hpcsnap.executors.local import MACHINE
from tests import services
from tests.executors.fakeapi import FakeAgentApi, fake_agent_api, task_spec
from tests.support import wait_for

TOKEN_PREFIX = "hps_agent_conformance_"


def local_factory(tmp: Path) -> tuple[Executor, str]:
    ex = LocalExecutor(work_dir=tmp / "work", log_dir=tmp / "agents", slots=2)
    return ex, f"1:1@{MACHINE}"


def slurm_factory(tmp: Path) -> tuple[Executor, str]:
    cluster = services.slurm()
    ex = SlurmExecutor(
        options=SlurmOptions(signal_grace=30),
        work_dir=tmp / "work",
        log_dir=tmp / "agent logs",  # a space: #SBATCH values are quoted
        env=command_env(cluster.env),
    )
    return ex, "987654"


FACTORIES: list[Callable[[Path], tuple[Executor, str]]] = [local_factory, slurm_factory]


@pytest.fixture(params=FACTORIES, ids=lambda f: f.__name__.removesuffix("_factory"))
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Executor, str]]:
    ex, bogus = request.param(tmp_path)
    yield ex, bogus


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[FakeAgentApi]:
    spec = task_spec(
        str(uuid.uuid4()),
        "echo started > out.txt; echo ready; sleep 60 # conformance",
        tmp_path / "blobs",
    )
    with fake_agent_api(spec) as fake:
        yield fake


def start(ex: Executor, api: FakeAgentApi) -> tuple[str, str, float]:
    token = TOKEN_PREFIX + uuid.uuid4().hex
    t0 = time.monotonic()
    job_id = ex.submit(AgentLaunch(task_uuid=api.spec.uuid, server_url=api.url, token=token))
    return job_id, token, t0


def processes_holding(needle: bytes, where: str) -> list[int]:
    pids = []
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit() and int(pid_dir.name) != os.getpid():
            try:
                if needle in (pid_dir / where).read_bytes():
                    pids.append(int(pid_dir.name))
            except OSError:
                continue
    return pids


def test_agent_runs_reports_and_is_cancelled(
    executor: tuple[Executor, str], api: FakeAgentApi
) -> None:
    ex, _ = executor
    job_id, token, t0 = start(ex, api)
    try:
        wait_for(api.states, lambda s: "FullyExecuting" in s, 60, "the agent to run the command")
        first = api.requests[0]
        services.MEASUREMENTS[f"{ex.name}: submit → agent's first request"] = (
            f"{first.at - (time.time() - (time.monotonic() - t0)):.2f} s"
        )
        assert {r.authorization for r in api.requests} == {token}
        # the credential is on no command line, and not in the task's environment
        task_pids = wait_for(
            lambda: processes_holding(b"# conformance", "cmdline"), bool, 30, "the command"
        )
        assert processes_holding(token.encode(), "cmdline") == []
        for pid in task_pids:
            with contextlib.suppress(OSError):
                assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        wait_for(
            lambda: ex.status([job_id]), lambda s: s.get(job_id) is JobState.RUNNING, 30, "RUNNING"
        )
        assert ex.cancel([job_id]) == {job_id: True}
        wait_for(api.states, lambda s: s[-1] == "Cancelled", 30, "the agent to report Cancelled")
        wait_for(
            lambda: ex.status([job_id]),
            lambda s: s.get(job_id) in TERMINAL_JOB_STATES,
            30,
            "the job to end",
        )
    finally:
        ex.cancel([job_id])


def test_a_job_nobody_ran_is_over(executor: tuple[Executor, str]) -> None:
    ex, bogus = executor
    assert ex.status([bogus])[bogus] in TERMINAL_JOB_STATES


def test_slurm_usr1_makes_a_final_snapshot_and_ends_the_task(
    api: FakeAgentApi, tmp_path: Path
) -> None:
    """What Slurm sends ``--signal=B:USR1@grace`` before the time limit, sent now."""
    cluster = services.slurm()
    ex, _ = slurm_factory(tmp_path)
    job_id, _, t0 = start(ex, api)
    try:
        while cluster.jobs().get(job_id) != "RUNNING":
            assert time.monotonic() - t0 < 30, "the job should start"
            time.sleep(0.02)
        services.MEASUREMENTS["Slurm: sbatch → job RUNNING (squeue)"] = (
            f"{time.monotonic() - t0:.2f} s"
        )
        wait_for(api.states, lambda s: "FullyExecuting" in s, 60, "the agent to run the command")
        wait_for(api.stdout, lambda out: "ready\n" in out, 30, "the command to write out.txt")
        cluster.run("scancel", "--signal=USR1", "--batch", job_id)
        wait_for(api.states, lambda s: s[-1] == "Failure", 30, "the agent to end the task")
        # the agent ended before Slurm's limit: the job completes on its own
        wait_for(cluster.jobs, lambda j: j.get(job_id) == "COMPLETED", 30, "job COMPLETED")
    finally:
        cluster.run("scancel", job_id, check=False)
    (opened,) = api.seen("POST", "/snapshots")
    assert opened.body["kind"] == "final"
    (commit,) = api.seen("POST", "/snapshots/snap-1/commit")
    assert [f["path"] for f in commit.body["files"]] == ["out.txt"]
    assert api.seen("POST", "/results"), "results are uploaded after the final snapshot"
    (failure,) = [r for r in api.seen("POST", "/state") if r.body["state"] == "Failure"]
    assert "wall-time limit of its job nearly reached" in failure.body["error"]
