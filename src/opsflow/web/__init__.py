"""The web dashboard and the interactive API documentation, served by the API process.

Everything the browser loads ships inside this package (``static/``): the dashboard's own
ES modules and styles, and vendored Swagger UI and ReDoc (with their licence files). No
page loads anything from another origin and none carries inline script, so the strict
Content-Security-Policy of :mod:`opsflow.middleware` holds for all of them.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_PREFIX = "/static"
_STATIC = files("opsflow.web") / "static"

_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{static}/vendor/swagger-ui/swagger-ui.css">
<link rel="icon" href="{static}/favicon.svg" type="image/svg+xml"></head>
<body><div id="swagger-ui" data-spec-url="{spec}"></div>
<script src="{static}/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{static}/docs/swagger-init.js"></script></body></html>
"""

_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{static}/favicon.svg" type="image/svg+xml"></head>
<body><redoc spec-url="{spec}"></redoc>
<script src="{static}/vendor/redoc/redoc.standalone.js"></script></body></html>
"""


def install_web(app: FastAPI, *, api_prefix: str, title: str) -> None:
    """Serve the dashboard at ``/``, its files under ``/static`` and the API docs pages
    (Swagger UI at ``<api_prefix>/docs``, ReDoc at ``<api_prefix>/redoc``)."""
    spec = f"{api_prefix}/openapi.json"
    index = (_STATIC / "index.html").read_text(encoding="utf-8")
    swagger = _SWAGGER.format(title=title, static=STATIC_PREFIX, spec=spec)
    redoc = _REDOC.format(title=title, static=STATIC_PREFIX, spec=spec)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(index, headers={"Cache-Control": "no-cache"})

    @app.get(f"{api_prefix}/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger)

    @app.get(f"{api_prefix}/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc)

    app.mount(
        STATIC_PREFIX,
        StaticFiles(packages=[("opsflow.web", "static")]),
        name="static",
    )
