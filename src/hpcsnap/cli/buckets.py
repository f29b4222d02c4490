"""``hpcsnap bucket create|ls|put|get|rm``."""

from __future__ import annotations

from pathlib import Path

import click

from hpcsnap.cli import output
from hpcsnap.cli.common import connection, failed
from hpcsnap.sdk import Bucket, BucketFile


@click.group()
def bucket() -> None:
    """Buckets: create, list, upload, download, delete."""


@bucket.command("create")
@click.argument("name")
def bucket_create(name: str) -> None:
    """Create bucket NAME (fine if you already have it)."""
    connection().create_bucket(name)
    output.note(f"bucket {name} ready")


def _file_json(f: BucketFile) -> dict[str, object]:
    return f.raw or {"key": f.key, "size": f.size, "hash": f.hash}


@bucket.command("ls")
@click.argument("name", required=False)
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def bucket_ls(name: str | None, prefix: str, as_json: bool) -> None:
    """List your buckets, or the keys of bucket NAME."""
    conn = connection()
    if name is None:
        names = [b.name for b in conn.buckets()]
        if as_json:
            output.print_json([{"name": n} for n in names])
        else:
            for n in names:
                click.echo(n)
        return
    files = conn.retrieve_bucket(name).list_files(prefix)
    if as_json:
        output.print_json([_file_json(f) for f in files])
        return
    output.table(
        ["KEY", "SIZE", "MODIFIED"],
        [(f.key, output.size(f.size), output.when(f.mtime)) for f in files],
    )


@bucket.command("put")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--prefix", default="", help="Key prefix, e.g. case/ (a directory's files go under it)."
)
def bucket_put(name: str, paths: tuple[Path, ...], prefix: str) -> None:
    """Upload files and directories to bucket NAME (creating it if needed).

    A file becomes key PREFIX<its name>; a directory's files keep their paths under PREFIX.
    """
    target = connection().create_bucket(name)
    count = upload(target, paths, prefix=prefix)
    output.note(f"uploaded {count} file(s) to bucket {name}")


def upload(target: Bucket, paths: tuple[Path, ...] | list[Path], *, prefix: str = "") -> int:
    """Upload files and directories with one progress bar; return the number of files."""
    count = 0
    with output.progress(f"upload to {target.name}") as hook:
        for path in paths:
            if path.is_dir():
                count += len(target.add_directory(path, prefix, progress=hook))
            else:
                target.add_file(path, prefix + path.name, progress=hook)
                count += 1
    return count


@bucket.command("get")
@click.argument("name")
@click.argument("keys", nargs=-1)
@click.option("--prefix", default=None, help="Download every key starting with this.")
@click.option(
    "-o",
    "--output",
    "dest",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory (or, for one key, file) to write to.",
)
def bucket_get(name: str, keys: tuple[str, ...], prefix: str | None, dest: Path) -> None:
    """Download keys of bucket NAME (all of them if no KEYS and no --prefix)."""
    target = connection().retrieve_bucket(name)
    with output.progress(f"download {name}") as hook:
        if keys:
            if len(keys) > 1:
                dest.mkdir(parents=True, exist_ok=True)
            written = [target.get_file(k, dest, progress=hook) for k in keys]
        else:
            written = target.get_all_files(dest, prefix, progress=hook)
    output.note(f"downloaded {len(written)} file(s) to {dest}")


@bucket.command("rm")
@click.argument("name")
@click.argument("keys", nargs=-1)
@click.option("--force", is_flag=True, help="Delete the bucket even if it holds files.")
def bucket_rm(name: str, keys: tuple[str, ...], force: bool) -> None:
    """Delete KEYS from bucket NAME, or with no KEYS the bucket itself."""
    target = connection().retrieve_bucket(name)
    if keys:
        for key in keys:
            target.delete_file(key)
        output.note(f"deleted {len(keys)} key(s) from bucket {name}")
        return
    count = len(target.list_files())
    if count and not force:
        raise failed(f"bucket {name} holds {count} file(s); add --force to delete it with them")
    target.delete()
    output.note(f"deleted bucket {name}")


def register(group: click.Group) -> None:
    group.add_command(bucket)
