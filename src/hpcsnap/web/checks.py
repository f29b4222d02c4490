"""Live checks of the submission form: regexes (the server's own rules), best-practice warnings
on interval and size, and which files each filter keeps.

Pure functions of the form's values and the server settings; ``/ui/api/check`` serves them to
the form's script while the user types, and the submission itself is checked again by
``build_task``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hpcsnap.server.config import Settings
from hpcsnap.snapshot.filters import PREVIEW_BUDGET, FilterError, PathFilter, compile_pattern
from hpcsnap.web.render import human_duration, human_size

#: Form field name → the task field it fills (the API's names, used in its error messages).
REGEX_FIELDS = {
    "snapshot_whitelist": "snapshotWhitelist",
    "snapshot_blacklist": "snapshotBlacklist",
    "results_whitelist": "resultsWhitelist",
    "results_blacklist": "resultsBlacklist",
}
#: Below this interval (s) the form says snapshots are frequent.
FREQUENT = 60
#: Above this rate of snapshot data (bytes/s, if everything changed) the form warns about I/O.
HEAVY_RATE = 20 * 1024**2
MAX_PATHS = 2000

Verdict = Literal["kept", "whitelist", "blacklist", "error"]


@dataclass
class CheckResult:
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)
    preview: list[dict[str, str]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {"errors": self.errors, "warnings": self.warnings, "preview": self.preview}


def regex_error(pattern: str | None) -> str | None:
    """The server's message for an invalid pattern, or None (empty means no filter)."""
    try:
        compile_pattern(pattern)
    except FilterError as exc:
        return str(exc)
    return None


def interval_error(settings: Settings, seconds: int | None) -> str | None:
    if seconds is None or seconds == 0:
        return None
    if seconds < 0:
        return "the interval must be a positive number of seconds"
    if seconds < settings.min_snapshot_interval:
        return (
            f"{seconds} s is below this server's minimum interval of "
            f"{settings.min_snapshot_interval} s"
        )
    return None


def advice(settings: Settings, seconds: int | None, expected: int | None) -> list[dict[str, str]]:
    """Best-practice warnings for periodic snapshots of ``expected`` bytes every ``seconds``."""
    out: list[dict[str, str]] = []
    soft, hard = settings.snapshot_soft_limit, settings.snapshot_hard_limit
    if seconds and 0 < seconds < FREQUENT:
        out.append(
            {
                "field": "snapshot_interval",
                "message": (
                    f"A snapshot every {human_duration(seconds)} is frequent: each one walks the "
                    "whole of /job and stores what changed. For a job of hours, every 5 to 30 "
                    "minutes is usually enough; take labelled snapshots at milestones instead."
                ),
            }
        )
    if expected and hard and expected >= hard:
        out.append(
            {
                "field": "expected_size",
                "message": (
                    f"About {human_size(expected)} per snapshot is over this server's hard limit "
                    f"({human_size(hard)}): such snapshots fail. Narrow them with the whitelist "
                    "or blacklist."
                ),
            }
        )
    elif expected and expected >= soft:
        out.append(
            {
                "field": "expected_size",
                "message": (
                    f"About {human_size(expected)} per snapshot is over the recommended "
                    f"{human_size(soft)}: each one will carry a warning. Keep snapshots to what "
                    "you need to watch or restart (e.g. blacklist processor\\d+ directories)."
                ),
            }
        )
    if expected and seconds and expected / seconds >= HEAVY_RATE:
        out.append(
            {
                "field": "snapshot_interval",
                "message": (
                    f"{human_size(expected)} every {human_duration(seconds)} is up to "
                    f"{human_size(expected / seconds)}/s of storage I/O if most of it changes "
                    "between snapshots: consider a longer interval."
                ),
            }
        )
    return out


def _verdicts(
    paths: list[str], white: str | None, black: str | None, label: str, budget: float
) -> tuple[list[Verdict], tuple[str, str] | None]:
    """Per path: kept, or which filter leaves it out. A pattern too slow on some path, or both
    together slower than ``budget`` seconds over the paths, give ``("whitelist" | "blacklist",
    message)`` instead."""
    try:
        path_filter = PathFilter(white, black, budget=budget, label=label)
    except FilterError:
        return ["error"] * len(paths), None
    out: list[Verdict] = []
    for path in paths:
        try:
            rejected = path_filter.rejected_by(path)
        except FilterError as exc:
            return ["error"] * len(paths), (exc.kind or "whitelist", str(exc))
        out.append(rejected or "kept")
    return out, None


def check_form(
    settings: Settings,
    regexes: dict[str, str | None],
    *,
    interval: int | None = None,
    expected: int | None = None,
    paths: list[str] | None = None,
    budget: float = PREVIEW_BUDGET,
) -> CheckResult:
    """The form's errors, warnings and filter preview; ``budget`` bounds the seconds the
    snapshot filters, and again the results filters, may take over ``paths``."""
    result = CheckResult()
    for name in REGEX_FIELDS:
        if (message := regex_error(regexes.get(name))) is not None:
            result.errors[name] = message
    if (message := interval_error(settings, interval)) is not None:
        result.errors["snapshot_interval"] = message
    result.warnings = advice(settings, interval, expected)
    paths = [p for p in (paths or []) if p][:MAX_PATHS]
    snap, snap_err = _verdicts(
        paths,
        regexes.get("snapshot_whitelist"),
        regexes.get("snapshot_blacklist"),
        "snapshot",
        budget,
    )
    res, res_err = _verdicts(
        paths,
        regexes.get("results_whitelist"),
        regexes.get("results_blacklist"),
        "results",
        budget,
    )
    for kind, err in (("snapshot", snap_err), ("results", res_err)):
        if err is not None:
            result.errors.setdefault(f"{kind}_{err[0]}", err[1])
    result.preview = [
        {"path": p, "snapshot": s, "results": r} for p, s, r in zip(paths, snap, res, strict=True)
    ]
    return result
