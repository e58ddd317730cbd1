"""The flat API routes decline paths their first segment rules out, and the router still
picks exactly the route it picked when every route was tried in order."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match

from opsflow.routing import FlatRoute, SegmentDispatch

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _scope(path: str, method: str) -> dict[str, Any]:
    return {"type": "http", "path": path, "root_path": "", "method": method}


def _chosen(routes: list[BaseRoute], scope: dict[str, Any], *, every: bool) -> BaseRoute | None:
    """The route a router runs for `scope`: the first full match, else the first partial
    one. `every`: each API route tries its own pattern (no table)."""
    partial = None
    for route in routes:
        if every and isinstance(route, APIRoute):
            match, _ = APIRoute.matches(route, scope)
        else:
            match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def _paths(templates: list[str]) -> list[str]:
    """Each template with its parameters filled three ways (a UUID, a word, a literal
    segment of another route), with and without a trailing slash, and a few strays."""
    words = {w for t in templates for w in t.split("/") if w and "{" not in w}
    fillers = [str(uuid.uuid4()), "x", *sorted(words)[:12]]
    paths = {"/", "/api", "/api/v1", "/api/v1/", "/api/v1/nothing-here", "/health", "/metrics"}
    for template in templates:
        for filler in fillers:
            path = re.sub(r"\{[^}]+\}", filler, template)
            paths.update({path, path + "/", path + "/extra"})
    return sorted(paths)


async def test_the_table_picks_the_route_trying_every_route_in_order_picks(app: Any) -> None:
    routes: list[BaseRoute] = list(app.router.routes)
    flat = [r for r in routes if isinstance(r, FlatRoute)]
    assert len(flat) > 100  # the API is mounted flat, through the table
    checked = 0
    for path in _paths([r.path for r in flat]):
        for method in METHODS:
            with_table = _chosen(routes, _scope(path, method), every=False)
            without = _chosen(routes, _scope(path, method), every=True)
            assert with_table is without, (method, path, with_table, without)
            checked += 1
    assert checked > 1000


async def test_a_path_is_matched_against_the_routes_of_its_first_segment_only(app: Any) -> None:
    flat = [r for r in app.router.routes if isinstance(r, FlatRoute)]
    scope = _scope("/api/v1/integrations/some-key/events", "POST")
    flat[0].matches(scope)  # the first route tried works the candidates out for the others
    kept = [r for r in flat if id(r) in _kept(scope)]
    assert kept
    assert all(r.path.startswith("/api/v1/integrations") for r in kept)
    assert len(kept) < len(flat) / 5


def _kept(scope: dict[str, Any]) -> frozenset[int]:
    found: tuple[str, frozenset[int]] = scope["opsflow.route_candidates"]
    return found[1]


async def test_the_dispatch_by_segment_picks_the_route_the_whole_router_picks(app: Any) -> None:
    """A request under the API prefix is routed among the routes its first segment leaves
    possible: the route chosen, and whether the path with a trailing slash added or
    removed matches a route (the redirect), are those of every route tried in order."""
    dispatch = app.router.middleware_stack
    assert isinstance(dispatch, SegmentDispatch)
    routes: list[BaseRoute] = list(app.router.routes)
    flat = [r for r in routes if isinstance(r, FlatRoute)]
    checked = 0
    for path in _paths([r.path for r in flat]):
        segment = path.removeprefix("/api/v1/").partition("/")[0]
        if not path.startswith("/api/v1/") or not segment:
            continue
        router, _ = dispatch.router_for(segment)
        assert len(router.routes) < len(routes)
        toggled = path.rstrip("/") if path.endswith("/") else path + "/"
        for method in METHODS:
            for candidate in (path, toggled):
                scope = _scope(candidate, method)
                assert _chosen(router.routes, scope, every=True) is _chosen(
                    routes, scope, every=True
                ), (method, candidate)
                checked += 1
    assert checked > 1000


async def test_a_request_tries_only_the_routes_of_its_first_segment(app: Any) -> None:
    """The inbound alert routes come after sixty-odd others: the router no longer asks
    each of those whether it matches."""
    tried: list[BaseRoute] = []
    routes: list[BaseRoute] = list(app.router.routes)
    originals = {id(r): type(r).matches for r in routes}
    for route in routes:

        def spy(scope: Any, route: BaseRoute = route) -> Any:
            tried.append(route)
            return originals[id(route)](route, scope)

        route.matches = spy  # type: ignore[method-assign]
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/api/v1/integrations/no-such-key/events", json={})
    finally:
        for route in routes:
            del route.matches
    assert response.status_code in (400, 401, 404), response.text
    assert tried
    assert all(
        not isinstance(r, FlatRoute) or r.path.startswith("/api/v1/integrations") for r in tried
    ), [getattr(r, "path", r) for r in tried]
