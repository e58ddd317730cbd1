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

import copy
import dataclasses
import functools
import inspect
import re
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, params
from fastapi._compat import ModelField, field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import _get_param_model, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

_UUID = "[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}"


@dataclass(frozen=True)
class _Entry:
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    parameters: int
    # The same path with its UUID parameters held to the UUID form, and how many there are.
    typed: re.Pattern[str]
    uuids: int

    def rank(self, path: str) -> tuple[int, int, int]:
        """Lower is more specific: fewer parameters; then the route whose UUID parameters
        the path satisfies, the more of them the better (`/integrations/{integration_id}/events`
        owns a UUID in that place, `/integrations/{key}/events` any other key)."""
        if self.typed.match(path):
            return (self.parameters, 0, -self.uuids)
        return (self.parameters, 1, 0)


def _pattern(template: str, uuid_names: frozenset[str]) -> re.Pattern[str]:
    def segment(match: re.Match[str]) -> str:
        return _UUID if match.group(1) in uuid_names else "[^/]+"

    return re.compile("^" + re.sub(r"\{([^/]+)\}", segment, template) + "$")


def _uuid_parameters(route: APIRoute) -> frozenset[str]:
    return frozenset(
        p.name for p in route.dependant.path_params if p.field_info.annotation is uuid.UUID
    )


# (template, methods) or (template, methods, names of its UUID path parameters)
RouteSpec = tuple[str, Iterable[str]] | tuple[str, Iterable[str], frozenset[str]]


class RouteIndex:
    def __init__(self, routes: Iterable[RouteSpec] = ()) -> None:
        merged: dict[str, set[str]] = {}
        typed: dict[str, frozenset[str]] = {}
        for route in routes:
            template, methods = route[0], route[1]
            merged.setdefault(template, set()).update(m.upper() for m in methods)
            typed[template] = typed.get(template, frozenset()) | (
                route[2] if len(route) == 3 else frozenset()
            )
        entries = [
            _Entry(
                template=template,
                pattern=_pattern(template, frozenset()),
                methods=frozenset(methods),
                parameters=template.count("{"),
                typed=_pattern(template, typed[template]),
                uuids=len(typed[template]),
            )
            for template, methods in merged.items()
        ]
        # Literal segments win over parameters: /users/me/... before /users/{user_id}.
        self._entries = sorted(entries, key=lambda e: (e.parameters, e.template))
        # Every request asks both questions (the router dependency, the metrics label): the
        # answers for recent paths are kept, a bounded number of them.
        self._templates: dict[str, str | None] = {}
        self._allowed: dict[str, list[str]] = {}

    @classmethod
    def of(cls, mounted: Iterable[tuple[str, APIRouter]]) -> RouteIndex:
        return cls(
            (prefix + route.path, route.methods or (), _uuid_parameters(route))
            for prefix, router in mounted
            for route in router.routes
            if isinstance(route, APIRoute)
        )

    def template_for(self, path: str) -> str | None:
        key = _shape(path)
        if key not in self._templates:
            _bounded(self._templates)[key] = next(
                (e.template for e in self._entries if e.pattern.match(key)), None
            )
        return self._templates[key]

    def methods_for(self, path: str) -> list[str]:
        """The methods of the most specific routes for `path` (fewest parameters): a
        literal segment owns its path even where a parameter would also match it."""
        matching = [e for e in self._entries if e.pattern.match(path)]
        if not matching:
            return []
        fewest = matching[0].parameters
        return sorted({m for e in matching if e.parameters == fewest for m in e.methods})

    def allowed_methods(self, path: str) -> list[str]:
        """The `Allow` of `path`: the methods of its most specific routes, where two routes
        with as many parameters share a path shape the one whose UUID parameters `path`
        satisfies (so each operation advertises its own methods)."""
        key = _shape(path)
        if key not in self._allowed:
            _bounded(self._allowed)[key] = self._allowed_methods(key)
        return list(self._allowed[key])

    def _allowed_methods(self, path: str) -> list[str]:
        matching = [e for e in self._entries if e.pattern.match(path)]
        if not matching:
            return []
        best = min(e.rank(path) for e in matching)
        return sorted({m for e in matching if e.rank(path) == best for m in e.methods})


