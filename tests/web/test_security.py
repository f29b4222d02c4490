"""The web interface's security over plain HTTP: sessions, CSRF, ownership, escaping, headers."""

from __future__ import annotations

import base64
import re
import stat
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ServerProcess, wait_for
from tests.web.conftest import User, make_user

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Web:
    """A cookie-keeping client of the web pages, signed in as one user."""

    def __init__(self, server: ServerProcess, token: str | None = None) -> None:
        self.http = httpx.Client(base_url=server.url, follow_redirects=False, timeout=60)
        self.csrf = ""
        if token is not None:
            page = self.http.get("/login")
            answer = self.http.post(
                "/login", data={"token": token, "csrf_token": csrf_of(page.text), "next": "/"}
            )
            assert answer.status_code == 303, answer.text
            listing = self.http.get("/")
            assert listing.status_code == 200
            self.csrf = re.search(r'data-csrf="([^"]+)"', listing.text).group(1)  # type: ignore[union-attr]

    def post(self, url: str, **kw: object) -> httpx.Response:
        return self.http.post(url, **kw)  # type: ignore[arg-type]


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, html[:500]
    return m.group(1)


@pytest.fixture(scope="module")
def mallory(server: ServerProcess) -> User:
    return make_user(server, "mallory")


@pytest.fixture(scope="module")
def running(alice: User) -> Iterator[str]:
    """A running task of alice's, with a name that would be a script if it were not escaped."""
    uuid = alice.api.submit("echo hi > a.txt; sleep 120", name="<img src=x onerror=alert(1)>")
    try:
        alice.api.wait(uuid, {"FullyExecuting"})
        yield uuid
    finally:
        alice.api.http.post(f"/tasks/{uuid}/abort")


def test_anonymous_is_sent_to_sign_in(server: ServerProcess) -> None:
    web = Web(server)
    for url in ("/", "/tasks/new", "/tasks/whatever"):
        answer = web.http.get(url)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login?next=")
    answer = web.http.get("/ui/api/tasks")
    assert answer.status_code == 401 and "sign in" in answer.json()["message"]


