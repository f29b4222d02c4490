"""The web interface end to end in Chromium: submit a task with periodic snapshots through the
form, watch snapshots appear, take a labelled one, browse, download, compare, abort; a second
user sees none of it."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.support import Api, ServerProcess, wait_for
from tests.web.browsing import Session
from tests.web.conftest import User

# Grows a file and a log every half second: every snapshot has something new to show.
COMMAND = (
    'i=0; mkdir -p out; while [ "$i" -lt 600 ]; do i=$((i+1)); echo "step $i"; '
    'echo "t=$i" >> log.run; head -c $((i*4096)) /dev/zero > out/field.dat; '
    "echo scratch > scratch.tmp; sleep 0.5; done"
)
LONG = 60_000


def at_least(locator: Any, n: int, timeout: float = LONG / 1000) -> int:
    """Wait until ``locator`` matches ``n`` elements or more (the page updates by itself)."""
    return int(wait_for(locator.count, lambda c: c >= n, timeout, f"{n} x {locator}"))


def first_with_files(api: Api, uuid: str) -> dict[str, Any] | None:
    """The first successful snapshot that holds both files of COMMAND, or None: the first
    periodic ones may be older than them (the command starts after FullyExecuting)."""
    for snap in api.ok("GET", f"/tasks/{uuid}/snapshots"):
        if snap["status"] == "Success":
            d = snap["directory"]
            keys = api.keys(snap["snapshotConfig"]["bucket"], d)
            if sorted(k[len(d) :] for k in keys) == ["log.run", "out/field.dat"]:
                return dict(snap)
    return None


def fill_form(page: Any, tmp_path: Path) -> None:
    """Every step of the form but the Snapshots one, through the step buttons."""
    page.goto("/tasks/new")
    expect(page.get_by_role("heading", name="New task")).to_be_visible()
    page.get_by_label("Name").fill("web-e2e")
    page.get_by_label("Command").fill(COMMAND)
    page.get_by_label("Wall-time limit").fill("00:10:00")
    page.get_by_role("button", name="Next: resources").click()
    inputs = tmp_path / "inputs"
    (inputs / "case" / "system").mkdir(parents=True)
    (inputs / "input.txt").write_text("initial conditions\n")
    (inputs / "params.json").write_text('{"re": 1000}\n')
    (inputs / "case" / "system" / "controlDict").write_text("endTime 10;\n")
    page.get_by_label("Upload files").set_input_files(
        [str(inputs / "input.txt"), str(inputs / "params.json")]
    )
    page.get_by_label("Upload a folder").set_input_files(str(inputs / "case"))
    expect(page.locator("#file-count")).to_have_text("3 files")
    expect(page.locator("#file-list")).to_contain_text("system/controlDict")
    page.get_by_role("button", name="Next: results").click()
    page.get_by_label("Results blacklist").fill(r"\.tmp$")
    page.get_by_label("Upload results when the task is aborted too").check()
    page.get_by_role("button", name="Next: snapshots").click()
    expect(page.get_by_role("group", name="4. Snapshots")).to_be_visible()


def test_submit_watch_snapshot_browse_and_abort(
    desktop: Session, server: ServerProcess, alice: User, bob: User, tmp_path: Path
) -> None:
    page = desktop.page
    desktop.sign_in(alice.token)
    fill_form(page, tmp_path)

    # -- the Snapshots section: live checks while typing
    page.get_by_label("Take periodic snapshots").check()
    page.get_by_label("Every").fill("1")
    page.get_by_label("Unit", exact=True).select_option("s")
    page.get_by_label("Snapshot whitelist").fill("out/(")
    expect(page.locator("#err-snapshot_whitelist")).to_contain_text("invalid regular expression")
    expect(page.get_by_label("Snapshot whitelist")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Snapshot blacklist").fill(r"\.tmp$")
    page.get_by_label("Expected size of a snapshot").fill("2")
    page.get_by_label("Size unit").select_option("GiB")
    warnings = page.locator("#snapshot-warnings")
    expect(warnings).to_contain_text("every 1 s is frequent")
    expect(warnings).to_contain_text("over the recommended 1 GiB")
    page.get_by_label("Other paths to try").fill("log.run\nout/field.dat\nscratch.tmp")
    preview = page.locator("#preview-rows")
    expect(preview.locator("tr")).to_have_count(6)
    desktop.shot("form-snapshots-live-error")

    # -- submitted anyway: the server refuses it, and says which field and why
    with desktop.tolerating(r"status of 400"):
        page.get_by_role("button", name="Submit task").click()
        alert = page.locator("#form-error")
        expect(alert).to_be_visible()
        expect(alert).to_contain_text("Not submitted: snapshotWhitelist: invalid regular")
        expect(page.get_by_label("Snapshot whitelist")).to_be_focused()
    desktop.shot("form-server-error", full_page=False)

    # -- a valid whitelist: the preview shows what each filter keeps
    page.get_by_label("Snapshot whitelist").fill(r"^(out/|log\.)")
    expect(page.locator("#err-snapshot_whitelist")).to_be_hidden()
    row = preview.locator("tr", has_text="scratch.tmp")
    expect(row).to_contain_text("left out by the whitelist")
    expect(row).to_contain_text("left out by the blacklist")  # results: blacklisted
    expect(preview.locator("tr", has_text="out/field.dat")).to_contain_text("✓ kept")
    expect(preview.locator("tr", has_text="input.txt")).to_contain_text("left out by the whitelist")
    desktop.shot("form-snapshots")

    page.get_by_role("button", name="Submit task").click()
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"), timeout=LONG)
    uuid = page.url.rsplit("/", 1)[1]
    task = alice.api.task(uuid)
    assert task["snapshotInterval"] == 1
    assert task["snapshotWhitelist"] == r"^(out/|log\.)"
    assert task["resultsBlacklist"] == r"\.tmp$"
    bucket = task["advancedResourceBuckets"][0]["bucketName"]
    assert sorted(alice.api.keys(bucket)) == ["input.txt", "params.json", "system/controlDict"]

    # -- the task page updates itself: state, snapshots, chart, log
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#state-badge")).to_have_text("FullyExecuting", timeout=LONG)
    at_least(page.locator('#snapshot-rows tr[data-status="Success"]'), 3)
    # the first periodic snapshots may be older than the command's files (it starts after
    # FullyExecuting): the comparison below starts from the first one that holds them, and
    # "Snapshot now" waits for a later step (step n + 2 is printed once step n + 1 is written)
    base = wait_for(lambda: first_with_files(alice.api, uuid), bool, LONG / 1000, "its files")
    log_run = alice.api.download(base["snapshotConfig"]["bucket"], base["directory"] + "log.run")
    n = len(log_run.split())
    expect(page.locator("#log-stdout")).to_contain_text(f"step {n + 2}", timeout=LONG)

    # -- Snapshot now, with a label
    page.get_by_label("Label").fill("milestone-1")
    page.get_by_role("button", name="Snapshot now").click()
    expect(page.locator("#task-message")).to_contain_text("milestone-1")
    labelled = page.locator('#snapshot-rows tr[data-snapshot-label="milestone-1"]')
    expect(labelled).to_have_attribute("data-status", "Success", timeout=LONG)
    expect(labelled).to_contain_text("manual")
    at_least(page.locator("#chart .chart-point"), 4)
    assert page.evaluate("window.__notReloaded") is True
    points = page.locator("#chart .chart-point").count()
    assert points >= 4
    assert page.locator("#chart title").first.text_content() == (
        "Snapshot size and files changed over time"
    )
    desktop.shot("task-page")

    # -- periodic settings while it runs
    page.get_by_label("Interval").fill("2")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#periodic-feedback")).to_contain_text("saved")
    assert alice.api.task(uuid)["snapshotInterval"] == 2

    # -- the snapshot browser: tree, a file, the archive, the comparison
    labelled.get_by_role("link", name=re.compile("Browse")).click()
    page.wait_for_url(re.compile(r"/snapshots/[0-9a-f-]{36}$"))
    snap_id = page.url.rsplit("/", 1)[1]
    snap = alice.api.ok("GET", f"/tasks/{uuid}/snapshot/{snap_id}")
    assert snap["label"] == "milestone-1"
    tree = page.get_by_role("list", name="Files of the snapshot")
    expect(tree).to_contain_text("log.run")
    expect(tree).to_contain_text("field.dat")
    expect(tree).not_to_contain_text("scratch.tmp")
    expect(tree).not_to_contain_text("input.txt")
    desktop.shot("snapshot-browser")

    key = snap["directory"] + "log.run"
    expected = alice.api.download(snap["snapshotConfig"]["bucket"], key)
    with page.expect_download() as download:
        page.get_by_role("link", name="log.run", exact=True).click()
    assert download.value.suggested_filename == "log.run"
    assert Path(download.value.path()).read_bytes() == expected
    assert expected.startswith(b"t=1\n")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download all (.tar.gz)").click()
    name = download.value.suggested_filename
    assert name.endswith("_milestone-1.tar.gz"), name
    top = snap["directory"].rstrip("/").rsplit("/", 1)[1]
    with tarfile.open(download.value.path(), "r:gz") as tar:
        names = sorted(tar.getnames())
        assert names == [f"{top}/log.run", f"{top}/out/field.dat"]
        member = tar.extractfile(f"{top}/log.run")
        assert member is not None and member.read() == expected
        field = tar.getmember(f"{top}/out/field.dat")
        assert field.size == snap["bytesTotal"] - len(expected)

    page.get_by_role("link", name="Compare with previous").click()
    expect(page.get_by_role("heading", name="What changed")).to_be_visible()
    summary = page.locator("#diff-summary")
    expect(summary).to_have_text(re.compile(r"^0 added, 0 removed, [0-2] changed$"))
    # against the first snapshot that holds them, both files have grown
    against = page.get_by_label("Compare with another snapshot")
    against.select_option(value=base["id"])
    page.get_by_role("button", name="Compare").click()
    expect(summary).to_have_text("0 added, 0 removed, 2 changed")
    changed = page.get_by_role("heading", name=re.compile("^Changed")).locator("xpath=..")
    expect(changed).to_contain_text("log.run")
    desktop.shot("snapshot-diff")

    # -- another user sees nothing of it
    other = Session(desktop.page.context.browser, server.url)
    try:
        other.sign_in(bob.token)
        expect(other.page.locator("#task-rows")).not_to_contain_text("web-e2e")
        with other.tolerating(r"status of 404"):
            for url in (f"/tasks/{uuid}", f"/tasks/{uuid}/snapshots/{snap_id}"):
                response = other.page.goto(url)
                assert response is not None and response.status == 404
                expect(other.page.get_by_role("heading", name="Not found")).to_be_visible()
                expect(other.page.locator("main")).not_to_contain_text("web-e2e")
            other.shot("other-user-404", full_page=False)
        csrf = other.page.locator("body").get_attribute("data-csrf")
        for method, url in (
            ("GET", f"/ui/api/tasks/{uuid}"),
            ("GET", f"/tasks/{uuid}/snapshots/{snap_id}/files/log.run"),
            ("GET", f"/tasks/{uuid}/snapshots/{snap_id}/archive.tar.gz"),
            ("POST", f"/tasks/{uuid}/snapshot"),
            ("POST", f"/tasks/{uuid}/abort"),
        ):
            answer = other.page.request.fetch(
                url,
                method=method,
                headers={"X-CSRF-Token": csrf or "", "Accept": "application/json"},
            )
            assert answer.status == 404, (url, answer.status, answer.text())
        assert other.errors == [], other.errors
    finally:
        other.close()

    # -- abort from the task page (a confirmation dialog first)
    page.goto(f"/tasks/{uuid}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Abort task").click()
    expect(page.locator("#state-badge")).to_have_text("Cancelled", timeout=LONG)
    expect(page.get_by_role("button", name="Snapshot now")).to_be_disabled()
    final = alice.api.wait(uuid)
    assert final["state"] == "Cancelled"
    kept = wait_for(
        lambda: alice.api.keys(task["resultBucket"]),
        lambda keys: "log.run" in keys,
        30,
        "results uploaded on cancellation",
    )
    assert "scratch.tmp" not in kept
    assert io.BytesIO(alice.api.download(task["resultBucket"], "log.run")).read().startswith(b"t=1")
