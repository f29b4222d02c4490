"""S3's XML: building response documents and reading the few request bodies S3 takes.

Request bodies are parsed only after a size check, with document type declarations refused
(no entities, so neither external entities nor entity expansion), namespaces ignored.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from hpcsnap.server.s3.errors import malformed_xml

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 2 << 20
"""Largest XML request body accepted (a CompleteMultipartUpload of 10,000 parts fits)."""

Value = str | int | bool | None


def iso(when_ns: int) -> str:
    """``2026-11-25T14:05:09.123Z``, the timestamp format of S3's XML."""
    when = dt.datetime.fromtimestamp(when_ns / 1e9, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def http_date(when_ns: int) -> str:
    """``Wed, 25 Nov 2026 14:05:09 GMT``, for ``Last-Modified`` headers."""
    when = dt.datetime.fromtimestamp(when_ns // 1_000_000_000, dt.UTC)
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def root(name: str) -> ET.Element:
    return ET.Element(name, xmlns=NS)


def add(parent: ET.Element, name: str, value: Value = None) -> ET.Element:
    """Append ``<name>value</name>`` to ``parent`` and return it."""
    el = ET.SubElement(parent, name)
    if value is not None:
        el.text = _text(value)
    return el


def add_all(parent: ET.Element, fields: Iterable[tuple[str, Value]]) -> ET.Element:
    for name, value in fields:
        add(parent, name, value)
    return parent


def dump(el: ET.Element) -> bytes:
    data: bytes = ET.tostring(el, encoding="utf-8", xml_declaration=True)
    return data


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes, expected_root: str) -> ET.Element:
    """The root element of an XML request body, which must be ``expected_root``."""
    if len(body) > MAX_BODY:
        raise malformed_xml(f"the body is larger than {MAX_BODY} bytes")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise malformed_xml("document type declarations are not accepted")
    try:
        el = ET.fromstring(body)  # noqa: S314 (no DTD: checked above)
    except ET.ParseError as exc:
        raise malformed_xml(str(exc)) from None
    if _local(el.tag) != expected_root:
        raise malformed_xml(f"the root element is <{_local(el.tag)}>, not <{expected_root}>")
    return el


def children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def child_text(el: ET.Element, name: str) -> str | None:
    for c in el:
        if _local(c.tag) == name:
            return c.text or ""
    return None
