"""The `opsflow` command."""

from __future__ import annotations

import asyncio
import getpass
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsflow import __version__, schema
from opsflow.clock import SystemClock
from opsflow.composition import build_context, engine_registry
from opsflow.config import ConfigError, Settings, load_settings
from opsflow.errors import AppError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from opsflow.context import AppContext

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
    shared_metrics = None
    if workers > 1:  # /metrics of any worker sums the instruments of all of them
        from opsflow.observability import metrics

        shared_metrics = metrics.use_multiprocess_directory(
            os.environ.get(metrics.MULTIPROCESS_ENV)
        )
    try:
        _run_uvicorn(settings, host, port, workers, reload)
    finally:
        if shared_metrics is not None and shared_metrics[1]:
            metrics.remove_multiprocess_directory(shared_metrics[0])


def _run_uvicorn(settings: Settings, host: str, port: int, workers: int, reload: bool) -> None:
    import uvicorn

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
        # Protocol-level pings (a missed pong closes the socket); no permessage-deflate,
        # whose per-connection buffers dominate the memory of many idle sockets.
        ws_ping_interval=settings.ws_ping_interval_seconds,
        ws_ping_timeout=settings.ws_ping_interval_seconds,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
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
        ctx = build_context(settings, SystemClock())
        try:
            user = await service.create_admin(
                ctx, username=username, email=email, password=password
            )
            typer.echo(f"Created admin {user.username} ({user.id})")
        finally:
            await ctx.close()

    _run_reporting_errors(run())


@app.command("reset-password")
def reset_password(
    login: Annotated[str, typer.Argument(help="Username or e-mail of the account.")],
    password: Annotated[
        str | None, typer.Option(help="The new password; prompted for (twice) when omitted.")
    ] = None,
) -> None:
    """Set an account's password (e.g. a lost admin password); ends its sessions, audited."""
    from opsflow.users import service

    settings = load_settings()
    schema.upgrade(settings.database_url)
    if password is None:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            typer.secho("The two passwords differ; nothing changed.", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)

    async def run() -> None:
        ctx = build_context(settings, SystemClock())
        try:
            user = await service.reset_password(ctx, login=login, password=password)
            typer.echo(f"Password of {user.username} reset; their sessions were ended.")
            if not user.is_active:
                typer.echo(f"Note: {user.username} is deactivated and still cannot sign in.")
        finally:
            await ctx.close()

    _run_reporting_errors(run())


