"""Signing in and out, the live task list, the example simulation through the form, and the
pages at phone width driven by the keyboard (Chromium)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support import ServerProcess, wait_for
from tests.web.browsing import Session
from tests.web.conftest import User

LONG = 60_000


def test_sign_in_wrong_token_and_sign_out(desktop: Session, alice: User) -> None:
    page = desktop.page
    page.goto("/")
    page.wait_for_url(re.compile(r"/login\?next=%2F$"))
    desktop.shot("login", full_page=False)
    with desktop.tolerating(r"status of 401"):
        page.get_by_label("API token").fill("hps_not-a-real-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not valid")
        expect(page.get_by_label("API token")).to_have_attribute("aria-invalid", "true")
    desktop.sign_in(alice.token)
    expect(page.get_by_role("banner")).to_contain_text("alice")
    cookie = next(c for c in desktop.context.cookies() if c["name"] == "hpcsnap_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert alice.token not in cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    page.goto("/tasks/new")
    page.wait_for_url(re.compile(r"/login\?next="))


def test_task_list_updates_without_reload(desktop: Session, alice: User) -> None:
    page = desktop.page
    desktop.sign_in(alice.token)
    page.evaluate("window.__notReloaded = true")
    uuid = alice.api.submit("sleep 120", name="list-live")
    row = page.locator(f'#task-rows tr[data-uuid="{uuid}"]')
    expect(row).to_contain_text("list-live", timeout=LONG)
    expect(row.locator(".badge")).to_have_text("FullyExecuting", timeout=LONG)
    desktop.shot("task-list")

    page.get_by_label("State").select_option("Cancelled")
    expect(row).to_have_count(0)
    assert page.url.endswith("/?state=Cancelled")
    alice.api.ok("POST", f"/tasks/{uuid}/abort")
    expect(row.locator(".badge")).to_have_text("Cancelled", timeout=LONG)
    page.get_by_label("State").select_option("")
    expect(row).to_have_count(1)
    assert page.evaluate("window.__notReloaded") is True


def test_load_example_and_run_it(desktop: Session, alice: User) -> None:
    page = desktop.page
    desktop.sign_in(alice.token)
    page.goto("/tasks/new")
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#example-note")).to_contain_text("examples/heat")
    expect(page.get_by_label("Name")).to_have_value("heat-example")
    expect(page.get_by_label("Command")).to_have_value(re.compile(r"^python3 heat\.py "))
    page.get_by_role("button", name="2. Resources").click()
    expect(page.locator("#file-list")).to_contain_text("heat.py")
    page.get_by_role("button", name="4. Snapshots").click()
    expect(page.get_by_label("Take periodic snapshots")).to_be_checked()
    expect(page.get_by_label("Snapshot blacklist")).to_have_value(r"processor\d+")
    preview = page.locator("#preview-rows")
    expect(preview.locator("tr", has_text="processor0/0.1/T")).to_contain_text(
        "left out by the blacklist"
    )
    expect(preview.locator("tr", has_text="log.heatFoam")).to_contain_text("✓ kept")
    expect(page.locator("#snapshot-warnings")).to_contain_text("every 5 s is frequent")
    desktop.shot("form-example")

    page.get_by_label("Every").fill("2")
    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"), timeout=LONG)
    uuid = page.url.rsplit("/", 1)[1]
    try:
        expect(page.locator("#log-stdout")).to_contain_text("Time =", timeout=LONG)
        row = page.locator('#snapshot-rows tr[data-status="Success"]').first
        expect(row).to_contain_text("periodic", timeout=LONG)
        snaps = alice.api.ok("GET", f"/tasks/{uuid}/snapshots")
        bucket = alice.api.task(uuid)["resultBucket"]
        # the first periodic snapshot may be older than heat.py's log (the command starts
        # after FullyExecuting): a later one has it
        keys = wait_for(
            lambda: alice.api.keys(bucket, "snapshots/"),
            lambda found: any(k.endswith("/log.heatFoam") for k in found),
            LONG / 1000,
            "a periodic snapshot with log.heatFoam",
        )
        assert not any("processor" in k for k in keys), keys
        assert snaps[0]["snapshotConfig"]["blacklist"] == r"processor\d+"
    finally:
        alice.api.http.post(f"/tasks/{uuid}/abort")
    alice.api.wait(uuid)


@pytest.fixture()
def phone(browser: Any, server: ServerProcess) -> Iterator[Session]:
    session = Session(
        browser,
        server.url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        yield session
        assert session.errors == [], f"console errors: {session.errors}"
    finally:
        session.close()


def no_horizontal_scroll(page: Any) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"page is {width[0]} px wide in a {width[1]} px viewport"


def test_phone_width_and_keyboard(phone: Session, alice: User) -> None:
    page = phone.page
    uuid = alice.api.submit(
        "for i in $(seq 1 200); do echo $i >> log.txt; echo line $i; sleep 0.5; done",
        name="phone-check",
        snapshotInterval=1,
    )
    try:
        # sign in with the keyboard only: the token field has the focus
        page.goto("/login")
        expect(page.get_by_label("API token")).to_be_focused()
        page.keyboard.type(alice.token)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/$"))
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        no_horizontal_scroll(page)

        # the form's steps, with Enter moving to the next one once the step is valid
        page.goto("/tasks/new")
        name = page.get_by_label("Name")
        name.fill("from-a-phone")
        name.press("Enter")
        expect(page.get_by_role("group", name="1. Task")).to_be_visible()  # command missing
        page.get_by_label("Command").fill("true")
        name.press("Enter")
        expect(page.get_by_role("group", name="2. Resources")).to_be_visible()
        no_horizontal_scroll(page)
        page.get_by_role("button", name="4. Snapshots").click()
        page.get_by_label("Take periodic snapshots").check()
        page.get_by_label("Snapshot blacklist").fill(r"\.tmp$")
        page.get_by_label("Other paths to try").fill("log.txt\nscratch.tmp")
        expect(page.locator("#preview-rows tr")).to_have_count(2)
        no_horizontal_scroll(page)
        phone.shot("phone-form")

        wait_for(
            lambda: alice.api.ok("GET", f"/tasks/{uuid}/snapshots"),
            lambda snaps: sum(s["status"] == "Success" for s in snaps) >= 2,
            LONG / 1000,
            "two snapshots",
        )
        page.goto(f"/tasks/{uuid}")
        expect(page.locator("#snapshot-rows tr[data-status=Success]").first).to_be_visible()
        no_horizontal_scroll(page)
        phone.shot("phone-task", full_page=False)
        page.locator("#snapshot-rows tr[data-status=Success]").first.get_by_role(
            "link", name=re.compile("Browse")
        ).click()
        expect(page.get_by_role("list", name="Files of the snapshot")).to_contain_text("log.txt")
        no_horizontal_scroll(page)
        phone.shot("phone-snapshot", full_page=False)
    finally:
        alice.api.http.post(f"/tasks/{uuid}/abort")
    alice.api.wait(uuid)
