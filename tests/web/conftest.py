"""Fixtures of the web interface tests: Debian's Chromium driven by Playwright, real servers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import Api, ServerProcess
from tests.web.browsing import CHROMIUM, TIMEOUT_MS, Session, launch


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium is not installed ({CHROMIUM} is missing): `make test` installs it with "
            "apt-get (scripts/system-deps.sh) when it runs as root"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    # expect(...) assertions have their own default (5 s), which the contexts' default timeout
    # does not change: a page update after a server round trip gets as long as any other wait
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as p:
        b = launch(p, tmp_path_factory.mktemp("chromium-home"))
        try:
            yield b
        finally:
            b.close()


@dataclass
class User:
    name: str
    token: str
    api: Api


def make_user(server: ServerProcess, name: str) -> User:
    api = server.user(name)
    return User(name, str(api.http.headers["Authorization"]), api)


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> User:
    return make_user(server, "alice")


@pytest.fixture(scope="module")
def bob(server: ServerProcess) -> User:
    return make_user(server, "bob")


@pytest.fixture()
def desktop(browser: Any, server: ServerProcess) -> Iterator[Session]:
    """A desktop-sized browser session (not signed in); fails the test on console errors."""
    session = Session(browser, server.url, viewport={"width": 1280, "height": 900})
    try:
        yield session
        assert session.errors == [], f"console errors: {session.errors}"
    finally:
        session.close()
