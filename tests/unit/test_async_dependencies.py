"""Every dependency and endpoint of the API is a coroutine: FastAPI runs a plain `def` in
its thread pool, a thread hop (and a lock handed between threads) per call and request,
for work that never blocks."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from opsflow.app import create_app
from opsflow.config import Settings


def _is_coroutine(call: Any) -> bool:
    return (
        inspect.iscoroutinefunction(call)
        or inspect.isasyncgenfunction(call)
        or inspect.iscoroutinefunction(type(call).__call__)  # a callable object
    )


def _sync_calls(dependant: Dependant) -> list[str]:
    found = []
    for dependency in dependant.dependencies:
        if dependency.call is not None and not _is_coroutine(dependency.call):
            found.append(getattr(dependency.call, "__qualname__", repr(dependency.call)))
        found += _sync_calls(dependency)
    return found


def test_no_dependency_or_endpoint_runs_in_the_thread_pool(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/app.db",
        data_dir=str(tmp_path),
        engine_enabled=False,
        auto_migrate=False,
    )
    app = create_app(settings)
    offenders = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for name in _sync_calls(route.dependant):
            offenders.append(f"{sorted(route.methods or ())} {route.path}: {name}")
        if not _is_coroutine(route.endpoint):
            offenders.append(f"{sorted(route.methods or ())} {route.path}: endpoint")
    assert offenders == []
