"""Which documented route a request path belongs to, read from the OpenAPI document.

Used for the `Allow` header of 405 answers (Starlette reports only the first matching
route's methods) and for low-cardinality metric labels (the route template, not the path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI


@dataclass(frozen=True)
class _Entry:
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    parameters: int


class RouteIndex:
    def __init__(self, app: FastAPI) -> None:
        entries = []
        for template, operations in app.openapi().get("paths", {}).items():
            entries.append(
                _Entry(
                    template=template,
                    pattern=re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"),
                    methods=frozenset(m.upper() for m in operations),
                    parameters=template.count("{"),
                )
            )
        # Literal segments win over parameters: /users/me/... before /users/{user_id}.
        self._entries = sorted(entries, key=lambda e: (e.parameters, e.template))

    def template_for(self, path: str) -> str | None:
        return next((e.template for e in self._entries if e.pattern.match(path)), None)

    def methods_for(self, path: str) -> list[str]:
        methods: set[str] = set()
        for entry in self._entries:
            if entry.pattern.match(path):
                methods |= entry.methods
        return sorted(methods)


def route_index(app: FastAPI) -> RouteIndex:
    index: RouteIndex | None = getattr(app.state, "route_index", None)
    if index is None:
        index = RouteIndex(app)
        app.state.route_index = index
    return index