CACHED_PATHS = 4096

# A whole path segment in the UUID form (what `_UUID` matches).
_UUID_SEGMENT = re.compile(f"(?<=/){_UUID}(?=/|$)")
_ANY_UUID = "00000000-0000-0000-0000-000000000000"


def _shape(path: str) -> str:
    """`path` with each UUID segment replaced by one and the same UUID: it matches exactly
    the routes `path` matches (no route template has a UUID for a literal segment, and a
    UUID matches both parameter patterns), so the answers are kept per shape of path
    instead of per path: a request for a new task's id finds them without a scan of every
    route."""
    return _UUID_SEGMENT.sub(_ANY_UUID, path)


_V = TypeVar("_V")


def _bounded(cache: dict[str, _V]) -> dict[str, _V]:
    """`cache`, emptied first when full (paths carry ids: the set of them is unbounded)."""
    if len(cache) >= CACHED_PATHS:
        cache.clear()
    return cache


def route_index(app: FastAPI) -> RouteIndex:
    index: RouteIndex | None = getattr(app.state, "route_index", None)
    return index if index is not None else RouteIndex()


def literal_routes_first(scope: Scope) -> None:
    """Answer 405 (with `Allow`) when the request reached a parameterised route although a
    literal route owns the path and does not serve the method (`DELETE
    /sla-policies/import` is not an attempt to delete a policy called "import"), or where
    a route of the same shape owns it (`GET /integrations/{key}/events` with a key that is
    no UUID is not a read of an integration's events).

    Checked by each flat route before it handles the request (not as a router dependency:
    each dependency FastAPI solves costs some eighty Python calls per request)."""
    allowed = route_index(scope["app"]).allowed_methods(scope["path"])
    if allowed and scope["method"] not in allowed:
        raise HTTPException(405)


def mount_flat(
    app: FastAPI,
    routers: Iterable[APIRouter],
    *,
    prefix: str,
    dependencies: Sequence[params.Depends] = (),
) -> None:
    """Every route of `routers` as a route of the application itself, under `prefix` and
    after `dependencies`: what `include_router` would serve, in the same order.

    FastAPI keeps an included router as a branch that it walks on every request (twice:
    once to find the matching branch, once more to dispatch into it, each level checking
    whether any router below changed): with the domain routers two levels deep that cost
    more CPU than some endpoints themselves. One flat list of routes is matched once.
    The OpenAPI document stays the same (a test compares it with the nested mount's)."""
    table = _SegmentTable(prefix)
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"only API routes can be mounted flat, not {route!r}")
            app.router.add_api_route(
                prefix + route.path,
                route.endpoint,
                response_model=route.response_model,
                status_code=route.status_code,
                tags=route.tags,
                dependencies=[*dependencies, *route.dependencies],
                summary=route.summary,
                description=route.description,
                response_description=route.response_description,
                responses=route.responses,
                deprecated=route.deprecated,
                methods=route.methods,
                operation_id=route.operation_id,
                response_model_include=route.response_model_include,
                response_model_exclude=route.response_model_exclude,
                response_model_by_alias=route.response_model_by_alias,
                response_model_exclude_unset=route.response_model_exclude_unset,
                response_model_exclude_defaults=route.response_model_exclude_defaults,
                response_model_exclude_none=route.response_model_exclude_none,
                include_in_schema=route.include_in_schema,
                response_class=route.response_class,
                name=route.name,
                callbacks=route.callbacks,
                openapi_extra=route.openapi_extra,
                generate_unique_id_function=route.generate_unique_id_function,
                strict_content_type=route.strict_content_type,
                route_class_override=FlatRoute,
            )
            added = app.router.routes[-1]
            assert isinstance(added, FlatRoute)
            table.add(added)
    table.seal()
    if app.router.middleware_stack == app.router.app:  # nothing wraps the router's own app
        app.router.middleware_stack = SegmentDispatch(app.router, table)


