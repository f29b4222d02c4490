"""The web interface's retention field (new-task form) and snapshot delete button, over HTTP."""

from __future__ import annotations

import re

from tests.support import ServerProcess
from tests.web.conftest import User, make_user
from tests.web.test_security import Web, csrf_of


def test_retention_field_of_the_new_task_form(server: ServerProcess) -> None:
    user = make_user(server, "ret-form")
    web = Web(server, user.token)
    data = {
        "csrf_token": web.csrf,
        "name": "kept",
        "command": "sleep 30",
        "snapshot_enabled": "on",
        "snapshot_interval": "1",
        "snapshot_unit": "min",
        "snapshot_retention": "0",
    }
    answer = web.post("/tasks/new", data=data)
    assert answer.status_code == 400
    assert re.search(r'id="f-snapshot_retention"[^>]*aria-invalid="true"', answer.text)
    data["snapshot_retention"] = "3"
    answer = web.post("/tasks/new", data=data)
    assert answer.status_code == 303, answer.text
    uuid = answer.headers["location"].rsplit("/", 1)[1]
    try:
        assert user.api.task(uuid)["snapshotRetention"] == 3
    finally:
        user.api.http.post(f"/tasks/{uuid}/abort")


def test_delete_button_of_the_snapshot_page(server: ServerProcess, alice: User) -> None:
    api = alice.api
    uuid = api.submit("echo x > x.txt; hpcsnap job snapshot --label gone >/dev/null")
    api.wait(uuid)
    (snap,) = api.ok("GET", f"/tasks/{uuid}/snapshots")
    web = Web(server, alice.token)
    page = web.http.get(f"/tasks/{uuid}/snapshots/{snap['id']}")
    assert 'id="delete-form"' in page.text
    url = f"/tasks/{uuid}/snapshots/{snap['id']}/delete"
    assert web.post(url, data={}).status_code == 403  # no CSRF token
    other = Web(server, make_user(server, "ret-other").token)
    assert other.post(url, data={"csrf_token": other.csrf}).status_code == 404
    answer = web.post(url, data={"csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=deleted")
    assert api.ok("GET", f"/tasks/{uuid}/snapshot/{snap['id']}")["deleted"] is True
    assert "Snapshot deleted." in web.http.get(answer.headers["location"]).text
    assert 'id="deleted-badge"' in web.http.get(f"/tasks/{uuid}/snapshots/{snap['id']}").text
