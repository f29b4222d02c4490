"""The snapshot browser's archives (.tar.gz and .zip), the compare view with byte totals and
against the final results, and the results archive on the task page (Chromium)."""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.server.test_contents import COMMAND, FINAL
from tests.web.browsing import Session
from tests.web.conftest import User


@pytest.fixture(scope="module")
def done(alice: User) -> dict[str, Any]:
    uuid = alice.api.submit(COMMAND, name="web diff", resultBucket="web-diff")
    assert alice.api.wait(uuid)["state"] == "Success"
    snaps = {s["label"]: s for s in alice.api.ok("GET", f"/tasks/{uuid}/snapshots")}
    return {"uuid": uuid, **snaps}


def test_archives_and_comparisons(desktop: Session, alice: User, done: dict[str, Any]) -> None:
    page = desktop.page
    desktop.sign_in(alice.token)
    uuid, second = done["uuid"], done["second"]
    top = second["directory"].rstrip("/").rsplit("/", 1)[1]

    # -- the task page: the results as one archive
    page.goto(f"/tasks/{uuid}")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the results (.tar.gz)").click()
    assert download.value.suggested_filename == "web-diff-results.tar.gz"
    with tarfile.open(download.value.path(), "r:gz") as tar:
        got = {n: tar.extractfile(n).read() for n in tar.getnames()}  # type: ignore[union-attr]
    assert got == {f"web-diff-results/{p}": data for p, data in FINAL.items()}

    # -- the snapshot page: the whole snapshot as a .zip next to the .tar.gz
    page.goto(f"/tasks/{uuid}/snapshots/{second['id']}")
    expect(page.get_by_role("link", name="Download all (.tar.gz)")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download all (.zip)").click()
    assert download.value.suggested_filename == f"web-diff-{top}.zip"
    with zipfile.ZipFile(Path(download.value.path())) as zf:
        assert zf.read(f"{top}/a.txt") == b"two, longer\n"
        assert zf.read(f"{top}/link") == b"b.txt"
        assert sorted(zf.namelist()) == [
            f"{top}/{p}" for p in ("a.txt", "b.txt", "link", "same.txt")
        ]

    # -- the comparison, with byte totals
    page.get_by_role("link", name="Compare with previous").click()
    expect(page.locator("#diff-summary")).to_have_text("1 added, 1 removed, 2 changed")
    expect(page.locator("#diff-bytes")).to_have_text(
        "+3 B added, \u22128.68 KiB removed, changed files 4 B → 12 B; 1 with new permissions only."
    )
    changed = page.get_by_role("heading", name=re.compile("^Changed")).locator("xpath=..")
    expect(changed).to_contain_text("a.txt")
    desktop.shot("snapshot-diff-bytes")
    # ...and against the task's final results
    page.get_by_label("Compare with another snapshot").select_option(
        label="the task's final results"
    )
    page.get_by_role("button", name="Compare").click()
    expect(page.locator(".lead")).to_contain_text("to the task's final results")
    expect(page.locator("#diff-summary")).to_have_text("1 added, 0 removed, 0 changed")
    added = page.get_by_role("heading", name=re.compile("^Added")).locator("xpath=..")
    expect(added).to_contain_text("c.txt")


def test_archives_of_another_user_are_not_found(
    desktop: Session, bob: User, done: dict[str, Any]
) -> None:
    desktop.sign_in(bob.token)
    uuid, snap = done["uuid"], done["second"]["id"]
    for url in (
        f"/tasks/{uuid}/results/archive.zip",
        f"/tasks/{uuid}/results/archive.tar.gz",
        f"/tasks/{uuid}/snapshots/{snap}/archive.zip",
        f"/tasks/{uuid}/snapshots/{snap}/diff?against=results",
    ):
        answer = desktop.page.request.get(url)
        assert answer.status == 404, (url, answer.status)
