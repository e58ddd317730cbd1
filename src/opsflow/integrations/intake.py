"""Group commit for the inbound alert endpoints.

Each request parks its event on a queue with a future and waits. One task of the process
takes what has queued (up to `MAX_BATCH` requests) and applies it in one unit of work:
one lookup of the integrations by key, one set of dedup-key locks, one read of the open
incidents, one statement for the plain re-sends and one for the event log, one commit.
Only then are the futures resolved: a request is answered 2xx after its events are
committed, as before, and while a batch commits the next one fills.

- A request whose key is unknown or whose body is refused gets its 4xx and writes nothing;
  the others of the batch apply.
- The batch is first applied set-based (see integrations.batch). If it fails as a whole
  (an event the rules refuse, an unexpected error), each of its requests is applied again
  alone, each event that takes the full rules in its own savepoint, so only the culprit
  fails. When the database is unavailable every request
  of the batch is answered 503 (the senders retry on 5xx), and nothing was committed.
- There is no queue limit that answers 429: monitoring systems drop 4xx. Back pressure is
  the senders' own: each waits for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from opsflow.auth.principal import RequestMeta
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.errors import AppError, NotFound, ServiceUnavailable
from opsflow.integrations import batch as alert_batch
from opsflow.integrations import repository, service
from opsflow.integrations.ingest import Outcome
from opsflow.integrations.parsers import AlertEvent
from opsflow.models.integration import Integration

MAX_BATCH = 200
log = structlog.get_logger("opsflow.integrations")

Parse = Callable[[Integration], list[AlertEvent]]


@dataclass
class _Request:
    key_hash: str
    parse: Parse  # verifies and reads the body by the integration's rules; raises AppError
    received_at: datetime
    meta: RequestMeta
    future: asyncio.Future[list[Outcome]] = field(repr=False)


class AlertIntake:
    """The group-commit queue of one process (and event loop)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_worker(self) -> asyncio.Queue[_Request]:
        loop = asyncio.get_running_loop()
        if (
            self._queue is None
            or self._loop is not loop
            or self._worker is None
            or (self._worker.done())
        ):
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._consume(self._queue), name="alert-intake")
        return self._queue

    async def submit(self, key: str, parse: Parse, meta: RequestMeta) -> list[Outcome]:
        """Apply one request's events; returns once they are committed."""
        queue = self._ensure_worker()
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Request(service.hash_key(key), parse, self.ctx.clock.now(), meta, future))
        return await future

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await worker

    async def _consume(self, queue: asyncio.Queue[_Request]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            self.ctx.metrics.alert_batch_size.observe(len(batch))
            try:
                await self._run(batch)
            except asyncio.CancelledError:
                for request in batch:
                    _settle(request, ServiceUnavailable("The server is shutting down; retry"))
                raise

    async def _run(self, batch: list[_Request], *, deferred: bool = True) -> None:
        try:
            results = await self._apply(batch, deferred)
        except Exception as exc:
            if (deferred or len(batch) > 1) and not _unavailable(exc):
                for request in batch:
                    await self._run([request], deferred=False)
                return
            if not _unavailable(exc):
                log.exception("alert_batch_failed")
            else:
                log.warning("database_unavailable", error=str(exc)[:500])
            for request in batch:
                _settle(
                    request,
                    ServiceUnavailable(
                        "The event could not be recorded; retry later", retry_after_seconds=5
                    ),
                )
            return
        for request, result in zip(batch, results, strict=True):
            _settle(request, result)

    async def _apply(self, batch: list[_Request], deferred: bool) -> list[list[Outcome] | AppError]:
        results: list[list[Outcome] | AppError] = []
        async with unit_of_work(self.ctx.sessions) as session:
            found = await repository.by_key_hashes(session, {r.key_hash for r in batch})
            items: list[alert_batch.Item] = []
            places: list[int] = []
            for request in batch:
                integration = found.get(request.key_hash)
                if integration is None or not integration.enabled:
                    results.append(NotFound(service.ENTITY))
                    continue
                try:
                    events = request.parse(integration)
                except AppError as exc:
                    results.append(exc)
                    continue
                places.append(len(results))
                results.append([])
                items.append(
                    alert_batch.Item(integration, events, request.received_at, request.meta)
                )
            if items:
                applied = await alert_batch.apply_batch(session, self.ctx, items, deferred=deferred)
                for place, outcomes in zip(places, applied, strict=True):
                    results[place] = outcomes
        return results


def _unavailable(exc: BaseException) -> bool:
    """The database could not be reached or went away (the whole batch fails alike)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, InterfaceError | ConnectionError | TimeoutError | OSError):
        return True
    return isinstance(exc, OperationalError)


def _settle(request: _Request, result: list[Outcome] | BaseException) -> None:
    if request.future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        request.future.set_exception(result)
    else:
        request.future.set_result(result)
