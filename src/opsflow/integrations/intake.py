"""Group commit for the inbound alert endpoints.

Each request parks its event on a queue with a future and waits. One task of the process
takes what has queued (up to `MAX_BATCH` requests) and applies it in one unit of work:
one lookup of the integrations by key, one set of dedup-key locks, one read of the open
incidents, one statement for the plain re-sends and one for the event log, one commit.
Only then are the futures resolved: a request is answered 2xx after its events are
committed.

- Two batches may be in flight on PostgreSQL (`IN_FLIGHT`): the next batch is taken once
  the one before has run its statements, and is read, locked and applied while that one
  commits, so the process's CPU is not idle for a commit's round trip. Batches stay as
  large as with one at a time (the next fills while the one before runs its statements):
  starting the next one any sooner would halve them and cost more CPU per event. The one
  before holds all of its dedup-key locks by then: a key both batches carry waits for its
  commit, so the events of one key apply in arrival order, and each batch locks its keys in
  sorted order (no deadlock). SQLite serialises writers: one batch at a time.
- A request whose key is unknown or whose body is refused gets its 4xx and writes nothing;
  the others of the batch apply.
- The batch is first applied set-based (see integrations.batch) in a SAVEPOINT, after its
  locks. If that fails (an event the rules refuse, an unexpected error), it is rolled back
  to the savepoint and each request applied again alone, in the same transaction and
  still holding the locks, each in its own savepoint and each event that takes the full
  rules in its own too, so only the culprit fails (an unexpected error fails its request
  alone, with a 503). When the database is unavailable every request of the batch is
  answered 503 (the senders retry on 5xx), and nothing was committed.
- There is no queue limit that answers 429: monitoring systems drop 4xx. Back pressure is
  the senders' own: each waits for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import RequestMeta
from opsflow.context import AppContext
from opsflow.db import savepoint, unit_of_work
from opsflow.errors import AppError, NotFound, ServiceUnavailable
from opsflow.integrations import batch as alert_batch
from opsflow.integrations import repository, service
from opsflow.integrations.ingest import Outcome
from opsflow.integrations.parsers import AlertEvent
from opsflow.models.integration import Integration

MAX_BATCH = 200
IN_FLIGHT = 2  # batches applied at once on PostgreSQL
log = structlog.get_logger("opsflow.integrations")

Parse = Callable[[Integration], list[AlertEvent]]
Result = list[Outcome] | AppError


def _unavailable_answer() -> ServiceUnavailable:
    return ServiceUnavailable("The event could not be recorded; retry later", retry_after_seconds=5)


@dataclass
class _Request:
    key_hash: str
    parse: Parse  # verifies and reads the body by the integration's rules; raises AppError
    received_at: datetime
    meta: RequestMeta
    future: asyncio.Future[list[Outcome]] = field(repr=False)


class AlertIntake:
    """The group-commit queue of one process (and event loop)."""

    def __init__(self, ctx: AppContext, *, max_batch: int = MAX_BATCH) -> None:
        self.ctx = ctx
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[None]] = set()

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
        tasks = [t for t in (worker, *self._running) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task

    async def _consume(self, queue: asyncio.Queue[_Request]) -> None:
        depth = IN_FLIGHT if self.ctx.engine.dialect.name == "postgresql" else 1
        slots = asyncio.Semaphore(depth)
        while True:
            await slots.acquire()
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            self.ctx.metrics.alert_batch_size.observe(len(batch))
            committing = asyncio.Event()
            task = asyncio.get_running_loop().create_task(self._run(batch, committing))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            task.add_done_callback(lambda _: slots.release())
            # The next batch fills until this one has run its statements (it then holds its
            # locks) and goes on while this one commits.
            await committing.wait()

    async def _run(self, batch: list[_Request], committing: asyncio.Event) -> None:
        try:
            results = await self._apply(batch, committing)
        except asyncio.CancelledError:
            for request in batch:
                _settle(request, ServiceUnavailable("The server is shutting down; retry"))
            raise
        except Exception as exc:
            if _unavailable(exc):
                log.warning("database_unavailable", error=str(exc)[:500])
            else:
                log.exception("alert_batch_failed")
            results = [_unavailable_answer() for _ in batch]
        finally:
            committing.set()  # also when it failed: the next batch goes on
        for request, result in zip(batch, results, strict=True):
            _settle(request, result)

    async def _apply(self, batch: list[_Request], committing: asyncio.Event) -> list[Result]:
        async with unit_of_work(self.ctx.sessions) as session:
            results, places, items = await self._parse(session, batch)
            if items:
                await alert_batch.prune(session, self.ctx, items)
                await alert_batch.lock_keys(session, items)
                applied = await self._set_based(session, items)
                for place, outcomes in zip(places, applied, strict=True):
                    results[place] = outcomes
            committing.set()
        return results

    async def _parse(
        self, session: AsyncSession, batch: list[_Request]
    ) -> tuple[list[Result], list[int], list[alert_batch.Item]]:
        """Each request's integration and events, or its 4xx: the answers so far, where the
        requests to apply stand in them, and those requests."""
        found = await repository.by_key_hashes(session, {r.key_hash for r in batch})
        results: list[Result] = []
        places: list[int] = []
        items: list[alert_batch.Item] = []
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
            items.append(alert_batch.Item(integration, events, request.received_at, request.meta))
        return results, places, items

    async def _set_based(
        self, session: AsyncSession, items: list[alert_batch.Item]
    ) -> list[Result]:
        try:
            async with savepoint(session):
                return list(await alert_batch.apply_locked(session, self.ctx, items, deferred=True))
        except Exception as exc:
            if _unavailable(exc):
                raise
            log.warning("alert_batch_one_by_one", error=str(exc)[:300])
        return await self._one_by_one(session, items)

    async def _one_by_one(
        self, session: AsyncSession, items: list[alert_batch.Item]
    ) -> list[Result]:
        """Each request alone, in order, in its own savepoint (the batch's locks held). What a
        rolled-back savepoint leaves in the session (re-sends applied in memory, expired
        rows) is dropped and the integrations read again before the next request."""
        results: list[Result] = []
        found: dict[uuid.UUID, Integration] = {}
        stale = True
        for item in items:
            if stale:
                session.expunge_all()
                found = await repository.by_ids(session, {i.integration.id for i in items})
                stale = False
            integration = found.get(item.integration.id)
            if integration is None:
                results.append(NotFound(service.ENTITY))
                continue
            alone = dataclasses.replace(item, integration=integration)
            try:
                async with savepoint(session):
                    (outcomes,) = await alert_batch.apply_locked(session, self.ctx, [alone])
            except Exception as exc:
                if _unavailable(exc):
                    raise
                log.exception("alert_request_failed")
                results.append(_unavailable_answer())
                stale = True
                continue
            results.append(outcomes)
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
