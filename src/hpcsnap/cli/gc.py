"""``hpcsnap admin gc``: the garbage-collection sweep (administrators)."""

from __future__ import annotations

import click

from hpcsnap.cli import output
from hpcsnap.cli.common import connection


@click.group("admin")
def admin() -> None:
    """Administration of the server (administrator token needed)."""


@admin.command("gc")
@click.option(
    "--grace",
    "grace_minutes",
    type=click.FloatRange(min=0),
    default=60,
    show_default=True,
    metavar="MINUTES",
    help="Keep blobs written less than this long ago (an agent may not have committed them).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be freed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def gc(grace_minutes: float, dry_run: bool, as_json: bool) -> None:
    """Free stored content that nothing references any more.

    Frees every blob that no key, no live or pending snapshot references (uploads of failed
    captures, old content of overwritten or deleted keys, content of deleted buckets), except
    those written less than --grace minutes ago.
    """
    report = connection().collect_garbage(grace_minutes=grace_minutes, dry_run=dry_run)
    if as_json:
        output.print_json(report)
        return
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{report['scannedBlobs']} blob(s) ({output.size(report['scannedBytes'])}) scanned in "
        f"{report['users']} user namespace(s), {report['youngBlobs']} younger than "
        f"{grace_minutes:g} min kept; {verb} {report['freedBlobs']} blob(s), "
        f"{output.size(report['freedBytes'])}"
    )


def register(group: click.Group) -> None:
    group.add_command(admin)
