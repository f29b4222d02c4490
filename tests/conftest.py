"""Shared fixtures: a real hpcsnap server process on loopback, users with tokens, API helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module (real process, real agents, real tasks)."""
    srv = ServerProcess(tmp_path_factory.mktemp("server"))
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture()
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that kill or restart it."""
    srv = ServerProcess(tmp_path / "server")
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()
