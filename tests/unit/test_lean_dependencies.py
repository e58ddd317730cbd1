"""What a flat route has FastAPI solve per request: the clock, the context and the bearer
token are read where they are asked for, not solved as dependencies of their own; the
document still shows what the routes declare."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from starlette.requests import Request

from opsflow.auth.deps import bearer_token, oauth2_scheme
from opsflow.deps import get_clock, get_context
from opsflow.routing import FlatRoute, lean_dependant


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _route(app: Any, path: str, method: str) -> FlatRoute:
    return next(
        r
        for r in app.router.routes
        if isinstance(r, FlatRoute) and r.path == path and method in (r.methods or ())
    )


def test_a_task_read_solves_neither_the_clock_nor_the_token_scheme(app: Any) -> None:
    route = _route(app, "/api/v1/tasks/{task_id}", "GET")
    declared = list(_calls(route.dependant))
    assert get_clock in declared
    assert oauth2_scheme in declared
    lean = list(_calls(lean_dependant(route.dependant)))
    assert get_clock not in lean
    assert oauth2_scheme not in lean
    assert len(lean) < len(declared)


def test_no_flat_route_solves_an_inlined_dependency(app: Any) -> None:
    flat = [r for r in app.router.routes if isinstance(r, FlatRoute)]
    assert len(flat) > 100
    for route in flat:
        lean = set(map(id, _calls(lean_dependant(route.dependant))))
        assert not lean & {id(get_clock), id(get_context), id(oauth2_scheme)}, route.path


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer abc", "bearer abc ", "BEARER  a.b.c", "Basic abc", "Bearer", "Bearer "],
)
async def test_the_token_read_inline_is_the_schemes(header: str | None) -> None:
    headers = [] if header is None else [(b"authorization", header.encode())]
    request = Request({"type": "http", "headers": headers})
    assert bearer_token(request) == await oauth2_scheme(request)
