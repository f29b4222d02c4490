"""Templates: one autoescaping Jinja2 environment, its filters, and the security headers of
every page."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse

from hpcsnap.server.db.models import utcnow

STATIC_DIR = Path(__file__).parent / "static"

#: Sent with every page: scripts and styles only from this server (no inline code at all).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Shown for a missing value (an en dash).
NONE = "\u2013"

STATE_TONES = {
    "Submitted": "queued",
    "FullyDispatched": "queued",
    "FullyExecuting": "running",
    "UploadingResults": "running",
    "PendingCancel": "warn",
    "Success": "ok",
    "Failure": "bad",
    "Cancelled": "muted",
    "Triggered": "queued",
    "InProgress": "running",
}


def human_size(n: int | float | None) -> str:
    """``1.5 MiB`` (binary units, three significant digits)."""
    if n is None:
        return NONE
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if abs(value) < 1000 else f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.3g} PiB"  # pragma: no cover


def human_duration(seconds: float | None) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    if seconds is None:
        return NONE
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def fmt_datetime(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else NONE


def fmt_time(value: dt.datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value else NONE


def iso(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if value else ""


def url_path(path: str) -> str:
    """Quote a key path for a URL, keeping its ``/`` separators."""
    return quote(path, safe="/")


def _static_version() -> str:
    h = hashlib.sha256()
    for p in sorted(STATIC_DIR.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:12]


_VERSION = _static_version()


def static(name: str) -> str:
    """URL of a static file, with a version so a new release is never served from cache."""
    return f"/static/{name}?v={_VERSION}"


env = Environment(
    loader=PackageLoader("hpcsnap.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(
    size=human_size,
    duration=human_duration,
    datetime=fmt_datetime,
    time=fmt_time,
    iso=iso,
    urlpath=url_path,
    tone=lambda state: STATE_TONES.get(str(state), "muted"),
)
env.globals.update(static=static, now=utcnow)


def render(template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)


def page(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A whole page, with :data:`SECURITY_HEADERS`. ``context`` needs ``user`` (or None) and
    ``csrf``; templates get both on every page."""
    context.setdefault("user", None)
    context.setdefault("csrf", "")
    context.setdefault("nav", "")
    return HTMLResponse(render(template, **context), status_code=status, headers=SECURITY_HEADERS)
