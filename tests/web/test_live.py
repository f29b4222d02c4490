"""The task page follows the task's event stream (EventSource): state, snapshots and output
change on the page, without a reload, as events arrive."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.support import ServerProcess
from tests.web.browsing import Session
from tests.web.conftest import User

TICKING = (
    "trap 'exit 143' TERM; i=0; while [ $i -lt 240 ]; do i=$((i+1)); echo tick $i; sleep 0.25; done"
)
LONG = 60_000


def test_task_page_updates_from_the_stream(
    desktop: Session, server: ServerProcess, alice: User
) -> None:
    api = alice.api
    uuid = api.submit(TICKING, name="live")
    api.wait(uuid, {"FullyExecuting"})
    page = desktop.page
    desktop.sign_in(alice.token)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    page.goto(f"/tasks/{uuid}")
    root = page.locator("#task-page")
    expect(root).to_have_attribute("data-live", "stream", timeout=LONG)
    assert len(streams) == 1 and f"/ui/api/tasks/{uuid}/events?after=" in streams[0]
    assert int(streams[0].rsplit("=", 1)[1]) > 0  # from the page's own point, not from 0
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#snapshot-rows tr.empty")).to_have_count(1)

    # a snapshot taken elsewhere (the API) shows up, then its success
    snap = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "from-api"})["id"]
    row = page.locator(f'#snapshot-rows tr[data-id="{snap}"]')
    expect(row).to_have_attribute("data-status", "Success", timeout=LONG)
    expect(row).to_contain_text("from-api")
    expect(page.locator("#snapshot-count")).to_have_text("(1)")

    # output arrives line after line, each once
    shown = page.locator("#log-stdout")
    expect(shown).to_contain_text("tick 12", timeout=LONG)
    text = shown.text_content() or ""
    ticks = [line for line in text.splitlines() if line.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(1, len(ticks) + 1)]

    # the end: state badge, buttons, and the stream closed by the page
    api.ok("POST", f"/tasks/{uuid}/abort")
    expect(page.locator("#state-badge")).to_have_text("Cancelled", timeout=LONG)
    expect(root).to_have_attribute("data-live", "ended")
    expect(page.locator("#abort-button")).to_be_disabled()
    assert page.evaluate("window.__notReloaded") is True
    assert len(streams) == 1, streams  # one connection for the whole run
    desktop.shot("task-page-live")
