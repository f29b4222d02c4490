"""The event stream on PostgreSQL with two servers sharing the database: writers of one task's
events (output, periodic and manual snapshots, state) run concurrently, and a follower on
either server sees every event once, in the order of a later replay."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tests.scaleout.cluster import ClusterServer, start_server
from tests.server.test_events import read_sse, replay_json
from tests.services import Postgres
from tests.support import Api

# Output every 50 ms while snapshots are taken every second: many concurrent event writers.
CHATTY = "for i in $(seq 1 80); do echo line $i; echo $i > f$((i % 7)).txt; sleep 0.05; done"


def test_followers_on_two_servers_see_every_event_in_order(
    tmp_path: Path, postgres: Postgres
) -> None:
    env = {"HPCSNAP_DATABASE_URL": postgres.create_database("events")}
    a: ClusterServer = start_server(tmp_path / "a", env)
    b: ClusterServer = start_server(tmp_path / "b", env)
    try:
        via_a = a.user("follower")
        via_b = Api(b.url, via_a.http.headers["Authorization"])
        uuid = via_a.submit(CHATTY, snapshotInterval=1, resultBucket="chatty")
        seen: dict[str, list[dict[str, Any]]] = {}

        def follow(name: str, api: Api) -> None:
            seen[name] = read_sse(api, uuid).events

        followers = [
            threading.Thread(target=follow, args=(name, api))
            for name, api in (("a", via_a), ("b", via_b))
        ]
        for t in followers:
            t.start()
        via_b.wait(uuid, {"FullyExecuting"})
        manual = [
            api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": f"via-{name}"})["id"]
            for name, api in (("a", via_a), ("b", via_b))
        ]
        assert via_a.wait(uuid)["state"] == "Success"
        for t in followers:
            t.join(60)
            assert not t.is_alive(), "a stream did not end with the task"
        replay = replay_json(via_b, uuid)
        assert seen["a"] == replay and seen["b"] == replay
        ids = [e["id"] for e in replay]
        assert ids == sorted(set(ids))
        logs = [e for e in replay if e["type"] == "log"]
        assert "".join(e["text"] for e in logs) == "".join(f"line {i}\n" for i in range(1, 81))
        succeeded = {e["snapshotId"] for e in replay if e["type"] == "snapshot.success"}
        snaps = via_a.ok("GET", f"/tasks/{uuid}/snapshots")
        assert succeeded == {s["id"] for s in snaps if s["status"] == "Success"}
        assert set(manual) <= succeeded and len(succeeded) >= 3
        assert replay[-1]["type"] == "end"
    finally:
        a.cleanup()
        b.cleanup()