_CANDIDATES = "opsflow.route_candidates"


class _SegmentTable:
    """The routes of one flat mount by the first segment of their path after the prefix:
    which of them can match a path at all.

    A router tries its routes in order, and each try of a FastAPI route costs a dozen
    Python calls before its pattern rejects the path; with some thirty routes mounted
    before `/tasks`, and more before `/integrations`, that walk cost a tenth to a sixth of
    a request's CPU. A route whose first segment is literal (`/tasks/{task_id}`) can only
    match a path with that first segment, so the others are skipped by one set lookup.
    A route whose first segment holds a parameter is a candidate for every path. The
    order of the routes is untouched: of the candidates the first that matches wins, as
    it did among all of them."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix + "/"
        self._literal: dict[str, set[int]] = {}
        self._anywhere: set[int] = set()
        self._by_segment: dict[str, frozenset[int]] = {}
        self._other: frozenset[int] = frozenset()

    def add(self, route: FlatRoute) -> None:
        segment = self._segment(route.path)
        if segment is None or "{" in segment:
            self._anywhere.add(id(route))
        else:
            self._literal.setdefault(segment, set()).add(id(route))
        route.table = self

    def seal(self) -> None:
        self._other = frozenset(self._anywhere)
        self._by_segment = {
            segment: frozenset(routes | self._anywhere) for segment, routes in self._literal.items()
        }

    def dispatch_key(self, segment: str) -> str:
        """`segment` where routes start with it, else "" (the key of all the others)."""
        return segment if segment in self._by_segment else ""

    def by_key(self, key: str) -> frozenset[int]:
        return self._by_segment.get(key, self._other) if key else self._other

    def candidates(self, route_path: str) -> frozenset[int]:
        segment = self._segment(route_path)
        if segment is None:
            return self._other
        return self._by_segment.get(segment, self._other)

    def _segment(self, path: str) -> str | None:
        if not path.startswith(self.root):
            return None
        return path[len(self.root) :].split("/", 1)[0]


class SegmentDispatch:
    """The application router's entry point: a request under the flat mount's prefix is
    routed among the routes its first path segment leaves possible (the flat routes of
    that segment and the few routes that are not flat), in their order, by the router's
    own code; any other request by the router itself.

    A router asks each of its routes in turn whether it matches: even a flat route that
    declines at once costs a few Python calls, and the inbound alert routes come after
    sixty-seven others. The answer is the router's either way: of the routes left out,
    none could match the path, nor the path with a trailing slash added or removed (the
    same first segment), so the route chosen, a 405 for a path some route serves with
    another method, the trailing-slash redirect and the 404 are the same."""

    def __init__(self, router: APIRouter, table: _SegmentTable) -> None:
        self.router = router
        self.table = table
        self._routers: dict[str, tuple[APIRouter, frozenset[int]]] = {}
        self._routes = -1

    def router_for(self, segment: str) -> tuple[APIRouter, frozenset[int]]:
        """A shallow copy of the router with the routes left for `segment`, and the ids of
        the flat routes among them (built once per literal segment, and once for all the
        segments no route starts with; again once routes were added)."""
        if len(self.router.routes) != self._routes:
            self._routers.clear()
            self._routes = len(self.router.routes)
        key = self.table.dispatch_key(segment)
        found = self._routers.get(key)
        if found is None:
            candidates = self.table.by_key(key)
            router = copy.copy(self.router)
            router.routes = [
                route
                for route in self.router.routes
                if not (isinstance(route, FlatRoute) and route.table is self.table)
                or id(route) in candidates
            ]
            found = self._routers[key] = (router, candidates)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = get_route_path(scope)
            root = self.table.root
            if path.startswith(root):
                segment = path[len(root) :].partition("/")[0]
                # No segment: a trailing slash added or removed would change it.
                if segment:
                    found = self._routers.get(segment)
                    if found is None or len(self.router.routes) != self._routes:
                        found = self.router_for(segment)
                    router, candidates = found
                    # What the flat routes would work out each time (see FlatRoute).
                    scope[_CANDIDATES] = (scope["path"], candidates)
                    # The application's router, as the router itself names it.
                    scope.setdefault("router", self.router)
                    await APIRouter.app(router, scope, receive, send)
                    return
        await self.router.app(scope, receive, send)


class FlatRoute(APIRoute):
    """An API route of a flat mount: it declines at once a path its table rules out (the
    candidates are worked out once per request path and kept in the scope)."""

    table: _SegmentTable | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler solves a lean copy of the route's dependencies (see
        `lean_dependant`); `self.dependant`, which the OpenAPI document is made from, is
        left as declared."""
        documented = self.dependant
        self.dependant = lean_dependant(documented)
        try:
            return super().get_route_handler()
        finally:
            self.dependant = documented

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            literal_routes_first(scope)
        await super().handle(scope, receive, send)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.table is not None and scope["type"] == "http":
            path = scope["path"]
            found: tuple[str, frozenset[int]] | None = scope.get(_CANDIDATES)
            if found is None or found[0] is not path:
                found = (path, self.table.candidates(get_route_path(scope)))
                scope[_CANDIDATES] = found
            if id(self) not in found[1]:
                return Match.NONE, {}
        return super().matches(scope)


