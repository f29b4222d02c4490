"""Restart from a snapshot in the web interface: the snapshot browser's "Restart from this
snapshot" fills in the form (command, resources, "Resume from"), and the new task sees the
snapshot's files."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.support import wait_for
from tests.web.browsing import Session
from tests.web.conftest import User


def test_restart_from_a_snapshot_through_the_form(desktop: Session, alice: User) -> None:
    api = alice.api
    source = api.submit(
        "echo one > a.txt; hpcsnap job snapshot --label one > /dev/null; "
        "echo two > a.txt; hpcsnap job snapshot --label two > /dev/null; exit 3",
        name="web-source",
    )
    api.wait(source)
    one, two = api.ok("GET", f"/tasks/{source}/snapshots")

    page = desktop.page
    desktop.sign_in(alice.token)
    page.goto(f"/tasks/{source}/snapshots/{one['id']}")
    page.get_by_role("link", name="Restart from this snapshot").click()
    page.wait_for_url(re.compile(r"/tasks/new\?"))
    expect(page.get_by_label("Name")).to_have_value("web-source-restart")
    expect(page.get_by_label("Command")).to_contain_text("hpcsnap job snapshot")
    page.get_by_label("Command").fill("cat a.txt")
    page.get_by_role("button", name="Next: resources").click()
    expect(page.locator("#f-resume_task")).to_have_value(source)
    expect(page.locator("#f-resume_snapshot")).to_have_value(one["id"])
    options = page.locator("#resume-snapshots option")
    expect(options).to_have_count(3)  # latest, one, two
    desktop.shot("form-resume-from")
    page.get_by_role("button", name="Next: results").click()
    page.get_by_role("button", name="Next: snapshots").click()
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
    uuid = page.url.rsplit("/", 1)[1]

    task = api.wait(uuid)
    assert task["resumeFrom"] == {"taskUuid": source, "snapshotId": one["id"]}
    assert task["state"] == "Success"
    assert api.get(f"/tasks/{uuid}/stdout").text == "one\n"

    # "latest" typed by hand, and a refusal shown at the field
    page.goto("/tasks/new")
    page.get_by_label("Name").fill("web-latest")
    page.get_by_label("Command").fill("cat a.txt")
    page.get_by_role("button", name="Next: resources").click()
    page.get_by_text("Resume from a snapshot").click()
    page.locator("#f-resume_task").fill("0" * 8)
    page.get_by_role("button", name="Next: results").click()
    page.get_by_role("button", name="Next: snapshots").click()
    with desktop.tolerating(r"status of 404"):
        page.get_by_role("button", name="Submit task").click()
        expect(page.locator("#form-error")).to_contain_text("resumeFrom: task 00000000 not found")
    # the form shows the message at the field, on its step
    expect(page.locator("#err-resume_task")).to_have_text("task 00000000 not found")
    page.locator("#f-resume_task").fill(source)
    page.get_by_role("button", name="Next: results").click()
    page.get_by_role("button", name="Next: snapshots").click()
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
    latest = page.url.rsplit("/", 1)[1]
    assert api.wait(latest)["resumeFrom"]["snapshotId"] == two["id"]
    wait_for(lambda: api.get(f"/tasks/{latest}/stdout").text, lambda t: t == "two\n", 30, "log")
