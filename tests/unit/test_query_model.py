"""A query model (`Annotated[Model, Query()]`) on a flat route is read by one pass over
the query string, not by FastAPI's field-by-field extraction: the answers, valid or not,
are the ones FastAPI gives, and the OpenAPI document is the one it makes."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from opsflow.kit.pagination import PageDep
from opsflow.routing import FlatRoute, QueryModel, lean_dependant, mount_flat
from opsflow.tasks.endpoints import TaskQuery

UUID_OK = "00000000-0000-4000-8000-000000000000"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int | None = None
    words: list[str] | None = None


def _router() -> APIRouter:
    router = APIRouter(prefix="/things")

    @router.get("")
    async def things(page: PageDep, query: Annotated[TaskQuery, Query()]) -> dict[str, Any]:
        return {"page": page.page, "query": query.model_dump(mode="json")}

    @router.get("/strict")
    async def strict(query: Annotated[Strict, Query()]) -> dict[str, Any]:
        return query.model_dump(mode="json")

    return router


def _app(flat: bool) -> FastAPI:
    app = FastAPI()
    if flat:
        mount_flat(app, [_router()], prefix="/api")
    else:
        app.include_router(_router(), prefix="/api")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e.get(k) for k in ("type", "loc", "msg", "input")} for e in exc.errors()]
        return JSONResponse({"errors": errors}, status_code=400)

    return app


QUERIES = [
    "",
    "page=2",
    "status=new&status=assigned,in_progress&priority=high",
    "task_type=INCIDENT&task_type=TASK",  # a scalar repeated: the last one
    "task_type=nope",
    "assigned_to=not-a-uuid",
    f"assigned_to={UUID_OK}&team_id={UUID_OK}",
    "has_breach=maybe",
    "has_breach=true&include_deleted=1",
    "q=a%00b",
    "tags=" + "&tags=".join(str(i) for i in range(25)),
    "created_after=2026-01-01T00:00:00Z&created_before=yesterday",
    "sort=title&order=sideways",
    "unknown=1&another=2&another=3",
    "page=0",
    "page=0&task_type=nope&assigned_to=x",
]


@pytest.mark.parametrize("path", ["/api/things", "/api/things/strict"])
@pytest.mark.parametrize("query", [*QUERIES, "n=x", "n=3&words=a&words=b", "extra=1&extra=2"])
async def test_answers_are_fastapis(path: str, query: str) -> None:
    answers = []
    for flat in (False, True):
        transport = httpx.ASGITransport(app=_app(flat))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(f"{path}?{query}")
        answers.append((response.status_code, response.json()))
    assert answers[1] == answers[0]


def test_the_document_is_fastapis() -> None:
    def document(app: FastAPI) -> dict[str, Any]:
        return get_openapi(title="t", version="1", routes=app.routes)

    assert document(_app(flat=True)) == document(_app(flat=False))


def test_the_served_dependant_reads_the_model_in_one_dependency() -> None:
    """The declared dependant keeps the model as a query parameter (the document); the one
    the handler solves has none left and one `QueryModel` reader instead."""
    app = _app(flat=True)
    route = next(r for r in app.routes if isinstance(r, FlatRoute) and r.path == "/api/things")
    assert [f.name for f in route.dependant.query_params] == ["query"]
    lean = lean_dependant(route.dependant)
    assert lean.query_params == []
    readers = [d for d in lean.dependencies if isinstance(d.call, QueryModel)]
    assert [d.name for d in readers] == ["query"]