def lean_dependant(dependant: Dependant, root: Dependant | None = None) -> Dependant:
    """`dependant` as FastAPI should solve it per request, where the declared form costs
    more than the work (some eighty Python calls of bookkeeping per dependency FastAPI
    solves, whatever it does). The declared dependant, unchanged, still makes the OpenAPI
    document.

    * Each query parameter declared as a model (`Annotated[Model, Query()]`) is read by
      one `QueryModel` sub-dependency instead of FastAPI's own extraction, which works
      out for every field of the model, on every request, whether its annotation is a
      sequence and which of its aliases the request used: some eighty calls per field,
      1,300 for the sixteen filters of the task list, a quarter of that page's calls.
      The values and the errors are the same (the same field validates the same mapping).
    * A dependency marked `inline` (the clock, the context, the bearer token: values the
      request gives at once) is not solved as a dependency of its own: its value is read
      from the request by the dependant that asks for it, just before that one runs."""
    root = root or dependant
    models: list[ModelField] = []
    plain: list[ModelField] = []
    for field in dependant.query_params:
        model = _get_param_model(field)
        if (
            model is not None
            and QueryModel.supports(model)
            and field.field_info.annotation is model
        ):
            models.append(field)
        else:
            plain.append(field)
    inlined: list[tuple[str, Callable[[Request], Any]]] = [
        (sub.name, getattr(sub.call, _INLINE))
        for sub in dependant.dependencies
        if sub.name is not None and hasattr(sub.call, _INLINE)
    ]
    if not inspect.iscoroutinefunction(dependant.call):
        inlined = []  # the call is wrapped by a coroutine function: only one may be
    names = {name for name, _ in inlined}
    lean = dataclasses.replace(
        dependant,
        query_params=plain,
        dependencies=[
            *(
                lean_dependant(d, root)
                for d in dependant.dependencies
                if not (d.name in names and hasattr(d.call, _INLINE))
            ),
            *(
                Dependant(
                    call=QueryModel(field, root), name=field.name, request_param_name="request"
                )
                for field in models
            ),
        ],
    )
    if inlined:
        assert dependant.call is not None
        lean.call = _with_inlined(dependant.call, dependant.request_param_name, inlined)
        lean.request_param_name = dependant.request_param_name or _REQUEST
    return lean


_INLINE = "__opsflow_inline__"
_REQUEST = "_opsflow_request"
_D = TypeVar("_D")


