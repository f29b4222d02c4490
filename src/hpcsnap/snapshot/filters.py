"""Whitelist/blacklist path filters: user regular expressions, validated and time-bounded.

A path (relative to ``/job``, ``/``-separated) is captured when (no whitelist or the whitelist
*searches* it) and (no blacklist or the blacklist does not). Patterns use the ``regex`` module
(Python ``re`` syntax); every match runs under a timeout so a pathological pattern raises
:class:`FilterError` instead of hanging. An empty pattern means "no filter".
"""

from __future__ import annotations

from typing import Any

import regex

DEFAULT_TIMEOUT = 0.25
"""Seconds one match may take before the pattern is declared too slow."""


class FilterError(ValueError):
    """An invalid or pathological regular expression (the message says which and why)."""


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
    """The snapshot (or results) filters of a task; see the module docstring."""

    __slots__ = ("_black", "_white", "blacklist", "timeout", "whitelist")

    def __init__(
        self,
        whitelist: str | None = None,
        blacklist: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.whitelist = whitelist or None
        self.blacklist = blacklist or None
        self.timeout = timeout
        self._white = compile_pattern(whitelist)
        self._black = compile_pattern(blacklist)

    def __repr__(self) -> str:
        return f"PathFilter(whitelist={self.whitelist!r}, blacklist={self.blacklist!r})"

    def _search(self, pattern: Any, path: str) -> bool:
        try:
            return pattern.search(path, timeout=self.timeout) is not None
        except TimeoutError as exc:
            shown = path if len(path) <= 200 else path[:200] + "..."
            raise FilterError(
                f"regular expression {pattern.pattern!r} is too slow: matching {shown!r} took over "
                f"{self.timeout:g} s (pathological backtracking, e.g. nested repeats); simplify it"
            ) from exc

    def accepts(self, path: str) -> bool:
        """Whether ``path`` is captured."""
        if self._white is not None and not self._search(self._white, path):
            return False
        return self._black is None or not self._search(self._black, path)

    def merged(self, override_white: str | None, override_black: str | None) -> PathFilter:
        """This filter with a per-snapshot override: a pattern given (not ``None``) replaces
        this one's of the same kind (``""`` removes it), ``None`` keeps this one's."""
        return PathFilter(
            self.whitelist if override_white is None else override_white,
            self.blacklist if override_black is None else override_black,
            timeout=self.timeout,
        )
