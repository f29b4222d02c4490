"""A waiting agent hears at once of what its server writes for it, without re-reading the database
(which it does only every ``HPCSNAP_PEER_POLL_MS``, for what other server processes wrote)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support import Api, ServerProcess, agent_token

WAIT = 30
"""The long-poll's own deadline. A poll that is not woken answers then with what it read before
the change, so its answer alone tells whether it was woken (no timing to assert)."""


@pytest.fixture(scope="module")
def deaf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose long-polls never re-read the database within a test (10 minutes)."""
    with ServerProcess(tmp_path_factory.mktemp("deaf"), HPCSNAP_PEER_POLL_MS="600000") as srv:
        yield srv


def answer(agent: httpx.Client, version: int, change: Callable[[], Any]) -> dict:
    """Start a long-poll, make ``change`` while it waits; its answer."""
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(
            agent.get, "/events", params={"wait": WAIT, "version": version}, timeout=WAIT + 30
        )
        time.sleep(1)
        assert not poll.done(), "the long-poll answered before anything changed"
        change()
        resp = poll.result()
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("what", ["periodic settings", "manual snapshot", "abort"])
def test_a_change_wakes_the_waiting_agent_at_once(deaf_server: ServerProcess, what: str) -> None:
    api: Api = deaf_server.user(f"wake{what.split()[0]}")
    uuid = api.submit("sleep 600")
    api.wait(uuid, {"FullyExecuting"})
    agent = httpx.Client(
        base_url=f"{deaf_server.url}/v1/agent/tasks/{uuid}",
        headers={"Authorization": f"Bearer {agent_token(uuid)}"},
    )
    version = agent.get("/events", params={"wait": 0}).json()["periodic"]["version"]
    changes: dict[str, tuple[Callable[[], Any], Callable[[dict], bool]]] = {
        "periodic settings": (
            lambda: api.ok("POST", f"/tasks/{uuid}/snapshot/periodic", json={"interval": 60}),
            lambda ev: ev["periodic"]["version"] != version and ev["periodic"]["interval"] == 60,
        ),
        "manual snapshot": (
            lambda: api.ok("POST", f"/tasks/{uuid}/snapshot", json={"label": "now"}),
            lambda ev: any(s["label"] == "now" for s in ev["snapshots"]),
        ),
        "abort": (lambda: api.ok("POST", f"/tasks/{uuid}/abort"), lambda ev: ev["abort"]),
    }
    change, heard = changes[what]
    try:
        ev = answer(agent, version, change)
        assert heard(ev), f"not woken: the poll answered at its deadline with {ev}"
    finally:
        api.post(f"/tasks/{uuid}/abort")
        agent.close()