@app.command()
def demo(
    tasks: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Tasks and incidents to create.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Same seed, same month of history.")] = 1,
    password: Annotated[
        str | None, typer.Option(help="Password of every demo account; generated when omitted.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Delete every row of a non-empty database first.")
    ] = False,
) -> None:
    """Fill an empty database with a month of demo tasks, incidents and their SLA history."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from opsflow.demo.loader import load_demo, new_password

    settings = load_settings()
    schema.upgrade(settings.database_url)
    chosen = password or new_password()

    async def run() -> None:
        ctx = build_context(settings, SystemClock())
        columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        try:
            with Progress("{task.description}", *columns) as bar:
                job = bar.add_task("tasks", total=tasks)
                summary = await load_demo(
                    ctx,
                    tasks=tasks,
                    seed=seed,
                    password=chosen,
                    replace=force,
                    progress=lambda done, _total: bar.update(job, completed=done),
                )
        finally:
            await ctx.close()
        rows = ", ".join(f"{count} {name}" for name, count in summary.rows.items())
        typer.echo(
            f"Demo month {summary.start:%Y-%m-%d} .. {summary.end:%Y-%m-%d %H:%M} UTC: {rows} "
            f"in {summary.seconds:.1f} s ({summary.tasks / summary.seconds:.0f} tasks/s)."
        )
        for role, names in summary.usernames.items():
            typer.echo(f"  {role:<10} {', '.join(names)}")
        typer.echo(f"Every demo account's password: {summary.password}")

    _run_reporting_errors(run())


@asynccontextmanager
async def _unit_of_work(settings: Settings) -> AsyncIterator[tuple[AppContext, AsyncSession]]:
    """A command's one unit of work: the assembled context and a session, committed when
    the block succeeds, and the context closed either way."""
    from opsflow.db import unit_of_work

    ctx = build_context(settings, SystemClock())
    try:
        async with unit_of_work(ctx.sessions) as session:
            yield ctx, session
    finally:
        await ctx.close()


def _run_reporting_errors(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a command's coroutine; an AppError or ValueError is printed and exits 1."""
    try:
        asyncio.run(coroutine)
    except AppError as exc:
        details = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in exc.details or [])
        typer.secho(
            f"{exc.message}{' - ' + details if details else ''}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1) from exc
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


sla_app = typer.Typer(help="SLA policies and calendars as an sla_config.yaml file.")
app.add_typer(sla_app, name="sla")


class ImportMode(StrEnum):
    MERGE = "merge"
    REPLACE = "replace"


@sla_app.command("import")
def sla_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    mode: Annotated[
        ImportMode, typer.Option(help="merge: add/replace by name; replace: exactly the file.")
    ] = ImportMode.MERGE,
    dry_run: Annotated[bool, typer.Option(help="Validate and list changes only.")] = False,
) -> None:
    """Apply a YAML SLA configuration to the database (audited, like POST /sla-policies/import)."""
    from opsflow.auth.principal import Principal
    from opsflow.sla_config import service

    settings = load_settings()
    schema.upgrade(settings.database_url)
    text = file.read_text("utf-8")

    async def run() -> None:
        async with _unit_of_work(settings) as (ctx, session):
            applied = await service.apply_config(
                session,
                Principal.system("cli"),
                service.parse(text),
                ctx.clock.now(),
                mode=mode.value,
                dry_run=dry_run,
                origin=str(file),
            )
        for change in applied.changes:
            typer.echo(f"{change['change']:>8} {change['kind']} {change['name']}")
        verb = "would apply" if dry_run else "applied"
        typer.echo(
            f"{verb} {len(applied.changes)} change(s): {applied.policies} policies, "
            f"{applied.calendars} calendars (revision {applied.revision})"
        )

    _run_reporting_errors(run())


@sla_app.command("export")
def sla_export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
) -> None:
    """Write the stored SLA configuration as YAML."""
    from opsflow.sla_config import service

    settings = load_settings()
    schema.upgrade(settings.database_url)

    async def run() -> None:
        async with _unit_of_work(settings) as (_, session):
            text = await service.export_yaml(session)
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, "utf-8")

    _run_reporting_errors(run())


reports_app = typer.Typer(help="Reports: what they keep beside the rows they describe.")
app.add_typer(reports_app, name="reports")


@reports_app.command("rebuild")
def reports_rebuild() -> None:
    """Recompute what the reports keep beside the rows (after a bulk load, or to check it):
    the working time of every stopped SLA clock and each task's breach instant, as a clock
    change stores them, and on PostgreSQL the rollups of the tasks and of the clocks, as
    the triggers keep them."""
    from opsflow.reports import service

    settings = load_settings()
    schema.upgrade(settings.database_url)

    async def run() -> None:
        async with _unit_of_work(settings) as (_, session):
            changed = await service.rebuild(session)
        typer.echo(f"rebuilt: {changed} task(s), clock(s) and rollup group(s) changed")

    _run_reporting_errors(run())


def _celery_logging(level: str, json_logs: bool, chatty: tuple[str, ...]) -> None:
    """Our structlog lines and Celery's at one level; Celery's per-tick lines only at DEBUG.

    A tick every second would otherwise log a line or two each; our own `sla_pass` lines
    say what fired, and warnings and errors from those loggers still show.
    """
    from opsflow.observability.logging import configure as configure_logging

    configure_logging(level, json_logs)
    if level != "DEBUG":
        quiet = max(logging.WARNING, logging.getLevelNamesMapping().get(level, logging.INFO))
        for name in chatty:
            logging.getLogger(name).setLevel(quiet)


