"""Which of OpsFlow's routes a request path belongs to.

Used for the `Allow` header of 405 answers (Starlette reports only the first matching
route's methods), to keep a literal path such as `/sla-policies/export` from being taken
by a parameterised route (`PATCH /sla-policies/{policy_id}`) for a method the literal
route does not serve, and for low-cardinality metric labels (the route template, not the
path).
Built once in `create_app` from the routers as they are mounted (reading the OpenAPI
document instead would cost ~0.6 s per process on the first request).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException


@dataclass(frozen=True)
class _Entry:
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    parameters: int


class RouteIndex:
    def __init__(self, routes: Iterable[tuple[str, Iterable[str]]] = ()) -> None:
        merged: dict[str, set[str]] = {}
        for template, methods in routes:
            merged.setdefault(template, set()).update(m.upper() for m in methods)
        entries = [
            _Entry(
                template=template,
                pattern=re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"),
                methods=frozenset(methods),
                parameters=template.count("{"),
            )
            for template, methods in merged.items()
        ]
        # Literal segments win over parameters: /users/me/... before /users/{user_id}.
        self._entries = sorted(entries, key=lambda e: (e.parameters, e.template))

    @classmethod
    def of(cls, mounted: Iterable[tuple[str, APIRouter]]) -> RouteIndex:
        return cls(
            (prefix + route.path, route.methods or ())
            for prefix, router in mounted
            for route in router.routes
            if isinstance(route, APIRoute)
        )

    def template_for(self, path: str) -> str | None:
        return next((e.template for e in self._entries if e.pattern.match(path)), None)

    def methods_for(self, path: str) -> list[str]:
        """The methods of the most specific routes for `path` (fewest parameters): a
        literal segment owns its path even where a parameter would also match it."""
        matching = [e for e in self._entries if e.pattern.match(path)]
        if not matching:
            return []
        fewest = matching[0].parameters
        return sorted({m for e in matching if e.parameters == fewest for m in e.methods})


def route_index(app: FastAPI) -> RouteIndex:
    index: RouteIndex | None = getattr(app.state, "route_index", None)
    return index if index is not None else RouteIndex()


async def literal_routes_first(request: Request) -> None:
    """Router dependency: answer 405 (with `Allow`) when the request reached a
    parameterised route although a literal route owns the path and does not serve the
    method (`DELETE /sla-policies/import` is not an attempt to delete a policy called
    "import")."""
    allowed = route_index(request.app).methods_for(request.url.path)
    if allowed and request.method not in allowed:
        raise HTTPException(405)
