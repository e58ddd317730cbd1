"""Typed dependency aliases shared by every router.

The dependencies that do not block are ``async def``: FastAPI runs a plain ``def``
dependency in its thread pool, one thread hop per dependency and request. They read the
application's context from the request themselves rather than through `ContextDep`: each
dependency FastAPI solves costs a fixed few dozen microseconds of bookkeeping on every
request, whatever little it does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import RequestMeta
from opsflow.clock import Clock
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.routing import inline


def _context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


async def get_context(request: Request) -> AppContext:
    return _context(request)


# The context and the clock are the application's: a flat route reads them from the
# request where a dependant asks for them, without FastAPI solving them per request.
inline(get_context, _context)
ContextDep = Annotated[AppContext, Depends(get_context)]


def _clock(request: Request) -> Clock:
    return _context(request).clock


async def get_clock(request: Request) -> Clock:
    return _clock(request)


inline(get_clock, _clock)
ClockDep = Annotated[Clock, Depends(get_clock)]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # scope="function" below: the commit happens when the endpoint returns, before the
    # response is sent, so a failing commit still becomes an error response.
    context: AppContext = request.app.state.context
    factory = context.read_sessions if request.method in SAFE_METHODS else context.sessions
    async with unit_of_work(factory) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_snapshot_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only unit of work whose statements all read one snapshot (the reports)."""
    context: AppContext = request.app.state.context
    async with unit_of_work(context.snapshot_sessions) as session:
        yield session


SnapshotDep = Annotated[AsyncSession, Depends(get_snapshot_session, scope="function")]


def request_meta(request: Request) -> RequestMeta:
    """Who sent the request (address, user agent) and its id, as audit rows record them."""
    client = request.client
    user_agent = request.headers.get("user-agent")
    return RequestMeta(
        ip_address=client.host if client else None,
        user_agent=user_agent[:512] if user_agent else None,
        request_id=getattr(request.state, "request_id", None),
    )


async def get_request_meta(request: Request) -> RequestMeta:
    return request_meta(request)


RequestMetaDep = Annotated[RequestMeta, Depends(get_request_meta)]
