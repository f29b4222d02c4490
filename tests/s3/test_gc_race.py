"""An S3 upload whose content was found already stored (a dedup hit) while garbage collection
frees it: the new key must still hold its content afterwards.

The interleaving is forced, not hoped for: the server runs in this process (a real uvicorn
server, real agents, real boto3 client), and the step that records an S3 upload's key
(``objects._record``) is wrapped so that, after the upload found its content stored and before
its key is written, the snapshot that was that content's only reference is deleted and
collected by the real collector (``retention.delete_snapshot`` and ``collect_pending``). The
wrapper checks that the blob is really gone at that point; the server must then store the
upload's bytes again instead of recording a key that points at freed content.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import xxhash

from hpcsnap.server import retention
from hpcsnap.server.app import create_app
from hpcsnap.server.auth import create_user
from hpcsnap.server.config import Settings
from hpcsnap.server.context import ServerContext, build_context
from hpcsnap.server.db import Snapshot, Task
from hpcsnap.server.s3 import objects
from hpcsnap.server.s3.secrets import sealer_for
from tests.s3.helpers import S3User
from tests.support import Api, free_port, wait_for


class InProcess:
    """``hpcsnap serve`` in a thread of the test process, so a test can wrap its functions."""

    def __init__(self, data_dir: Path) -> None:
        port = free_port()
        self.settings = Settings.from_env(data_dir=data_dir, port=port, host="127.0.0.1")
        self.ctx: ServerContext = build_context(self.settings)
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(self.settings, ctx=self.ctx),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcess:
        self.thread.start()
        wait_for(lambda: self.server.started, bool, 30, "in-process server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def user(self, name: str) -> S3User:
        with self.ctx.db.session() as s:
            _, token = create_user(s, name, sealer=sealer_for(self.settings.data_dir))
        api = Api(self.url, token)
        email = api.ok("GET", "/info")["email"]
        return S3User(api=api, email=email, token=token, endpoint=self.url)


@pytest.fixture()
def inproc(tmp_path: Path) -> Iterator[InProcess]:
    with InProcess(tmp_path / "data") as srv:
        yield srv


def test_s3_upload_racing_the_collector_stays_readable(
    inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = inproc.user("racer")
    api = alice.api
    uuid = api.submit(
        "head -c 300000 /dev/urandom > f.bin; hpcsnap job snapshot --label s1 >/dev/null; "
        "rm f.bin; head -c 200000 /dev/urandom > g.bin; hpcsnap job snapshot --label s2 "
        ">/dev/null; rm g.bin",
        resultBucket="race-out",
    )
    assert api.wait(uuid)["state"] == "Success"
    snaps = {s["label"]: s for s in api.ok("GET", f"/tasks/{uuid}/snapshots")}
    f_bin = api.download("race-out", snaps["s1"]["directory"] + "f.bin")
    g_bin = api.download("race-out", snaps["s2"]["directory"] + "g.bin")
    assert "f.bin" not in api.keys("race-out") and "g.bin" not in api.keys("race-out")
    with inproc.ctx.db.session() as s:
        task = s.get(Task, uuid)
        assert task is not None
        store = inproc.ctx.store(task.owner_id)

    real_record = objects._record
    victim: list[str] = []
    seen: list[tuple[int, bool, bool]] = []

    def racing_record(call: Any, key: str, **kw: Any) -> int:
        digest = kw["digest"]
        before = store.has(digest)  # the upload found its content stored: a dedup hit
        with inproc.ctx.db.session() as s:
            snap = s.get(Snapshot, victim.pop())
            assert snap is not None
            retention.delete_snapshot(s, snap)
        freed = retention.collect_pending(inproc.ctx.db, store, call.owner)
        seen.append((freed.blobs, before, store.has(digest)))
        return real_record(call, key, **kw)

    monkeypatch.setattr(objects, "_record", racing_record)
    s3 = alice.client()
    s3.create_bucket(Bucket="uploads")

    victim.append(snaps["s1"]["id"])
    s3.put_object(Bucket="uploads", Key="f-again.bin", Body=f_bin)

    victim.append(snaps["s2"]["id"])
    up = s3.create_multipart_upload(Bucket="uploads", Key="g-again.bin")
    part = s3.upload_part(
        Bucket="uploads", Key="g-again.bin", UploadId=up["UploadId"], PartNumber=1, Body=g_bin
    )
    s3.complete_multipart_upload(
        Bucket="uploads",
        Key="g-again.bin",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )

    # each upload found its content stored, then the collector really freed it under it
    assert [(blobs >= 1, before, after) for blobs, before, after in seen] == [
        (True, True, False),
        (True, True, False),
    ]
    for key, data in (("f-again.bin", f_bin), ("g-again.bin", g_bin)):
        assert s3.get_object(Bucket="uploads", Key=key)["Body"].read() == data
        assert store.has(xxhash.xxh3_128(data).hexdigest())
        assert api.download("uploads", key) == data