def test_session_cookie_and_secret(server: ServerProcess, alice: User) -> None:
    web = Web(server)
    first = web.http.get("/login")
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    # no CSRF token, a wrong one: refused
    for data in ({"token": alice.token}, {"token": alice.token, "csrf_token": "forged"}):
        answer = web.http.post("/login", data=data)
        assert answer.status_code == 403
    # a good one
    page = web.http.get("/login")
    answer = web.http.post(
        "/login", data={"token": alice.token, "csrf_token": csrf_of(page.text), "next": "/"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    value = web.http.cookies["hpcsnap_session"]
    payload = value.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert alice.token.encode() not in decoded and b"hps_" not in decoded
    # a tampered cookie is no session
    tampered = httpx.Client(base_url=server.url, follow_redirects=False)
    tampered.cookies.set("hpcsnap_session", ("B" if value[0] == "A" else "A") + value[1:])
    assert tampered.get("/").status_code == 303
    secret = server.data_dir / "web-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_sign_in_never_redirects_off_site(server: ServerProcess, alice: User) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        web = Web(server)
        page = web.http.get("/login", params={"next": target})
        answer = web.http.post(
            "/login",
            data={"token": alice.token, "csrf_token": csrf_of(page.text), "next": target},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/", target


def test_bad_token_and_sign_out(server: ServerProcess, alice: User) -> None:
    web = Web(server)
    page = web.http.get("/login")
    answer = web.http.post("/login", data={"token": "hps_nope", "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 401 and "not valid" in answer.text
    web = Web(server, alice.token)
    assert web.post("/logout", data={}).status_code == 403
    answer = web.post("/logout", data={"csrf_token": web.csrf})
    assert answer.status_code == 303
    assert web.http.get("/").status_code == 303


def test_actions_need_the_csrf_token(server: ServerProcess, alice: User, running: str) -> None:
    web = Web(server, alice.token)
    other = Web(server, alice.token)  # another session of the same user: another token
    assert other.csrf != web.csrf
    for url in (f"/tasks/{running}/snapshot", f"/tasks/{running}/abort", "/tasks/new"):
        for data in ({}, {"csrf_token": other.csrf}):
            answer = web.post(url, data=data, headers={"Accept": "application/json"})
            assert answer.status_code == 403, (url, answer.text)
    answer = web.post("/ui/api/check", json={"regexes": {}})
    assert answer.status_code == 403
    answer = web.post("/ui/api/check", json={"regexes": {}}, headers={"X-CSRF-Token": web.csrf})
    assert answer.status_code == 200
    assert alice.api.task(running)["state"] == "FullyExecuting"


def test_another_users_task_is_not_found(
    server: ServerProcess, alice: User, mallory: User, running: str
) -> None:
    snap = alice.api.ok("POST", f"/tasks/{running}/snapshot", json={"label": "mine"})["id"]
    web = Web(server, mallory.token)
    headers = {"X-CSRF-Token": web.csrf, "Accept": "application/json"}
    base = f"/tasks/{running}"
    for url in (
        base,
        f"{base}/snapshots/{snap}",
        f"{base}/snapshots/{snap}/files/a.txt",
        f"{base}/snapshots/{snap}/archive.tar.gz",
        f"{base}/snapshots/{snap}/diff",
        f"/ui/api/tasks/{running}",
    ):
        answer = web.http.get(url)
        assert answer.status_code == 404, (url, answer.status_code)
        assert "alert(1)" not in answer.text and "a.txt" not in answer.text.split("</header>")[-1]
    for url in (f"{base}/snapshot", f"{base}/abort", f"{base}/periodic"):
        answer = web.post(url, data={"interval": "5", "unit": "s"}, headers=headers)
        assert answer.status_code == 404, (url, answer.status_code)
    assert running not in web.http.get("/").text
    assert running not in web.http.get("/ui/api/tasks").json()["rows"]
    assert alice.api.task(running)["state"] == "FullyExecuting"
    assert alice.api.task(running)["snapshotInterval"] == 0


def test_everything_is_escaped_and_headers_set(
    server: ServerProcess, alice: User, running: str
) -> None:
    web = Web(server, alice.token)
    for url in ("/", f"/tasks/{running}"):
        answer = web.http.get(url)
        assert answer.status_code == 200
        assert "<img src=x" not in answer.text
        assert "&lt;img src=x onerror=alert(1)&gt;" in answer.text
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert "&lt;img" in web.http.get("/ui/api/tasks").json()["rows"]


def test_downloads_are_never_rendered_as_html(server: ServerProcess, alice: User) -> None:
    uuid = alice.api.submit(
        "printf '<script>alert(1)</script>' > page.html; echo ready; sleep 60", name="html-out"
    )
    try:
        alice.api.wait_output(uuid, "^ready$")
        snap = alice.api.ok("POST", f"/tasks/{uuid}/snapshot", json={})["id"]
        wait_for(
            lambda: alice.api.ok("GET", f"/tasks/{uuid}/snapshot/{snap}"),
            lambda s: s["status"] == "Success",
            60,
            "snapshot",
        )
        web = Web(server, alice.token)
        for query, kind, media in (
            ("", "attachment", "application/octet-stream"),
            ("?view=1", "inline", "text/plain"),
        ):
            answer = web.http.get(f"/tasks/{uuid}/snapshots/{snap}/files/page.html{query}")
            assert answer.status_code == 200
            assert answer.content == b"<script>alert(1)</script>"
            assert answer.headers["content-type"].startswith(media)
            assert answer.headers["content-disposition"].startswith(kind)
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in answer.headers["content-security-policy"]
    finally:
        alice.api.http.post(f"/tasks/{uuid}/abort")


def test_the_form_works_without_javascript(server: ServerProcess, alice: User) -> None:
    web = Web(server, alice.token)
    data = {
        "csrf_token": web.csrf,
        "name": "no-js <b>",
        "command": "sleep 30",
        "snapshot_enabled": "on",
        "snapshot_interval": "1",
        "snapshot_unit": "min",
        "results_whitelist": "[",
        "upload_bucket": "no-js-inputs",
    }
    files = [("files", ("in.txt", b"x\n")), ("folder", ("case/sub/b.txt", b"b\n"))]
    answer = web.post("/tasks/new", data=data, files=files)
    assert answer.status_code == 400
    html = answer.text
    assert "resultsWhitelist: invalid regular expression" in html  # the summary
    assert re.search(r'id="f-results_whitelist"[^>]*aria-invalid="true"', html)
    assert 'value="no-js &lt;b&gt;"' in html  # what was typed is kept, escaped
    assert "no-js-inputs" not in [b["name"] for b in alice.api.ok("GET", "/buckets")]

    data["results_whitelist"] = r"\.out$"
    answer = web.post("/tasks/new", data=data, files=files)
    assert answer.status_code == 303, answer.text
    uuid = answer.headers["location"].rsplit("/", 1)[1]
    try:
        task = alice.api.task(uuid)
        assert task["name"] == "no-js <b>" and task["snapshotInterval"] == 60
        assert task["advancedResourceBuckets"][0]["bucketName"] == "no-js-inputs"
        assert sorted(alice.api.keys("no-js-inputs")) == ["in.txt", "sub/b.txt"]
    finally:
        alice.api.http.post(f"/tasks/{uuid}/abort")