def inline(dependency: _D, value: Callable[[Request], Any]) -> _D:
    """Mark `dependency` as one whose value `value(request)` gives at once, with no
    awaiting and nothing to close: a flat route does not have FastAPI solve it (see
    `lean_dependant`). Its answer must be the dependency's own."""
    setattr(dependency, _INLINE, value)
    return dependency


# One wrapper per dependency: FastAPI caches a dependency's value per request by its
# callable, so the same dependency met twice in a request must keep one callable.
_WRAPPED: dict[Any, Callable[..., Any]] = {}


def _with_inlined(
    call: Callable[..., Any],
    request_name: str | None,
    inlined: list[tuple[str, Callable[[Request], Any]]],
) -> Callable[..., Any]:
    wrapped = _WRAPPED.get(call)
    if wrapped is not None:
        return wrapped
    values_of = tuple(inlined)

    async def with_inlined(**values: Any) -> Any:
        request = values[request_name] if request_name else values.pop(_REQUEST)
        for name, value in values_of:
            values[name] = value(request)
        return await call(**values)

    functools.update_wrapper(with_inlined, call)
    _WRAPPED[call] = with_inlined
    return with_inlined


class QueryModel:
    """Reads a query model's fields from the query string in one pass and validates them
    with the parameter's own field, as FastAPI would: a sequence field takes every value
    of its key, any other field the last one, keys the model does not declare go to its
    `extra` policy, and an error is located under `query` like FastAPI's.

    Where the model is invalid, the answer lists what FastAPI's would: the errors of
    every parameter of the route (`route`, as declared), in the order FastAPI reports
    them (a wrong `page` next to a wrong filter), the body's aside."""

    def __init__(self, field: ModelField, route: Dependant) -> None:
        model = _get_param_model(field)
        assert model is not None
        self.field = field
        self.route = route
        self.extra = model.model_config.get("extra") in ("allow", "forbid")
        self.sequences: set[str] = set()
        self.scalars: set[str] = set()
        for name, info in model.model_fields.items():
            key = info.alias or name
            (self.sequences if field_annotation_is_sequence(info.annotation) else self.scalars).add(
                key
            )
        # A distinct object per route and parameter: FastAPI caches a dependency's value
        # per request by its callable.
        self.__name__ = f"query_{field.name}"

    @staticmethod
    def supports(model: type[Any]) -> bool:
        """Fields read by one name each (no `validation_alias`), JSON fields aside."""
        return all(
            info.validation_alias is None
            and not any(type(m).__name__ == "Json" for m in info.metadata)
            for info in model.model_fields.values()
        )

    async def __call__(self, request: Request) -> Any:
        values: dict[str, Any] = {}
        extras: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            if key in self.sequences:
                values.setdefault(key, []).append(value)
            elif key in self.scalars:
                values[key] = value
            elif self.extra:
                extras.setdefault(key, []).append(value)
        for key, found in extras.items():
            values[key] = found[0] if len(found) == 1 else found
        model, errors = self.field.validate(values, {}, loc=("query",))
        if errors:
            raise RequestValidationError(_parameter_errors(self.route, request, set()))
        return model


def _parameter_errors(dependant: Dependant, request: Request, seen: set[Any]) -> list[Any]:
    """FastAPI's validation errors for the parameters of `dependant` and its
    dependencies (each solved once), in the order it reports them: a dependency's before
    its dependant's own; path, query, header and cookie parameters in turn."""
    errors: list[Any] = []
    for sub in dependant.dependencies:
        if sub.call not in seen:
            seen.add(sub.call)
            errors += _parameter_errors(sub, request, seen)
    for fields, received in (
        (dependant.path_params, request.path_params),
        (dependant.query_params, request.query_params),
        (dependant.header_params, request.headers),
        (dependant.cookie_params, request.cookies),
    ):
        errors += request_params_to_args(fields, received)[1]
    return errors
