"""The `opsflow` command."""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated

import typer

from opsflow import __version__, schema
from opsflow.clock import SystemClock
from opsflow.config import ConfigError, load_settings
from opsflow.context import AppContext
from opsflow.errors import AppError

app = typer.Typer(help="OpsFlow: tasks, incidents and their SLAs.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
    no_engine: Annotated[
        bool, typer.Option("--no-engine", help="Serve the API only; engines run elsewhere.")
    ] = False,
) -> None:
    """Serve the API (migrations are applied and the first admin is created on start)."""
    import os

    import uvicorn

    if no_engine:
        os.environ["OPSFLOW_ENGINE_ENABLED"] = "false"  # read by every worker's Settings

    settings = load_settings()
    try:
        settings.check_safe()
    except ConfigError as exc:
        typer.secho(f"Refusing to start: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    if settings.auto_migrate:
        schema.upgrade(settings.database_url)
    typer.echo(f"OpsFlow {__version__} on http://{host}:{port} (docs: /api/v1/docs)")
    uvicorn.run(
        "opsflow.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations."""
    settings = load_settings()
    schema.upgrade(settings.database_url, revision)
    typer.echo(f"Database at {revision}")


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(prompt=True)],
    email: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
) -> None:
    """Create an admin account."""
    from opsflow.users import service

    settings = load_settings()
    schema.upgrade(settings.database_url)
    if password is None:
        password = getpass.getpass("Password: ")

    async def run() -> None:
        ctx = AppContext.build(settings, SystemClock())
        try:
            user = await service.create_admin(
                ctx, username=username, email=email, password=password
            )
            typer.echo(f"Created admin {user.username} ({user.id})")
        finally:
            await ctx.close()

    try:
        asyncio.run(run())
    except AppError as exc:
        details = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in exc.details or [])
        typer.secho(
            f"{exc.message}{' - ' + details if details else ''}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1) from exc
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
