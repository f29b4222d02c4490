"""Entry point of the ``hpcsnap`` command.

``serve``, ``user`` and ``job`` work on the server's side (they import the server and agent
lazily); every other command is a thin layer over the SDK (:mod:`hpcsnap.sdk`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hpcsnap import __version__
from hpcsnap.cli import admin, buckets, contents, gc, shell, snapshots, tasks, upkeep
from hpcsnap.cli.common import CommandError, Options
from hpcsnap.sdk import HpcsnapError


class Group(click.Group):
    """Turns SDK errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HpcsnapError as exc:
            raise CommandError(str(exc)) from exc


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpcsnap")
@click.option(
    "--url",
    metavar="URL",
    default=None,
    help="Server URL, e.g. http://127.0.0.1:8642 [env HPCSNAP_URL].",
)
@click.option("--token", metavar="TOKEN", default=None, help="API token [env HPCSNAP_TOKEN].")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file ([cluster] url, [client] token) [env HPCSNAP_CONFIG; "
    "~/.config/hpcsnap/config.ini].",
)
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, config: Path | None) -> None:
    """hpcsnap: long HPC simulations as tasks, with snapshots of /job.

    Client commands read the server URL and token from --url/--token, HPCSNAP_URL and
    HPCSNAP_TOKEN, or a config file. Listings take --json for scripts; errors are one line
    on stderr with exit code 1.
    """
    ctx.obj = Options(url=url, token=token, config=config)


admin.register(cli)
buckets.register(cli)
tasks.register(cli)
snapshots.register(cli)
upkeep.register(cli)
contents.register(cli)
shell.register(cli)
gc.register(cli)


def main() -> None:
    cli(prog_name="hpcsnap")


if __name__ == "__main__":
    main()
