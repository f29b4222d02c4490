"""Fixtures for the snapshot engine tests: a /job-like tree, a content store, an opener."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcsnap.blobstore import ContentStore, LocalBackend

from .helpers import CountingOpener


@pytest.fixture
def job(tmp_path: Path) -> Path:
    root = tmp_path / "job"
    root.mkdir()
    return root


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(LocalBackend(tmp_path / "store"), "alice")


@pytest.fixture
def opener(job: Path) -> Iterator[CountingOpener]:
    counting = CountingOpener(job)
    yield counting
    counting.close()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory that the unprivileged child of ``unprivileged()`` can use."""
    path = Path(tempfile.mkdtemp(prefix="hpcsnap-test-"))
    path.chmod(0o777)
    yield path
    for dirpath, dirnames, _ in os.walk(path):  # unlock what a test locked, then remove
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o700)
    shutil.rmtree(path)
