"""The web interface's pure parts: chart, form checks, tree, sessions (archives: tests/server)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hpcsnap.server.config import Settings
from hpcsnap.server.db import Snapshot
from hpcsnap.server.errors import BadRequest
from hpcsnap.web.browser import disposition
from hpcsnap.web.chart import chart_svg, nice_ceiling, size_axis
from hpcsnap.web.checks import check_form
from hpcsnap.web.deps import safe_next
from hpcsnap.web.pages import parse_interval, split_interval
from hpcsnap.web.session import SessionCodec, WebSession, load_secret
from hpcsnap.web.submit import at_field, environment, field_of
from hpcsnap.web.tree import build_tree, find

SVG = "{http://www.w3.org/2000/svg}"


def snap(seconds: int, size: int, changed: int, **kw: object) -> Snapshot:
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    return Snapshot(
        id=f"s{seconds}",
        task_uuid="t",
        kind=kw.get("kind", "periodic"),
        label=kw.get("label"),
        status=kw.get("status", "Success"),
        trigger_date=t0 + dt.timedelta(seconds=seconds),
        bytes_total=size,
        files_total=changed + 1,
        files_read=changed,
    )


def test_chart_draws_successful_snapshots_only() -> None:
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    svg = chart_svg(
        [
            snap(5, 1000, 2),
            snap(10, 5_000_000, 7, label="<b>x</b>", kind="manual"),
            snap(12, 0, 0, status="Failure"),
            snap(20, 3_000_000, 1),
        ],
        start,
    )
    root = ET.fromstring(svg)  # well-formed, label escaped
    circles = root.findall(f".//{SVG}circle")
    assert len(circles) == 3
    assert "“<b>x</b>”" in "".join(c.findtext(f"{SVG}title", "") for c in circles)
    ys = [float(c.get("cy", 0)) for c in circles]
    assert ys[1] < ys[2] < ys[0]  # bigger is higher
    xs = [float(c.get("cx", 0)) for c in circles]
    assert xs == sorted(xs)
    assert "3 successful snapshots" in (root.findtext(f"{SVG}desc") or "")
    empty = ET.fromstring(chart_svg([], None))
    assert "No successful snapshot yet" in "".join(empty.itertext())


def test_axis_helpers() -> None:
    assert [nice_ceiling(v) for v in (0.3, 1, 3, 7, 11, 2400)] == [0.5, 1, 5, 10, 20, 2500]
    top, ticks = size_axis(3 * 1024**2)
    assert top == 5 * 1024**2
    assert [t.text for t in ticks] == ["0", "1.25 MiB", "2.5 MiB", "3.75 MiB", "5 MiB"]


def test_checks_same_rules_as_the_server() -> None:
    settings = Settings(min_snapshot_interval=10)
    result = check_form(
        settings,
        {"snapshot_whitelist": "a(", "results_blacklist": r"\.tmp$"},
        interval=5,
        paths=["x.tmp", "y"],
    )
    assert result.errors["snapshot_whitelist"].startswith("invalid regular expression 'a('")
    assert "below this server's minimum interval of 10 s" in result.errors["snapshot_interval"]
    assert [p["results"] for p in result.preview] == ["blacklist", "kept"]
    assert [p["snapshot"] for p in result.preview] == ["error", "error"]

    ok = check_form(
        Settings(),
        {"snapshot_whitelist": r"^(log|0\.\d)", "snapshot_blacklist": "processor"},
        interval=30,
        expected=2 * 1024**3,
        paths=["log.run", "0.1/T", "processor0/0.1/T", "other"],
    )
    assert ok.errors == {}
    assert [p["snapshot"] for p in ok.preview] == ["kept", "kept", "whitelist", "whitelist"]
    texts = " ".join(w["message"] for w in ok.warnings)
    assert "every 30 s is frequent" in texts
    assert "over the recommended 1 GiB" in texts
    assert "storage I/O" in texts
    assert check_form(Settings(), {}, interval=600, expected=10 * 1024**2).warnings == []
    hard = check_form(Settings(snapshot_hard_limit=1024**3), {}, expected=2 * 1024**3)
    assert "hard limit" in hard.warnings[0]["message"]


def test_a_pathological_pattern_is_reported_not_hanging() -> None:
    result = check_form(Settings(), {"snapshot_blacklist": r"(a|aa)+$"}, paths=["a" * 60 + "!"])
    assert "too slow" in result.errors["snapshot_blacklist"]


def test_the_preview_has_a_total_budget() -> None:
    """A pattern quick enough on each path but too slow over all of them is an error of its
    field, and the preview stops there."""
    paths = [f"run{i}/" + "a" * 20 + "b" for i in range(300)]
    result = check_form(Settings(), {"results_whitelist": r"(a|aa)+$"}, paths=paths, budget=0.1)
    message = result.errors["results_whitelist"]
    assert message.startswith("the results whitelist '(a|aa)+$' took more than 0.1 s"), message
    assert {row["results"] for row in result.preview} == {"error"}
    assert {row["snapshot"] for row in result.preview} == {"kept"}


def test_tree() -> None:
    root = build_tree([("a/b/c.txt", 10, 1), ("a/d.txt", 5, 2), ("e.txt", 1, 3)])
    assert (root.files, root.size) == (3, 16)
    a = find(root, "a/")
    assert a is not None and (a.files, a.size) == (2, 15)
    assert [n.name for n in a.sorted()] == ["b", "d.txt"]
    assert find(root, "a/b/") is not None and find(root, "zz/") is None


def test_session_codec(tmp_path: Path) -> None:
    secret = load_secret(tmp_path)
    assert load_secret(tmp_path) == secret  # created once
    assert (tmp_path / "web-secret").stat().st_mode & 0o777 == 0o600
    codec = SessionCodec(secret)
    session = WebSession.new("abc")
    value = codec.dumps(session)
    back = codec.loads(value)
    assert back is not None and back.token_hash == "abc" and back.csrf == session.csrf
    assert back.csrf_ok(session.csrf) and not back.csrf_ok("x") and not back.csrf_ok(None)
    tampered = ("B" if value[0] == "A" else "A") + value[1:]  # a changed payload
    assert codec.loads(tampered) is None
    assert SessionCodec("another secret" * 3).loads(value) is None
    assert codec.loads("") is None and codec.loads("garbage") is None


def test_small_helpers() -> None:
    assert parse_interval("2", "min") == 120
    assert parse_interval("", "s") == 0
    for bad in (("1.5", "s"), ("-1", "s"), ("x", "s"), ("1", "days")):
        with pytest.raises(BadRequest):
            parse_interval(*bad)
    assert split_interval(7200) == (2, "h") and split_interval(90) == (90, "s")
    assert split_interval(0) == (0, "s")
    assert environment("A=1\n# c\n\nB = x=y") == [
        {"key": "A", "value": "1"},
        {"key": "B", "value": " x=y"},
    ]
    with pytest.raises(BadRequest):
        environment("1A=x")
    assert field_of("snapshotWhitelist: invalid regular expression") == "snapshot_whitelist"
    assert field_of("snapshotInterval 1 s is below this server's minimum") == "snapshot_interval"
    assert field_of("bucket 'x' not found") == "buckets"
    assert field_of("something else") is None
    assert at_field("resultsBlacklist: bad") == "bad"
    assert safe_next("/tasks/1?x=2") == "/tasks/1?x=2"
    for bad in ("//evil", "https://evil", "/\\evil", "", None, "/a\nb"):
        assert safe_next(bad) == "/"
    header = disposition("attachment", 'ré"port;.txt')
    assert header.startswith('attachment; filename="r__port_.txt"; ')
    assert header.endswith("filename*=UTF-8''r%C3%A9%22port%3B.txt")


def test_chart_samples_long_histories() -> None:
    many = [snap(i, i * 100, 1) for i in range(1, 1001)]
    root = ET.fromstring(chart_svg(many, None))
    circles = root.findall(f".//{SVG}circle")
    assert 250 <= len(circles) <= 300
    last = circles[-1].findtext(f"{SVG}title", "")
    assert "97.7 KiB" in last  # the newest one is always drawn (100,000 bytes)
