"""SDK fixtures: a real server (more slots than cores: test tasks mostly sleep), a user, a
connection, and tasks that are aborted when the test ends."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import hpcsnap
from tests.support import ServerProcess
from tests.support import hpcsnap as run_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("server"), HPCSNAP_SLOTS="6") as srv:
        yield srv


def new_token(server: ServerProcess, name: str) -> str:
    args = ("user", "create", name, "--data-dir", str(server.data_dir))
    return run_cli(*args).stdout.strip()


@pytest.fixture(scope="module")
def token(server: ServerProcess, request: pytest.FixtureRequest) -> str:
    return new_token(server, request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def conn(server: ServerProcess, token: str) -> Iterator[hpcsnap.Connection]:
    with hpcsnap.Connection(client_token=token, cluster_url=server.url) as c:
        yield c


@pytest.fixture()
def start_task(
    conn: hpcsnap.Connection,
) -> Iterator[Callable[..., hpcsnap.Task]]:
    """Submit a task and wait until its command runs; abort it at the end of the test."""
    started: list[hpcsnap.Task] = []

    def start(
        command: str, *, running: bool = True, ready: str | None = None, **options: object
    ) -> hpcsnap.Task:
        """``running``: wait until the command runs; ``ready``: and until it prints a line
        that matches (so that its first files are there)."""
        task = conn.create_task(str(options.pop("name", "t")), "docker-batch")
        task.constants["DOCKER_CMD"] = command
        for key, value in options.items():
            setattr(task, key, value)
        task.submit()
        started.append(task)
        if running:
            assert task.wait_running(60), task
        if ready is not None:
            assert task.wait_output(ready, 60), task
        return task

    yield start
    for task in started:
        with contextlib.suppress(hpcsnap.HpcsnapError):
            if task.state not in ("Success", "Failure", "Cancelled"):
                task.abort()


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path
