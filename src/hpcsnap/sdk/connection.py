"""The connection to an hpcsnap server: the entry point of the SDK."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from hpcsnap.sdk import _http
from hpcsnap.sdk.bucket import Bucket
from hpcsnap.sdk.config import resolve
from hpcsnap.sdk.errors import MissingBucketError
from hpcsnap.sdk.task import Task

__all__ = ["Connection"]


class Connection:
    """A user's connection to an hpcsnap server.

    ``Connection(client_token=..., cluster_url="http://host:8642")``; the URL may end in ``/v1``
    or not. What is not given comes from a config file or the environment (``HPCSNAP_TOKEN``,
    ``HPCSNAP_URL``): see :mod:`hpcsnap.sdk.config`. As in the qarnot SDK, ``fileconf`` is a
    config file path or dict; a bare token is accepted there too (``Connection("hps_...")``).

    Creating a connection sends nothing; the first request checks the token. Close it with
    :meth:`close` or use it as a context manager.
    """

    def __init__(
        self,
        fileconf: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        client_token: str | None = None,
        cluster_url: str | None = None,
        *,
        cluster_timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = resolve(
            fileconf, client_token=client_token, cluster_url=cluster_url, timeout=cluster_timeout
        )
        self._http = _http.Http(self._settings, transport=transport)

    def __repr__(self) -> str:
        return f"Connection({self._settings.api_url!r})"

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    @property
    def url(self) -> str:
        """The API's base URL (ending in ``/v1``)."""
        return self._settings.api_url

    # ------------------------------------------------------------------ account

    def user_info(self) -> dict[str, Any]:
        """The account's counts and the server's executor and job mode (``GET /v1/info``)."""
        return dict(self._http.json("GET", "/info"))

    def server_settings(self) -> dict[str, Any]:
        """Version, minimum snapshot interval and size limits (``GET /v1/settings``)."""
        return dict(self._http.json("GET", "/settings"))

    def collect_garbage(
        self, *, grace_minutes: float = 60, dry_run: bool = False
    ) -> dict[str, Any]:
        """Administrators: free every stored blob that nothing references and that is older
        than ``grace_minutes`` (``dry_run``: only count them); returns what was scanned and
        freed (``freedBlobs``, ``freedBytes``...). Waits for the sweep, however long."""
        body = {"graceMinutes": grace_minutes, "dryRun": dry_run}
        return dict(self._http.json("POST", "/admin/gc", json=body, timeout=None))

    # ------------------------------------------------------------------ tasks

    def create_task(
        self,
        name: str,
        profile: str = "docker-batch",
        instancecount: int = 1,
        *,
        shortname: str | None = None,
    ) -> Task:
        """A new task, configured locally until :meth:`Task.submit`.

        The profile is ``docker-batch`` or ``shell`` (both run the constant ``DOCKER_CMD`` with
        ``/bin/sh -c``); hpcsnap runs single-instance tasks.
        """
        return Task(self, name, profile, instancecount, shortname=shortname)

    def retrieve_task(self, uuid: str) -> Task:
        """The task with this uuid (:class:`~hpcsnap.MissingTaskError` if there is none)."""
        return Task.from_json(self, self._http.json("GET", _http.path("tasks", uuid)))

    def tasks(self, *, state: str | None = None) -> list[Task]:
        """The user's tasks, newest first (only those in ``state`` if given)."""
        params = {"state": state} if state else {}
        data = self._http.json("GET", "/tasks", params=params)
        return [Task.from_json(self, d) for d in data or []]

    # ------------------------------------------------------------------ buckets

    def create_bucket(self, name: str) -> Bucket:
        """Create a bucket (creating one you already own is fine) and return it."""
        self._http.json("POST", "/buckets", json={"name": name})
        return Bucket(self, name)

    def retrieve_bucket(self, name: str) -> Bucket:
        """An existing bucket (:class:`~hpcsnap.MissingBucketError` if there is none)."""
        bucket = Bucket(self, name)
        if not bucket.exists():
            raise MissingBucketError(f"bucket {name!r} not found", status_code=404)
        return bucket

    def buckets(self) -> list[Bucket]:
        """The user's buckets, by name."""
        data = self._http.json("GET", "/buckets")
        return [Bucket(self, str(d["name"])) for d in data or []]
