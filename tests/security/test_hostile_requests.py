"""Hostile requests (issue #10, item 7): pathological regexes, huge bodies, traversal in keys
and prefixes, injection through names, labels and keys."""

from __future__ import annotations

import re
import threading
import time
import uuid as uuidlib
from pathlib import Path

import httpx
import pytest

from tests.support import Api, ServerProcess, wait_for
from tests.web.test_security import Web

REDOS = r"(a|aa)+$"  # (a+)+$ the regex module optimises; this one it cannot
#: A name in /job on which REDOS backtracks catastrophically.
BAIT = "a" * 40 + "b"


@pytest.fixture(scope="module")
def eve(server: ServerProcess) -> Api:
    return server.user("hostile-eve")


class Health:
    """GET /v1/health in a loop while something else happens: the slowest answer seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slowest = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            assert httpx.get(self.url + "/v1/health", timeout=30).status_code == 200
            self.slowest = max(self.slowest, time.monotonic() - start)
            self.answers += 1
            time.sleep(0.05)

    def __enter__(self) -> Health:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.timeout(120)
def test_a_pathological_regex_fails_the_snapshot_in_bounded_time(
    eve: Api, server: ServerProcess
) -> None:
    """Given at submission, at the manual route and at the periodic route: each snapshot ends
    ``Failure`` saying the regex is too slow, soon, and the server answers all along."""
    uuid = eve.submit(f"touch {BAIT}; echo ready; sleep 120", snapshotWhitelist=REDOS)
    wait_for(lambda: eve.get(f"/tasks/{uuid}/stdout").text, lambda t: "ready" in t, 30, "ready")
    with Health(server.url) as health:
        started = time.monotonic()
        snaps = [eve.ok("POST", f"/tasks/{uuid}/snapshot", json={})["id"]]  # the task's filter
        snaps.append(
            eve.ok("POST", f"/tasks/{uuid}/snapshot", json={"blacklist": REDOS, "whitelist": ""})[
                "id"
            ]
        )
        done = [eve.wait_snapshot(uuid, s, timeout=30) for s in snaps]
        # the periodic route: its filter applies to the next periodic snapshots
        eve.ok("POST", f"/tasks/{uuid}/snapshot/periodic", json={"interval": 1, "blacklist": REDOS})
        periodic = _first_periodic(eve, uuid)
        elapsed = time.monotonic() - started
    for snap in [*done, periodic]:
        assert snap["status"] == "Failure", snap
        assert "too slow" in snap["error"] and REDOS in snap["error"], snap["error"]
    assert elapsed < 60
    assert health.answers > 0 and health.slowest < 5
    eve.ok("POST", f"/tasks/{uuid}/abort")


def _first_periodic(eve: Api, uuid: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for snap in eve.ok("GET", f"/tasks/{uuid}/snapshots"):
            if snap["kind"] == "periodic" and snap["status"] in ("Success", "Failure"):
                return dict(snap)
        time.sleep(0.2)
    raise AssertionError("no periodic snapshot ended")


@pytest.mark.timeout(60)
def test_the_web_filter_preview_bounds_a_pathological_regex(
    server: ServerProcess, eve: Api
) -> None:
    web = Web(server, str(eve.http.headers["Authorization"]))
    with Health(server.url) as health:
        start = time.monotonic()
        answer = web.post(
            "/ui/api/check",
            json={"regexes": {"snapshot_whitelist": REDOS}, "paths": [BAIT] * 50},
            headers={"X-CSRF-Token": web.csrf},
        )
        took = time.monotonic() - start
    assert answer.status_code == 200, answer.text
    assert "too slow" in str(answer.json()["errors"]), answer.json()
    assert took < 10 and health.slowest < 5


def test_invalid_regexes_are_refused_at_every_route(eve: Api) -> None:
    uuid = eve.submit("sleep 60")
    eve.wait(uuid, {"FullyExecuting"})
    for method, url, body in (
        ("POST", "/tasks", {"name": "x", "command": "ls", "snapshotWhitelist": "(a"}),
        ("POST", f"/tasks/{uuid}/snapshot", {"whitelist": "(a"}),
        ("POST", f"/tasks/{uuid}/snapshot/periodic", {"interval": 5, "blacklist": "[z-a]"}),
    ):
        resp = eve.request(method, url, json=body)
        assert resp.status_code == 400, (url, resp.text)
        assert "invalid regular expression" in resp.json()["message"]
    eve.ok("POST", f"/tasks/{uuid}/abort")


@pytest.mark.timeout(120)
def test_huge_bodies_are_refused_with_413(eve: Api, server: ServerProcess) -> None:
    before = len(eve.ok("GET", "/tasks"))
    huge = b'{"name": "x", "command": "ls", "tags": ["' + b"a" * (50 << 20) + b'"]}'
    resp = eve.post("/tasks", content=huge, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "too large" in resp.json()["message"]

    def chunks() -> object:  # no Content-Length: counted as it arrives
        yield b'{"name": "x", "command": "ls", "tags": ["'
        for _ in range(20):
            yield b"a" * (1 << 20)
        yield b'"]}'

    resp = eve.post("/buckets", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "too large" in resp.json()["message"]
    assert len(eve.ok("GET", "/tasks")) == before
    assert eve.get("/info").status_code == 200
    # uploads stream to the blob store: a large file is not a large body
    eve.ok("POST", "/buckets", json={"name": "big-upload"})
    eve.upload("big-upload", "big.bin", b"x" * (12 << 20))
    assert eve.ok("GET", "/buckets/big-upload/files")[0]["size"] == 12 << 20


def test_traversal_in_keys_and_prefixes(eve: Api, server: ServerProcess) -> None:
    eve.ok("POST", "/buckets", json={"name": "trav"})
    outside = server.data_dir.parent
    before = set(outside.iterdir())
    for key in (
        "../escape",
        "a/../../escape",
        "%2e%2e/escape",
        "%2E%2E%2Fescape",
        "a/%2e%2e/%2e%2e/escape",
        "a/%00/b",
        "nul%00.txt",
    ):
        resp = eve.put(f"/buckets/trav/files/{key}", content=b"x")
        assert resp.status_code in (400, 404), (key, resp.status_code, resp.text)
        assert resp.json()["message"]
    # an absolute key is a relative one (slashes merge); a backslash is a plain character
    eve.upload("trav", "/abs/key", b"x")
    eve.upload("trav", "..\\..\\win", b"y")
    assert eve.keys("trav") == ["..\\..\\win", "abs/key"]
    assert set(outside.iterdir()) == before, "nothing written beside the data dir"
    uuid = eve.submit("sleep 60")
    eve.wait(uuid, {"FullyExecuting"})
    for prefix in ("../up/", "/abs/", "a/../../b/", "a//b/", "nul\x00/"):
        for url, body in (
            (f"/tasks/{uuid}/snapshot", {"bucketPrefix": prefix}),
            (f"/tasks/{uuid}/snapshot/periodic", {"interval": 0, "bucketPrefix": prefix}),
            ("/tasks", {"name": "p", "command": "ls", "snapshotBucketPrefix": prefix}),
        ):
            resp = eve.post(url, json=body)
            assert resp.status_code == 400, (url, prefix, resp.text)
    eve.ok("POST", f"/tasks/{uuid}/abort")
    # a staged key with backslashes is one file name inside /job, never a path out of it
    staged = eve.submit("ls; cat '..\\..\\win'", advancedResourceBuckets=[{"bucketName": "trav"}])
    assert eve.wait(staged)["state"] == "Success"
    assert "y" in eve.get(f"/tasks/{staged}/stdout").text


@pytest.mark.timeout(120)
def test_injection_through_names_labels_and_keys(eve: Api, server: ServerProcess) -> None:
    marker = Path(f"/tmp/hpcsnap-pwned-{uuidlib.uuid4().hex}")
    evil = f"$(touch {marker}); `touch {marker}`; rm -rf /tmp/x <script>alert(1)</script>"
    eve.ok("POST", "/buckets", json={"name": "inject"})
    eve.upload("inject", "<img src=x onerror=alert(2)>.txt", b"html?")
    uuid = eve.submit(
        "replaced by the constant below",
        name=evil,
        shortname=evil,
        tags=[evil[:128]],
        labels={"k": evil},
        advancedResourceBuckets=[{"bucketName": "inject"}],
        resultBucket="inject",
        constants=[
            {
                "key": "DOCKER_CMD",
                "value": "echo x > '<b onmouseover=alert(3)>bold.txt'; echo ready; sleep 60",
            },
            {"key": "EVIL", "value": evil},
        ],
    )
    wait_for(lambda: eve.get(f"/tasks/{uuid}/stdout").text, lambda t: "ready" in t, 30, "ready")
    # a label is a directory name: only safe characters
    resp = eve.post(f"/tasks/{uuid}/snapshot", json={"label": "$(touch x)"})
    assert resp.status_code == 400 and "label" in resp.json()["message"]
    resp = eve.post(f"/tasks/{uuid}/snapshot", json={"label": "../up"})
    assert resp.status_code == 400
    snap = eve.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "ok-1"})["id"]
    done = eve.wait_snapshot(uuid, snap)
    assert done["status"] == "Success" and done["directory"].endswith("_ok-1/")
    web = Web(server, str(eve.http.headers["Authorization"]))
    pages = ["/", f"/tasks/{uuid}", f"/tasks/{uuid}/snapshots/{snap}"]
    for url in pages:
        page = web.http.get(url)
        assert page.status_code == 200, url
        assert not re.search(r"<script>alert|<img src=x|<b onmouseover", page.text), url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in web.http.get(f"/tasks/{uuid}").text
    assert "&lt;b onmouseover=alert(3)&gt;bold.txt" in web.http.get(pages[2]).text
    eve.ok("POST", f"/tasks/{uuid}/abort")
    eve.wait(uuid)
    assert eve.task(uuid)["name"] == evil, "stored as given"
    assert not marker.exists(), "a name, a tag, a label or a constant was run by a shell"
