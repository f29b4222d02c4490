"""Whitelist/blacklist path filters: user regular expressions, validated and time-bounded.

A path (relative to ``/job``, ``/``-separated) is captured when (no whitelist or the whitelist
*searches* it) and (no blacklist or the blacklist does not). Patterns use the ``regex`` module
(Python ``re`` syntax); every match runs under a timeout so a pathological pattern raises
:class:`FilterError` instead of hanging. An empty pattern means "no filter".

A timeout per match does not bound a whole use: a pattern just under it on each of 100,000
paths would run for hours. So a filter may also have a *budget*: the total seconds its matches
may take over its life (one capture, one form preview); past it, the next match raises
:class:`FilterError` naming the pattern that spent most and how many paths it matched.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import regex

DEFAULT_TIMEOUT = 0.25
"""Seconds one match may take before the pattern is declared too slow."""
CAPTURE_BUDGET = 20.0
"""Seconds all the matches of one capture (snapshot or results) may take together."""
PREVIEW_BUDGET = 2.0
"""Seconds all the matches of one filter preview (web form) may take together."""

Which = Literal["whitelist", "blacklist"]


class FilterError(ValueError):
    """An invalid or pathological regular expression (the message says which and why).
    ``kind`` is ``"whitelist"`` or ``"blacklist"`` when a match raised it, else ``None``."""

    def __init__(self, message: str, kind: Which | None = None) -> None:
        super().__init__(message)
        self.kind = kind


def compile_pattern(p: str | None) -> Any | None:
    """Compile ``p`` (``None`` or ``""``: no filter), or raise :class:`FilterError` with the
    regex error, e.g. ``invalid regular expression 'a(': missing ) at position 2``."""
    if not p:
        return None
    try:
        return regex.compile(p)
    except regex.error as exc:
        raise FilterError(f"invalid regular expression {p!r}: {exc}") from exc


class PathFilter:
    """The snapshot (or results) filters of a task; see the module docstring.

    ``budget`` (seconds, ``None``: unbounded) bounds the total time of all matches through
    this object; ``label`` names the filters in that error (``"snapshot"``, ``"results"``).
    Make one per use: the time spent and the paths matched (:attr:`spent`, :attr:`paths`)
    accumulate. Not thread-safe."""

    __slots__ = (
        "_black",
        "_white",
        "blacklist",
        "budget",
        "label",
        "paths",
        "spent",
        "timeout",
        "whitelist",
    )

    def __init__(
        self,
        whitelist: str | None = None,
        blacklist: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        budget: float | None = None,
        label: str = "path",
    ) -> None:
        self.whitelist = whitelist or None
        self.blacklist = blacklist or None
        self.timeout = timeout
        self.budget = budget
        self.label = label
        self._white = compile_pattern(whitelist)
        self._black = compile_pattern(blacklist)
        self.paths = 0
        self.spent: dict[Which, float] = {"whitelist": 0.0, "blacklist": 0.0}

    def __repr__(self) -> str:
        return f"PathFilter(whitelist={self.whitelist!r}, blacklist={self.blacklist!r})"

    def _search(self, pattern: Any, path: str, kind: Which) -> bool:
        start = time.perf_counter() if self.budget is not None else 0.0
        try:
            found = pattern.search(path, timeout=self.timeout) is not None
        except TimeoutError as exc:
            shown = path if len(path) <= 200 else path[:200] + "..."
            raise FilterError(
                f"regular expression {pattern.pattern!r} is too slow: matching {shown!r} took over "
                f"{self.timeout:g} s (pathological backtracking, e.g. nested repeats); simplify it",
                kind,
            ) from exc
        if self.budget is not None:
            self.spent[kind] += time.perf_counter() - start
            if self.spent["whitelist"] + self.spent["blacklist"] > self.budget:
                self._over_budget()
        return found

    def _over_budget(self) -> None:
        kind = max(self.spent, key=lambda k: self.spent[k])
        pattern = self.whitelist if kind == "whitelist" else self.blacklist
        raise FilterError(
            f"the {self.label} {kind} {pattern!r} took more than {self.budget:g} s to match "
            f"{self.paths:,} paths: simplify it",
            kind,
        )

    def accepts(self, path: str) -> bool:
        """Whether ``path`` is captured; raises :class:`FilterError` when a pattern is too slow
        on it, or when matching it spends the last of the budget."""
        return self.rejected_by(path) is None

    def rejected_by(self, path: str) -> Which | None:
        """``None`` when ``path`` is captured, else the filter leaving it out (``"whitelist"``
        or ``"blacklist"``); raises like :meth:`accepts`."""
        self.paths += 1
        if self._white is not None and not self._search(self._white, path, "whitelist"):
            return "whitelist"
        if self._black is not None and self._search(self._black, path, "blacklist"):
            return "blacklist"
        return None

    def merged(self, override_white: str | None, override_black: str | None) -> PathFilter:
        """This filter with a per-snapshot override: a pattern given (not ``None``) replaces
        this one's of the same kind (``""`` removes it), ``None`` keeps this one's."""
        return PathFilter(
            self.whitelist if override_white is None else override_white,
            self.blacklist if override_black is None else override_black,
            timeout=self.timeout,
            budget=self.budget,
            label=self.label,
        )
