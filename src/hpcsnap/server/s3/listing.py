"""Listing a bucket the way S3 does: prefix, delimiter roll-up into common prefixes, paging.

Keys are read in UTF-8 byte order straight from the index, one page at a time: a page costs
about ``max_keys`` rows plus one indexed jump per common prefix, whatever the number of keys
rolled up under each prefix (a snapshot directory of 100,000 files is one jump).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpcsnap.server.db import Object

MAX_KEYS = 1000


@dataclass
class Page:
    """One page of a listing, in key order; ``next_marker`` is where the next page starts
    (exclusive) when ``truncated``."""

    objects: list[Object] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_marker: str | None = None


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``
    (None if there is none)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:
            code = 0xE000  # surrogates are not valid in UTF-8 keys
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(code)
        prefix = prefix[:-1]
    return None


def _key_column(session: Session) -> Any:
    """``objects.key`` compared and sorted by code point (PostgreSQL needs the C collation;
    SQLite compares bytes already)."""
    if session.get_bind().dialect.name == "postgresql":
        return Object.key.collate("C")
    return Object.key


def list_page(
    session: Session,
    bucket_id: int,
    *,
    prefix: str = "",
    delimiter: str = "",
    after: str = "",
    max_keys: int = MAX_KEYS,
) -> Page:
    """The keys of the bucket that start with ``prefix``, after ``after`` (exclusive), with
    those containing ``delimiter`` after the prefix rolled up into common prefixes; at most
    ``max_keys`` entries (keys and prefixes together)."""
    page = Page()
    if max_keys <= 0:
        return page
    key = _key_column(session)
    upper = successor(prefix) if prefix else None
    cursor, inclusive = (after, False) if after and after >= prefix else (prefix, True)
    entries: list[tuple[str, Object | None]] = []
    while len(entries) <= max_keys:
        limit = max_keys + 1 - len(entries)
        query = select(Object).where(Object.bucket_id == bucket_id)
        query = query.where(key >= cursor if inclusive else key > cursor)
        if upper is not None:
            query = query.where(key < upper)
        rows = session.scalars(query.order_by(key).limit(limit)).all()
        jumped = False
        for obj in rows:
            rolled = _common_prefix(obj.key, prefix, delimiter)
            if rolled is not None:
                if not (after and rolled <= after):  # not returned by an earlier page
                    entries.append((rolled, None))
                nxt = successor(rolled)
                if nxt is None:
                    rows = []
                    break
                cursor, inclusive, jumped = nxt, True, True
                break
            entries.append((obj.key, obj))
            cursor, inclusive = obj.key, False
        if not jumped and len(rows) < limit:
            break
    page.truncated = len(entries) > max_keys
    entries = entries[:max_keys]
    for name, entry in entries:
        if entry is None:
            page.prefixes.append(name)
        else:
            page.objects.append(entry)
    if page.truncated:
        page.next_marker = entries[-1][0]
    return page


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return key[: at + len(delimiter)] if at >= 0 else None
