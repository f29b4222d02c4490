"""The one place that speaks HTTP: auth header, retries of safe requests, errors mapped to
:mod:`hpcsnap.sdk.errors`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any
from urllib.parse import quote

import httpx

from hpcsnap.sdk import errors
from hpcsnap.sdk.config import Settings

try:
    VERSION = metadata.version("hpcsnap")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0+unknown"

USER_AGENT = f"hpcsnap-sdk-python/{VERSION}"
#: Pauses between attempts of a safe request (GET) that could not reach the server or got a
#: 502/503/504: about 8 s in all, enough to ride over a server restart. A connection that has
#: never reached its server does not retry (a wrong URL fails at once).
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
RETRYABLE_STATUS = frozenset({502, 503, 504})

ErrorMap = Mapping[int, type[errors.ApiError]]

_BY_STATUS: dict[int, type[errors.ApiError]] = {
    400: errors.BadRequestError,
    401: errors.UnauthorizedError,
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    422: errors.BadRequestError,
}

#: A 404's message starts with what is missing ("task ... not found", "bucket '...' not found").
_MISSING_BY_PREFIX: tuple[tuple[str, type[errors.ApiError]], ...] = (
    ("task ", errors.MissingTaskError),
    ("bucket ", errors.MissingBucketError),
    ("snapshot ", errors.MissingSnapshotError),
    ("no key ", errors.MissingFileError),
)


def path(*segments: str) -> str:
    """A URL path from segments, each percent-encoded (``/`` is kept inside a bucket key)."""
    return "/" + "/".join(quote(s, safe="/") for s in segments)


def message_of(resp: httpx.Response) -> str:
    """The server's ``{"message": ...}``, or the body's text, or the reason phrase."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    text = resp.text.strip()
    if text and len(text) < 500 and not text.startswith("<"):
        return text
    return f"{resp.status_code} {resp.reason_phrase}".strip()


def error_for(resp: httpx.Response, overrides: ErrorMap | None = None) -> errors.ApiError:
    """The exception for an error answer: by status, refined for 404s by the message."""
    status = resp.status_code
    message = message_of(resp)
    cls: type[errors.ApiError] | None = (overrides or {}).get(status)
    if cls is None and status == 404:
        cls = next((c for p, c in _MISSING_BY_PREFIX if message.startswith(p)), None)
    if cls is None:
        cls = _BY_STATUS.get(status)
    if cls is None:
        cls = errors.ServerError if status >= 500 else errors.ApiError
    if status == 401:
        message = f"{message} (check the token: HPCSNAP_TOKEN or client_token=)"
    return cls(message, status_code=status)


class Http:
    """An ``httpx.Client`` bound to one server and token."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None):
        self.settings = settings
        self.client = httpx.Client(
            base_url=settings.api_url,
            headers={"Authorization": settings.token, "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(settings.timeout, connect=min(10.0, settings.timeout)),
            transport=transport,
        )
        self.reached = False

    def close(self) -> None:
        self.client.close()

    def _unreachable(self, exc: httpx.TransportError) -> errors.ServerUnreachableError:
        what = type(exc).__name__
        detail = str(exc) or what
        return errors.ServerUnreachableError(
            f"cannot reach the hpcsnap server at {self.settings.api_url}: {detail} "
            "(is it running? check HPCSNAP_URL)"
        )

    def send(
        self,
        method: str,
        url: str,
        *,
        errors_map: ErrorMap | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; raise the mapped error for a non-2xx answer.

        Safe requests (GET) are retried while the server cannot be reached or answers
        502/503/504 (:data:`RETRY_DELAYS`); other requests only when the connection could not
        be opened (nothing was sent) and their body can be sent again. With ``stream=True``
        the body is not read: the caller must close the response.
        """
        safe = method.upper() == "GET"
        replayable = isinstance(kwargs.get("content"), bytes | str | None)
        delays = iter(RETRY_DELAYS)
        while True:
            try:
                request = self.client.build_request(method, url, **kwargs)
                resp = self.client.send(request, stream=stream)
            except httpx.TransportError as exc:
                retry = safe or (replayable and isinstance(exc, httpx.ConnectError))
                delay = next(delays, None) if retry and self.reached else None
                if delay is None:
                    raise self._unreachable(exc) from exc
                time.sleep(delay)
                continue
            self.reached = True
            if resp.is_success:
                return resp
            if stream:
                resp.read()
                resp.close()
            if safe and resp.status_code in RETRYABLE_STATUS:
                delay = next(delays, None)
                if delay is not None:
                    time.sleep(delay)
                    continue
            raise error_for(resp, errors_map)

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON answer (None for an empty body)."""
        resp = self.send(method, url, **kwargs)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise errors.ServerError(
                f"{method} {url}: the server's answer is not JSON", status_code=resp.status_code
            ) from exc

    def text(self, method: str, url: str, **kwargs: Any) -> str:
        return self.send(method, url, **kwargs).text

    @contextmanager
    def stream(self, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A GET whose body is read in chunks by the caller."""
        resp = self.send("GET", url, stream=True, **kwargs)
        try:
            yield resp
        except httpx.TransportError as exc:
            raise errors.TransferError(f"download of {url} was cut short: {exc}") from exc
        finally:
            resp.close()
