"""Shared fixtures: a real hpcsnap server process on loopback, users with tokens, API helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module (real process, real agents, real tasks)."""
    with ServerProcess(tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture()
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that kill or restart it."""
    with ServerProcess(tmp_path / "server") as srv:
        yield srv


# -- real services for the scale-out suites (tests/services.py) -------------------------------

from tests import services as _services  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _stop_services() -> Iterator[None]:
    """Stop, at the end of the session, whatever service a test started (even on failure)."""
    try:
        yield
    finally:
        _services.SERVICES.shutdown()


@pytest.fixture(scope="session")
def postgres() -> _services.Postgres:
    """A PostgreSQL server (skips the test, saying why, where it cannot run)."""
    return _services.postgres()


@pytest.fixture(scope="session")
def s3_server() -> _services.S3Server:
    """An S3 server (rclone serve s3)."""
    return _services.s3()


@pytest.fixture(scope="session")
def slurm() -> _services.SlurmCluster:
    """A one-node Slurm cluster (needs root)."""
    return _services.slurm()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real services were unavailable (their suites were skipped) and what the
    scale-out suites measured."""
    if _services.SERVICES.unavailable:
        terminalreporter.section("scale-out suites skipped")
        for name, reason in _services.SERVICES.unavailable.items():
            terminalreporter.write_line(f"{name}: {reason}")
    if _services.MEASUREMENTS:
        terminalreporter.section("scale-out measurements")
        for what, value in _services.MEASUREMENTS.items():
            terminalreporter.write_line(f"{what}: {value}")
