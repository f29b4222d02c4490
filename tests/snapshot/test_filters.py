"""Whitelist/blacklist semantics, validation, override merge, and bounded matching."""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcsnap.snapshot import FilterError, PathFilter, compile_pattern

OPENFOAM = [
    "log.simpleFoam",
    "log.blockMesh",
    "0.1/U",
    "0.1/p",
    "system/controlDict",
    "processor0/0.1/U",
    "processor12/log.decompose",
    "postProcessing/forces/0/forces.dat",
]


def accepted(f: PathFilter) -> list[str]:
    return [p for p in OPENFOAM if f.accepts(p)]


def test_no_filter_accepts_everything() -> None:
    assert accepted(PathFilter()) == OPENFOAM
    assert accepted(PathFilter("", "")) == OPENFOAM


def test_seed_blacklist_drops_processor_directories() -> None:
    assert accepted(PathFilter(blacklist=r"processor\d+")) == [
        "log.simpleFoam",
        "log.blockMesh",
        "0.1/U",
        "0.1/p",
        "system/controlDict",
        "postProcessing/forces/0/forces.dat",
    ]


def test_seed_whitelist_uses_search_semantics() -> None:
    # search, not match: a log file inside a directory is captured too
    assert accepted(PathFilter(whitelist=r"log\..*")) == [
        "log.simpleFoam",
        "log.blockMesh",
        "processor12/log.decompose",
    ]


def test_blacklist_wins_over_whitelist() -> None:
    assert accepted(PathFilter(r"log\..*", r"processor\d+")) == ["log.simpleFoam", "log.blockMesh"]


def test_anchors_apply_to_the_relative_path() -> None:
    assert accepted(PathFilter(whitelist=r"^0\.1/")) == ["0.1/U", "0.1/p"]
    assert accepted(PathFilter(whitelist=r"/U$")) == ["0.1/U", "processor0/0.1/U"]


def test_override_merge_field_by_field() -> None:
    task = PathFilter(r"log\..*", r"processor\d+")
    same = task.merged(None, None)
    assert (same.whitelist, same.blacklist) == (r"log\..*", r"processor\d+")
    white_only = task.merged(r"/U$", None)
    assert (white_only.whitelist, white_only.blacklist) == (r"/U$", r"processor\d+")
    assert accepted(white_only) == ["0.1/U"]
    assert accepted(task.merged(None, "")) == [
        "log.simpleFoam",
        "log.blockMesh",
        "processor12/log.decompose",
    ]
    assert accepted(PathFilter().merged(None, r"\.dat$")) == OPENFOAM[:-1]


def test_invalid_regex_message() -> None:
    with pytest.raises(FilterError) as info:
        compile_pattern("a(")
    assert str(info.value) == "invalid regular expression 'a(': missing ) at position 2"
    assert isinstance(info.value, ValueError)
    with pytest.raises(FilterError, match=r"invalid regular expression '\[z-a\]'"):
        PathFilter(blacklist="[z-a]")
    with pytest.raises(FilterError, match="invalid regular expression"):
        PathFilter(r"log\..*").merged("*oops", None)
    assert compile_pattern(None) is None
    assert compile_pattern("") is None


@pytest.mark.timeout(10)
def test_pathological_regex_raises_quickly() -> None:
    path = "a" * 40 + "b"
    f = PathFilter(blacklist=r"(a|aa)+$", timeout=0.05)
    start = time.monotonic()
    with pytest.raises(FilterError, match=r"^regular expression '\(a\|aa\)\+\$' is too slow"):
        f.accepts(path)
    assert time.monotonic() - start < 2


@pytest.mark.timeout(10)
@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|a)+$", r"(\w+\s?)+$", r"(.*a){25}"])
def test_classic_redos_patterns_never_hang(pattern: str) -> None:
    f = PathFilter(whitelist=pattern, timeout=0.1)
    start = time.monotonic()
    with contextlib.suppress(FilterError):
        f.accepts("a" * 5000 + "!")
    assert time.monotonic() - start < 2


#: Backtracks on each :data:`SLOW_PATHS` path for a few ms: far under the per-match timeout.
SLOW = r"(a|aa)+$"
SLOW_PATHS = [f"run{i}/" + "a" * 20 + "b" for i in range(300)]


@pytest.mark.timeout(20)
def test_budget_bounds_the_total_time_of_a_slow_but_timely_pattern() -> None:
    f = PathFilter(whitelist=SLOW, budget=0.1, label="snapshot")
    start = time.monotonic()
    with pytest.raises(FilterError) as info:
        for path in SLOW_PATHS:
            f.accepts(path)
    took = time.monotonic() - start
    assert re.fullmatch(
        r"the snapshot whitelist '\(a\|aa\)\+\$' took more than 0\.1 s to match [\d,]+ paths: "
        r"simplify it",
        str(info.value),
    ), str(info.value)
    assert info.value.kind == "whitelist"
    assert 1 < f.paths < len(SLOW_PATHS)  # ended early, not on the first path's timeout
    assert f.spent["whitelist"] > 0.1 and f.spent["blacklist"] == 0
    assert took < 5
    # without a budget the same pattern on the same paths passes: only the total was too much
    unbounded = PathFilter(whitelist=SLOW)
    assert not any(unbounded.accepts(p) for p in SLOW_PATHS[:5])


def test_budget_names_the_slow_pattern_and_survives_merge() -> None:
    f = PathFilter(r"run\d", r"x", budget=0.05, label="results").merged(None, SLOW)
    assert (f.budget, f.label) == (0.05, "results")
    with pytest.raises(
        FilterError, match=r"^the results blacklist '\(a\|aa\)\+\$' took more"
    ) as info:
        for path in SLOW_PATHS:
            f.accepts(path)
    assert info.value.kind == "blacklist"
    # a fresh filter starts with a full budget; a fast pattern never comes near it
    fast = PathFilter(r"run\d+/", r"processor\d+", budget=0.5)
    assert sum(fast.accepts(p) for p in SLOW_PATHS * 30) == len(SLOW_PATHS) * 30
    assert fast.paths == len(SLOW_PATHS) * 30 and fast.spent["whitelist"] < 0.5


def test_rejected_by_says_which_filter() -> None:
    f = PathFilter(r"log\.", r"processor\d+")
    assert [f.rejected_by(p) for p in ["log.a", "0.1/U", "processor1/log.b"]] == [
        None,
        "whitelist",
        "blacklist",
    ]
    with pytest.raises(FilterError) as info:
        PathFilter(blacklist=SLOW, timeout=0.01).accepts("a" * 40 + "b")
    assert info.value.kind == "blacklist" and "too slow" in str(info.value)


SAFE_PATTERNS = [None, "", r"log\..*", r"processor\d+", r"^0\.", r"U$", r"/", r"a.b", r"\d/\d"]


@given(
    white=st.sampled_from(SAFE_PATTERNS),
    black=st.sampled_from(SAFE_PATTERNS),
    path=st.text(alphabet="ab01./Ulogprocessor", min_size=1, max_size=30),
)
def test_accepts_matches_reference(white: str | None, black: str | None, path: str) -> None:
    expected = (not white or re.search(white, path) is not None) and (
        not black or re.search(black, path) is None
    )
    assert PathFilter(white, black).accepts(path) == expected
