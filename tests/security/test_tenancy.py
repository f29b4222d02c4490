"""Tenancy: another user, or nobody, never gets at a user's objects (issue #10, item 5).

The route matrix is built from the application's own route table: a new route with a path
parameter is covered as soon as it exists, and a new route without one fails the test until it
is classified below. Then the S3 endpoint, and token revocation everywhere at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from hpcsnap.server.app import create_app
from hpcsnap.server.config import Settings
from tests.s3.helpers import S3User, error_code, s3_user
from tests.support import Api, ServerProcess, hpcsnap
from tests.web.test_security import Web

MARK = "zq7x"
CONTENT = f"CONTENT-{MARK}".encode()
TASK_NAME = f"TASKNAME-{MARK}"
STDOUT = f"STDOUT-{MARK}"

#: Routes without a path parameter: what each one is. ``public`` needs nobody; ``own`` answers
#: about the caller's own things only (so it must never show another user's); ``admin`` is for
#: administrators only (403 to a user, 401 to nobody).
UNPARAMETERISED = {
    ("POST", "/v1/admin/gc"): "admin",
    ("GET", "/v1/health"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "public",
    ("GET", "/static"): "public",
    ("GET", "/v1/settings"): "own",
    ("GET", "/v1/info"): "own",
    ("GET", "/v1/buckets"): "own",
    ("POST", "/v1/buckets"): "own",
    ("GET", "/v1/tasks"): "own",
    ("POST", "/v1/tasks"): "own",
    ("GET", "/v1/tokens"): "own",
    ("POST", "/v1/tokens"): "own",
    ("GET", "/"): "own",
    ("GET", "/ui/api/tasks"): "own",
    ("GET", "/tasks/new"): "own",
    ("POST", "/tasks/new"): "own",
    ("POST", "/ui/api/check"): "own",
    ("GET", "/ui/api/example"): "own",
}
#: Routes with a path parameter that serve no user's data.
SHARED = {("GET", "/ui/example/{name}")}

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def app_routes(data_dir: Path) -> list[tuple[str, str]]:
    """(method, path template) of every route the server has (HEAD aside)."""
    app = create_app(Settings.from_env(data_dir=data_dir))
    found: list[tuple[str, str]] = []

    def add(route: Any, path: str) -> None:
        if isinstance(route, APIRoute | Route):
            found.extend((m, path) for m in sorted(route.methods or ()) if m != "HEAD")
        elif isinstance(route, Mount):
            found.append(("GET", path))
        elif isinstance(route, APIWebSocketRoute | WebSocketRoute):
            found.append(("WS", path))
        else:
            raise AssertionError(f"unknown kind of route {route!r}: classify it in this test")

    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):  # FastAPI >= 0.16x includes lazily
            prefix = route.include_context.prefix
            for context in route.effective_route_contexts():
                # a WebSocket route's context has no path: its own, under the include's prefix
                add(context.original_route, context.path or prefix + context.original_route.path)
        else:
            add(route, route.path)  # type: ignore[attr-defined]
    return found


@dataclass
class Alice:
    s3: S3User
    task: str
    snapshot: str
    bucket: str
    key: str
    token_id: int
    upload_id: str

    @property
    def api(self) -> Api:
        return self.s3.api


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> Iterator[Alice]:
    user = s3_user(server, "ten-alice")
    api = user.api
    bucket, key = f"vault-{MARK}", f"dir/secret-{MARK}.txt"
    api.ok("POST", "/buckets", json={"name": bucket})
    api.upload(bucket, key, CONTENT)
    uuid = api.submit(
        f"printf {CONTENT.decode()} > out-{MARK}.txt; echo {STDOUT}; sleep 300",
        name=TASK_NAME,
        resultBucket=bucket,
    )
    api.wait_output(uuid, f"^{STDOUT}$")  # its file is written: the snapshot holds it
    snap = api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "mine"})["id"]
    done = api.wait_snapshot(uuid, snap)
    assert done["status"] == "Success" and done["filesTotal"] == 1, done
    token_id = api.ok("GET", "/tokens")[0]["id"]
    upload = user.client().create_multipart_upload(Bucket=bucket, Key="big.bin")["UploadId"]
    try:
        yield Alice(user, uuid, snap, bucket, key, token_id, upload)
    finally:
        api.http.post(f"/tasks/{uuid}/abort")


def _values(alice: Alice) -> dict[str, str]:
    return {
        "task_uuid": alice.task,
        "snapshot_id": alice.snapshot,
        "name": alice.bucket,
        "key": alice.key,
        "path": f"out-{MARK}.txt",
        "instance_id": "0",
        "token_id": str(alice.token_id),
        "session_id": "0" * 32,
        "fmt": "zip",
    }


def _leaks(resp: httpx.Response, alice: Alice) -> list[str]:
    text = resp.content + str(dict(resp.headers)).encode()
    found = [m for m in (CONTENT, TASK_NAME.encode(), STDOUT.encode()) if m in text]
    if alice.s3.email.encode() in text:
        found.append("alice's email")
    return [str(f) for f in found]


def _refused(resp: httpx.Response) -> bool:
    if resp.status_code in (401, 403, 404):
        return True
    return resp.status_code == 303 and resp.headers["location"].startswith("/login")


def _ws_handshake(server: ServerProcess, url: str, headers: dict[str, str]) -> int:
    """The HTTP status answering a WebSocket handshake (101 if it was accepted)."""
    try:
        with ws_connect(
            server.url.replace("http://", "ws://") + url,
            additional_headers=headers,
            open_timeout=30,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def test_every_route_refuses_another_user_and_nobody(
    server: ServerProcess, alice: Alice, tmp_path: Path
) -> None:
    bob_token = s3_user(server, "ten-bob2").token
    bob = Web(server, bob_token)
    bob_cookies = dict(bob.http.cookies)
    values = _values(alice)
    routes = app_routes(tmp_path / "app")
    unclassified = [r for r in routes if not PARAM.search(r[1]) and r not in UNPARAMETERISED]
    assert not unclassified, f"classify these routes in UNPARAMETERISED: {unclassified}"
    checked = 0
    problems: list[str] = []
    for method, template in routes:
        names = PARAM.findall(template)
        unknown = [n for n in names if n not in values]
        assert not unknown, f"{method} {template}: give a value of alice's for {unknown}"
        url = PARAM.sub(lambda m: values[m.group(1)], template)
        kind = UNPARAMETERISED.get(
            (method, template), "shared" if (method, template) in SHARED else "owned"
        )
        body: dict[str, Any] = (
            {"json": {"interval": 5, "label": "x"}} if method in ("POST", "PUT") else {}
        )
        as_bob = {"Authorization": bob_token, "X-CSRF-Token": bob.csrf}
        if method == "WS":  # a WebSocket handshake is refused before it is accepted
            for who, headers in (("bob", {"Authorization": bob_token}), ("nobody", {})):
                status = _ws_handshake(server, url, headers)
                checked += 1
                if status not in (401, 403, 404) or (who == "bob" and status != 404):
                    problems.append(f"{who} WebSocket {url}: {status}, not refused")
            continue
        for who, cookies, headers in (("bob", bob_cookies, as_bob), ("nobody", {}, {})):
            # a client per request: no answer (e.g. /login's) can change the next one's session
            with httpx.Client(
                base_url=server.url, cookies=cookies, follow_redirects=False, timeout=30
            ) as client:
                resp = client.request(method, url, headers=headers, **body)
            checked += 1
            leaks = _leaks(resp, alice)
            if leaks:
                problems.append(f"{who} {method} {url}: {resp.status_code} shows {leaks}")
            if resp.status_code >= 500:
                problems.append(f"{who} {method} {url}: {resp.status_code}")
            if kind == "owned" and who == "bob" and resp.status_code != 404:
                # another user's object answers exactly as a missing one
                problems.append(f"bob {method} {url}: {resp.status_code}, not 404")
            if kind == "owned" and not _refused(resp):
                problems.append(f"{who} {method} {url}: {resp.status_code} {resp.text[:200]}")
            if kind == "admin" and resp.status_code != (403 if who == "bob" else 401):
                problems.append(f"{who} {method} {url}: {resp.status_code}, not refused")
            if kind == "own" and alice.task in resp.text:
                problems.append(f"{who} {method} {url}: lists alice's task")
    assert not problems, "\n".join(problems)
    assert checked >= 2 * 40
    # nothing bob tried changed alice's things
    api = alice.api
    assert api.task(alice.task)["state"] == "FullyExecuting"
    assert api.download(alice.bucket, alice.key) == CONTENT
    assert api.ok("GET", f"/tasks/{alice.task}/snapshot/{alice.snapshot}")["status"] == "Success"
    assert [t["id"] for t in api.ok("GET", "/tokens")] == [alice.token_id]


def test_the_s3_endpoint_refuses_another_user_and_nobody(
    server: ServerProcess, alice: Alice
) -> None:
    bob = s3_user(server, "ten-s3bob").client()
    b, k = alice.bucket, alice.key
    up = alice.upload_id
    calls = {
        "head_bucket": lambda c: c.head_bucket(Bucket=b),
        "list_objects": lambda c: c.list_objects(Bucket=b),
        "list_objects_v2": lambda c: c.list_objects_v2(Bucket=b, Prefix="dir/"),
        "list_object_versions": lambda c: c.list_object_versions(Bucket=b),
        "get_bucket_versioning": lambda c: c.get_bucket_versioning(Bucket=b),
        "get_object": lambda c: c.get_object(Bucket=b, Key=k),
        "get_object_range": lambda c: c.get_object(Bucket=b, Key=k, Range="bytes=0-3"),
        "head_object": lambda c: c.head_object(Bucket=b, Key=k),
        "put_object": lambda c: c.put_object(Bucket=b, Key=k, Body=b"overwritten"),
        "copy_object_out": lambda c: c.copy_object(
            Bucket="ten-s3bob-own", Key="stolen", CopySource=f"{b}/{k}"
        ),
        "copy_object_in": lambda c: c.copy_object(Bucket=b, Key=k, CopySource=f"{b}/{k}"),
        "delete_object": lambda c: c.delete_object(Bucket=b, Key=k),
        "delete_objects": lambda c: c.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k}]}),
        "delete_bucket": lambda c: c.delete_bucket(Bucket=b),
        "create_multipart_upload": lambda c: c.create_multipart_upload(Bucket=b, Key="m"),
        "list_multipart_uploads": lambda c: c.list_multipart_uploads(Bucket=b),
        "upload_part": lambda c: c.upload_part(
            Bucket=b, Key="big.bin", UploadId=up, PartNumber=1, Body=b"x"
        ),
        "list_parts": lambda c: c.list_parts(Bucket=b, Key="big.bin", UploadId=up),
        "complete_multipart_upload": lambda c: c.complete_multipart_upload(
            Bucket=b,
            Key="big.bin",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]},
        ),
        "abort_multipart_upload": lambda c: c.abort_multipart_upload(
            Bucket=b, Key="big.bin", UploadId=up
        ),
    }
    bob.create_bucket(Bucket="ten-s3bob-own")
    anonymous = alice.s3.client(signature_version=UNSIGNED)
    assert isinstance(anonymous.meta.config, Config)
    problems = []
    for who, client in (("bob", bob), ("anonymous", anonymous)):
        for name, call in calls.items():
            try:
                answer = call(client)
            except botocore.exceptions.ClientError as exc:
                status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
                if status not in (301, 303, 400, 401, 403, 404, 405):
                    problems.append(f"{who} {name}: {status} {error_code(exc)}")
                continue
            except botocore.exceptions.BotoCoreError:
                continue  # e.g. an unsigned call answered by the web pages: not S3 at all
            problems.append(f"{who} {name}: succeeded: {str(answer)[:200]}")
    assert not problems, "\n".join(problems)
    assert "vault" not in str(bob.list_buckets())
    assert bob.list_objects_v2(Bucket="ten-s3bob-own")["KeyCount"] == 0
    # alice's bucket is as she left it, multipart upload included
    owner = alice.s3.client()
    assert owner.get_object(Bucket=b, Key=k)["Body"].read() == CONTENT
    uploads = owner.list_multipart_uploads(Bucket=b).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [up]


def test_revoking_a_token_takes_effect_at_once_everywhere(server: ServerProcess) -> None:
    carol = s3_user(server, "ten-carol")
    web = Web(server, carol.token)
    s3 = carol.client()
    s3.create_bucket(Bucket="carol-box")
    assert web.http.get("/").status_code == 200
    # a second token, made over the API, to revoke the first one with
    second = carol.api.ok("POST", "/tokens")
    assert second["token"].startswith("hps_") and not second["current"]
    other = Api(server.url, second["token"])
    tokens = other.ok("GET", "/tokens")
    first_id = next(t["id"] for t in tokens if not t["current"])
    assert other.delete(f"/tokens/{first_id}").status_code == 204
    # refused at once: REST, S3, and the web session opened with it
    resp = carol.api.get("/info")
    assert resp.status_code == 401 and "revoked" in resp.json()["message"]
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        s3.list_objects_v2(Bucket="carol-box")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    page = web.http.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert web.http.get("/ui/api/tasks").status_code == 401
    # the other token works; it cannot revoke itself as the last one, nor a revoked one
    assert other.ok("GET", "/info")["email"] == carol.email
    second_id = other.ok("GET", "/tokens")[0]["id"]
    resp = other.delete(f"/tokens/{second_id}")
    assert resp.status_code == 409 and "last" in resp.json()["message"]
    assert other.delete(f"/tokens/{first_id}").status_code == 404
    # the server-side command revokes too (an administrator's way out)
    out = hpcsnap("user", "revoke", "ten-carol", "--data-dir", str(server.data_dir))
    assert out.stdout.strip() == "1"
    assert other.get("/info").status_code == 401
    bad = hpcsnap("user", "revoke", "nobody-here", "--data-dir", str(server.data_dir), check=False)
    assert bad.returncode == 1 and "no user named" in bad.stderr
