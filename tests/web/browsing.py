"""Driving Debian's Chromium with Playwright against a real hpcsnap server."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import REPO

CHROMIUM = Path("/usr/lib/chromium/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"
ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    "--log-level=3",
]
#: Generous: two cores shared with other test runs.
TIMEOUT_MS = 30_000


def launch(playwright: Any, home: Path) -> Any:
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, env=env, args=ARGS
    )


class Session:
    """One browser context (its own cookies) that records console errors and page crashes."""

    def __init__(self, browser: Any, base_url: str, **context: Any) -> None:
        self.context = browser.new_context(base_url=base_url, accept_downloads=True, **context)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self._tolerated: list[re.Pattern[str]] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        if any(p.search(text) for p in self._tolerated):
            return
        self.errors.append(text)

    @contextlib.contextmanager
    def tolerating(self, pattern: str) -> Iterator[None]:
        """Console errors matching ``pattern`` are expected inside this block (e.g. the
        browser logging the 400 answer to a submission the test makes invalid on purpose)."""
        compiled = re.compile(pattern)
        self._tolerated.append(compiled)
        try:
            yield
        finally:
            self._tolerated.remove(compiled)

    def sign_in(self, token: str) -> None:
        page = self.page
        page.goto("/login")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/$"))

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.context.close()
