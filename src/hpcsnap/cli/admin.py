"""Server-side commands: ``serve``, ``user create``/``revoke``; in a task, ``job snapshot``."""

from __future__ import annotations

from pathlib import Path

import click

from hpcsnap import __version__


@click.command()
@click.option("--host", default=None, help="Address to listen on [env HPCSNAP_HOST; 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [env HPCSNAP_PORT; 8642].")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the database, blobs and work dirs live [env HPCSNAP_DATA_DIR; ./hpcsnap-data].",
)
@click.option("--slots", type=int, default=None, help="Tasks run at once by the local executor.")
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm"]),
    default=None,
    help="Where tasks run [env HPCSNAP_EXECUTOR; local].",
)
@click.option(
    "--database-url",
    default=None,
    help="Metadata DB, e.g. postgresql://user@host/db [env HPCSNAP_DATABASE_URL; SQLite].",
)
@click.option(
    "--storage",
    default=None,
    help="Blob store: local or s3://bucket[/prefix] [env HPCSNAP_STORAGE; local].",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    slots: int | None,
    executor: str | None,
    database_url: str | None,
    storage: str | None,
) -> None:
    """Serve the platform (API, web UI, scheduler, executor)."""
    import uvicorn

    from hpcsnap.server.app import create_app
    from hpcsnap.server.bootstrap import ensure_admin
    from hpcsnap.server.config import Settings
    from hpcsnap.server.context import build_context

    settings = Settings.from_env(
        host=host,
        port=port,
        data_dir=data_dir,
        slots=slots,
        executor=executor,
        database_url=database_url,
        storage=storage,
    )
    ctx = build_context(settings)
    token = ensure_admin(ctx.db, settings.data_dir)
    click.echo(f"hpcsnap {__version__} serving on {settings.base_url}", err=True)
    click.echo(f"  data dir: {settings.data_dir}   job mode: {ctx.job_mode}", err=True)
    click.echo(
        f"  executor: {ctx.executor.name}   storage: {settings.storage}   "
        f"database: {'SQLite' if settings.db_url.startswith('sqlite') else 'PostgreSQL'}",
        err=True,
    )
    click.echo(f"  API docs: {settings.base_url}/docs", err=True)
    if token:
        click.echo(
            "  first start: created user 'admin'; its API token (shown once, also in "
            f"{settings.data_dir / 'admin-token'}):",
            err=True,
        )
        click.echo(f"  HPCSNAP_TOKEN={token}", err=True)
    app = create_app(settings, ctx=ctx)
    # Agents hold long-polls open: don't let them delay a shutdown (they retry).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )


@click.group()
def user() -> None:
    """Manage users (works directly on the server's database)."""


@user.command("create")
@click.argument("name")
@click.option("--email", default=None, help="Email (also the S3 access key id).")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def user_create(name: str, email: str | None, admin: bool, data_dir: Path | None) -> None:
    """Create user NAME and print its API token (one line, nothing else)."""
    from hpcsnap.server.auth import create_user
    from hpcsnap.server.config import Settings
    from hpcsnap.server.db import Database
    from hpcsnap.server.errors import ApiError
    from hpcsnap.server.s3.secrets import sealer_for

    settings = Settings.from_env(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    db.upgrade()
    try:
        with db.session() as s:
            # sealed at once, so that the token can sign S3 requests before any REST call
            sealer = sealer_for(settings.data_dir)
            _, token = create_user(s, name, email=email, is_admin=admin, sealer=sealer)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(token)


@user.command("revoke")
@click.argument("name")
@click.option("--token", "token", default=None, help="Revoke only this token (else all of NAME's).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def user_revoke(name: str, token: str | None, data_dir: Path | None) -> None:
    """Revoke user NAME's API tokens (or one, with --token): refused at once on the REST API,
    the S3 endpoint and in the web sessions opened with them. Prints how many were revoked."""
    from hpcsnap.server.auth import revoke_user_tokens
    from hpcsnap.server.config import Settings
    from hpcsnap.server.db import Database
    from hpcsnap.server.errors import ApiError

    settings = Settings.from_env(data_dir=data_dir)
    db = Database(settings.db_url)
    db.upgrade()
    try:
        with db.session() as s:
            count = revoke_user_tokens(s, name, token=token)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(count)


@click.group()
def job() -> None:
    """Commands for use inside a running task."""


@job.command("snapshot")
@click.option("--label", default=None, help="Label of the snapshot (e.g. mesh-done).")
@click.option("--no-wait", is_flag=True, help="Return at once instead of waiting for it.")
def job_snapshot(label: str | None, no_wait: bool) -> None:
    """Snapshot this task's /job now (from inside the task); exit 1 if it fails."""
    from hpcsnap.agent import jobclient

    args = ["job", "snapshot", *(["--label", label] if label else []), *(["--no-wait"] * no_wait)]
    raise SystemExit(jobclient.main(args))


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(user)
    group.add_command(job)
