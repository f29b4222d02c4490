"""CLI fixtures: a real server, a user, and the real ``hpcsnap`` entry point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Cli, user_env
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("server"), HPCSNAP_SLOTS="6") as srv:
        yield srv


@pytest.fixture(scope="module")
def module_env(server: ServerProcess, request: pytest.FixtureRequest) -> dict[str, str]:
    return user_env(server, "cli-" + request.module.__name__.rsplit(".", 1)[-1][5:])


@pytest.fixture()
def cli(module_env: dict[str, str], tmp_path: Path) -> Cli:
    return Cli(module_env, tmp_path)
