"""The Slurm executor against a fake seam: state table, submit, polling ramp, failures."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from hpcsnap.executors import (
    END_REASONS,
    TERMINAL_JOB_STATES,
    AgentLaunch,
    ExecutorError,
    JobState,
    SlurmExecutor,
    SlurmOptions,
)
from hpcsnap.executors.slurm import STATE_TABLE, translate
from tests.executors.fakeslurm import FakeSlurm

TOKEN = "hps_agent_secret_token_value"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def fake() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def executor(fake: FakeSlurm, clock: Clock, tmp_path: Path) -> SlurmExecutor:
    return SlurmExecutor(
        options=SlurmOptions(partition="debug", signal_grace=60),
        work_dir=tmp_path / "work",
        log_dir=tmp_path / "logs",
        python="/usr/bin/python3",
        run=fake,
        clock=clock,
    )


def launch(uuid: str = "11111111-2222-3333-4444-555555555555", **kw: object) -> AgentLaunch:
    return AgentLaunch(task_uuid=uuid, server_url="http://server:8642", token=TOKEN, **kw)  # type: ignore[arg-type]


# -- the state table ----------------------------------------------------------------------

SLURM_STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "COMPLETED": JobState.DONE,
    "FAILED": JobState.DONE,
    "CANCELLED": JobState.DONE,
    "BOOT_FAIL": JobState.DONE,
    "DEADLINE": JobState.DONE,
    "TIMEOUT": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}


@pytest.mark.parametrize(("slurm_state", "state"), SLURM_STATES.items())
def test_state_table(slurm_state: str, state: JobState) -> None:
    assert translate(slurm_state) is state
    assert translate(slurm_state.lower()) is state


def test_state_table_details() -> None:
    assert translate("CANCELLED by 0") is JobState.DONE
    assert translate("COMPLETING+") is JobState.RUNNING
    assert translate("SOMETHING_NEW") is None
    # every ending has a reason for the task's error message
    assert set(END_REASONS) == TERMINAL_JOB_STATES
    assert {JobState.PENDING, JobState.RUNNING}.isdisjoint(TERMINAL_JOB_STATES)
    assert set(STATE_TABLE.values()) == set(JobState) - {JobState.UNKNOWN}


# -- submit -------------------------------------------------------------------------------


def test_submit_keeps_the_token_out_of_argv_and_script(
    executor: SlurmExecutor, fake: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPCSNAP_S3_SECRET_KEY", "s3-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("HPCSNAP_DATABASE_URL", "postgresql://u:pw@db/x")
    monkeypatch.setenv("SBATCH_EXPORT", "ALL")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/test.conf")
    job_id = executor.submit(launch(extra_env={"EXTRA_VAR": "1"}))
    assert job_id == "101"
    (call,) = fake.commands("sbatch")
    assert call.argv == ["sbatch", "--parsable"]
    assert call.input is not None and TOKEN not in call.input
    assert TOKEN not in " ".join(call.argv)
    assert call.env is not None
    assert call.env["HPCSNAP_AGENT_TOKEN"] == TOKEN
    assert call.env["EXTRA_VAR"] == "1"
    assert call.env["SLURM_CONF"] == "/etc/slurm/test.conf"
    for withheld in (
        "HPCSNAP_S3_SECRET_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "HPCSNAP_DATABASE_URL",
        "SBATCH_EXPORT",
    ):
        assert withheld not in call.env
    assert "#SBATCH --export=HPCSNAP_AGENT_TOKEN,PATH,PYTHONUNBUFFERED,EXTRA_VAR\n" in call.input
    assert "#SBATCH --signal=B:USR1@60\n" in call.input
    assert "#SBATCH --partition=debug\n" in call.input
    assert executor.status([job_id]) == {job_id: JobState.PENDING}
    assert executor.capacity() is None


def test_submit_with_wall_time_sets_the_time_limit(executor: SlurmExecutor) -> None:
    assert "#SBATCH --time=7\n" in executor.script(launch(wall_time_limit=60))
    assert "--time" not in executor.script(launch())


def test_sbatch_failures_raise(executor: SlurmExecutor, fake: FakeSlurm) -> None:
    fake.sbatch_reply = "sbatch: warning: something\n"
    with pytest.raises(ExecutorError, match="not a job id"):
        executor.submit(launch())
    fake.fail = True
    with pytest.raises(ExecutorError, match="sbatch --parsable exited with code 1"):
        executor.submit(launch())


# -- status: one squeue for all, on a ramp ------------------------------------------------


def test_status_polls_all_jobs_at_once_on_a_ramp(
    executor: SlurmExecutor, fake: FakeSlurm, clock: Clock
) -> None:
    a, b = executor.submit(launch("a-1")), executor.submit(launch("b-2"))
    fake.jobs[a] = "RUNNING"
    assert executor.status([a, b]) == {a: JobState.RUNNING, b: JobState.PENDING}
    (squeue,) = fake.commands("squeue")
    assert squeue.argv[-1] == f"{a},{b}"
    polls = []
    for _ in range(60):
        clock.now += 0.5
        before = len(fake.commands("squeue"))
        executor.status([a, b])
        if len(fake.commands("squeue")) > before:
            polls.append(clock.now)
    gaps = [round(y - x, 1) for x, y in itertools.pairwise(polls)]
    # after the change seen by the first poll: at once, then 1, 2, 4, 8 s, then every 10 s
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 10.0], gaps
    # a change resets the ramp
    fake.jobs[b] = "RUNNING"
    clock.now += 10
    executor.status([a, b])
    count = len(fake.commands("squeue"))
    clock.now += 0.5
    executor.status([a, b])
    assert len(fake.commands("squeue")) == count + 1  # the change was just seen: poll at once


def test_a_new_id_is_polled_at_once(executor: SlurmExecutor, fake: FakeSlurm, clock: Clock) -> None:
    a = executor.submit(launch("a-1"))
    executor.status([a])
    fake.jobs["77"] = "RUNNING"  # submitted by another server
    assert executor.status([a, "77"]) == {a: JobState.PENDING, "77": JobState.RUNNING}


def test_failing_squeue_keeps_the_last_known_states(
    executor: SlurmExecutor, fake: FakeSlurm, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    a = executor.submit(launch("a-1"))
    fake.jobs[a] = "RUNNING"
    assert executor.status([a]) == {a: JobState.RUNNING}
    fake.fail = True
    clock.now += 100
    with caplog.at_level(logging.WARNING):
        assert executor.status([a, "55"]) == {a: JobState.RUNNING}  # 55: never seen, left out
    assert "squeue failed; keeping the last known job states" in caplog.text
    assert "Unable to contact slurm controller" in caplog.text
    fake.fail = False
    fake.jobs[a] = "TIMEOUT"
    clock.now += 100
    assert executor.status([a]) == {a: JobState.TIMEOUT}


def test_jobs_slurm_forgot_are_unknown(executor: SlurmExecutor, fake: FakeSlurm) -> None:
    a, b = executor.submit(launch("a-1")), executor.submit(launch("b-2"))
    del fake.jobs[a]
    assert executor.status([a, b]) == {a: JobState.UNKNOWN, b: JobState.PENDING}
    del fake.jobs[b]  # squeue now fails with "Invalid job id specified"
    assert executor.status([a, b, "999"]) == dict.fromkeys([a, b, "999"], JobState.UNKNOWN)


def test_unknown_slurm_state_is_left_out(
    executor: SlurmExecutor, fake: FakeSlurm, caplog: pytest.LogCaptureFixture
) -> None:
    a = executor.submit(launch("a-1"))
    fake.jobs[a] = "WEIRD_NEW_STATE"
    executor._known.clear()
    with caplog.at_level(logging.WARNING):
        assert executor.status([a]) == {}
    assert "unknown state 'WEIRD_NEW_STATE'" in caplog.text


def test_many_jobs_are_asked_in_chunks(executor: SlurmExecutor, fake: FakeSlurm) -> None:
    ids = [str(i) for i in range(1, 1202)]
    fake.jobs.update(dict.fromkeys(ids, "RUNNING"))
    assert set(executor.status(ids).values()) == {JobState.RUNNING}
    assert len(fake.commands("squeue")) == 3


# -- cancel -------------------------------------------------------------------------------


def test_cancel(executor: SlurmExecutor, fake: FakeSlurm, clock: Clock) -> None:
    a, b = executor.submit(launch("a-1")), executor.submit(launch("b-2"))
    assert executor.cancel([a, b, "not-a-job"]) == {a: True, b: True, "not-a-job": False}
    (scancel,) = fake.commands("scancel")
    assert scancel.argv == ["scancel", a, b]
    clock.now += 1
    assert executor.status([a]) == {a: JobState.DONE}
    fake.fail = True
    assert executor.cancel([a]) == {a: False}