class WorkerPool(StrEnum):
    prefork = "prefork"
    solo = "solo"


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Child processes (prefork pool).")
    ] = 1,
    pool: Annotated[
        WorkerPool,
        typer.Option(
            help="prefork: jobs run in child processes that a hard time limit can kill; "
            "solo: in this process (no time limit)."
        ),
    ] = WorkerPool.prefork,
    loglevel: Annotated[
        str | None, typer.Option("--loglevel", "-l", help="Log level (default: LOG_LEVEL).")
    ] = None,
    hostname: Annotated[
        str | None, typer.Option("--hostname", "-n", help="Node name (default: celery@<host>).")
    ] = None,
) -> None:
    """Run a Celery worker: it runs the SLA engine ticks that `opsflow beat` sends."""
    # Pool: each job runs its coroutine on an event loop its process keeps, which rules out
    # thread pools (gevent/eventlet/threads). Prefork with one child by default: the hard
    # time limit can kill a tick stuck on the database (its transaction rolls back) and the
    # child is replaced; solo saves a process but has no time limit. Ticks are mostly I/O on
    # the database, so scale out with more workers (or `--concurrency`), not bigger ones.
    from opsflow.workers.celery_app import database_state

    settings = load_settings()
    level = (loglevel or settings.log_level).upper()
    _celery_logging(level, settings.log_json, ("celery.app.trace", "celery.worker.strategy"))
    state = asyncio.run(database_state(settings))
    if state == "unavailable":
        typer.secho("Database unavailable (see the log above).", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    if state == "not_current":
        typer.secho(
            "Database schema is not current: run `opsflow migrate` first.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    stop_metrics, shared = None, None
    if settings.metrics_port is not None:
        # Every pool process writes its instruments to one directory; this process serves
        # their sum.
        import os

        from prometheus_client import CollectorRegistry

        from opsflow.observability import metrics

        shared = metrics.use_multiprocess_directory(os.environ.get(metrics.MULTIPROCESS_ENV))
        stop_metrics = metrics.serve_process_metrics(
            settings.metrics_port,
            settings.metrics_host,
            metrics.process_registry(CollectorRegistry(auto_describe=False)),
        )
    try:
        _run_worker(settings, pool, concurrency, level, hostname)
    finally:
        if stop_metrics is not None and shared is not None:
            stop_metrics()
            if shared[1]:
                metrics.remove_multiprocess_directory(shared[0])


def _run_worker(
    settings: Settings, pool: WorkerPool, concurrency: int, level: str, hostname: str | None
) -> None:
    from celery.utils.nodenames import default_nodename, host_format

    from opsflow.workers.celery_app import create_celery_app

    celery = create_celery_app(settings)
    celery_worker = celery.Worker(
        pool_cls=pool.value,
        concurrency=concurrency,
        loglevel=level,
        hostname=host_format(default_nodename(hostname)),
        without_mingle=True,  # ticks need no state synced from other workers at start
        without_gossip=True,
    )
    celery_worker.start()
    raise typer.Exit(int(celery_worker.exitcode or 0))


@app.command()
def beat(
    schedule_file: Annotated[
        Path | None,
        typer.Option(
            help="Beat's state file (default: OPSFLOW_BEAT_SCHEDULE_FILE, else "
            "OPSFLOW_DATA_DIR/celerybeat-schedule)."
        ),
    ] = None,
    loglevel: Annotated[
        str | None, typer.Option("--loglevel", "-l", help="Log level (default: LOG_LEVEL).")
    ] = None,
) -> None:
    """Run Celery beat: it sends the SLA engine tick every OPSFLOW_ENGINE_INTERVAL_SECONDS."""
    from opsflow.workers.celery_app import create_celery_app

    settings = load_settings()
    level = (loglevel or settings.log_level).upper()
    _celery_logging(level, settings.log_json, ("celery.beat",))
    path = schedule_file or settings.beat_schedule_file or settings.data_dir / "celerybeat-schedule"
    path.parent.mkdir(parents=True, exist_ok=True)
    celery = create_celery_app(settings)
    celery.Beat(schedule=str(path), loglevel=level).run()


@app.command()
def engine(
    passes: Annotated[
        str,
        typer.Option(
            help="Comma list of the passes each round runs, in this order: sla (fires SLA "
            "thresholds), relay (outbox events to escalations, notifications, webhooks), "
            "escalation (fires due steps), delivery (sends notifications), uploads (removes "
            "abandoned uploads and deleted attachments' bytes), outbox (deletes relayed "
            "events past the retention window); or all (the "
            "rounds `opsflow serve` runs)."
        ),
    ] = "sla",
    batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Rows claimed per pass, for every selected pass (default: "
            "OPSFLOW_ENGINE_BATCH_SIZE for sla; relay 500, escalation 200, delivery 50, "
            "uploads 100).",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            help="Longest wait after a round without backlog, in seconds "
            "(default: OPSFLOW_ENGINE_INTERVAL_SECONDS)."
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Run one round and exit.")] = False,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle", help="Run rounds until one in which no pass took anything, then exit."
        ),
    ] = False,
    max_failures: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Give up after this many consecutive failed rounds (default: 1 with --once, "
            "5 with --until-idle, never otherwise).",
        ),
    ] = None,
) -> None:
    """Run engine rounds in this process (any number of them side by side, with or without
    the engines inside `opsflow serve`). One JSON line per pass on stdout; see
    docs/operations.md."""
    from opsflow.observability.logging import configure as configure_logging
    from opsflow.workers import process

    if once and until_idle:
        raise typer.BadParameter("--once and --until-idle exclude each other", param_hint="--once")
    if interval is not None and interval <= 0:
        raise typer.BadParameter("must be positive", param_hint="--interval")
    try:
        settings = load_settings()
    except (ConfigError, ValueError) as exc:
        typer.secho(f"opsflow engine: bad configuration: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(process.EXIT_CONFIG) from exc
    try:
        selected = engine_registry(settings).parse(passes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--passes") from exc
    if max_failures is None:
        max_failures = 1 if once else process.DEFAULT_MAX_FAILURES if until_idle else None
    options = process.Options(
        engines=selected,
        interval=interval or settings.engine_interval_seconds,
        once=once,
        until_idle=until_idle,
        max_failures=max_failures,
        batch=batch,
    )
    configure_logging(settings.log_level, settings.log_json)
    try:
        status = asyncio.run(process.serve(settings, options))
    except ConfigError as exc:
        typer.secho(f"opsflow engine: bad configuration: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(process.EXIT_CONFIG) from exc
    raise typer.Exit(status)


@app.command()
def check(
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each network check may take.")
    ] = 5.0,
) -> None:
    """Check the configuration (with the production refusals of `serve`), the database and
    its migrations, Redis and SMTP (EHLO) when configured; print a table and exit 1 when
    any check fails. Reads only: nothing is migrated, created or sent."""
    from rich.console import Console
    from rich.table import Table

    from opsflow.config import current_environment
    from opsflow.system import check as checks

    results = asyncio.run(checks.run(load_settings, current_environment(), seconds=timeout))
    colours = {"ok": "green", "warn": "yellow", "skip": "dim", "fail": "bold red"}
    table = Table(title=f"OpsFlow {__version__}: opsflow check")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for result in results:
        colour = colours[result.status.value]
        table.add_row(result.name, f"[{colour}]{result.status.value}[/{colour}]", result.detail)
    console = Console()
    console.print(table)
    if checks.failed(results):
        bad = ", ".join(r.name for r in results if r.status is checks.Status.FAIL)
        console.print(f"[bold red]FAILED[/bold red]: {bad}")
        raise typer.Exit(1)
    console.print("[green]all checks passed[/green]")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
