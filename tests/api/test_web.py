"""The dashboard's files are served by the API process from the package, under the page
Content-Security-Policy; every module the pages import and every vendored library (with its
licence) is there; no page or module names another origin."""

from __future__ import annotations

import re
from importlib.resources import files

import httpx

ROOT = "http://testserver"
STATIC = files("opsflow.web") / "static"


def _modules() -> list[str]:
    js = STATIC / "js"
    names = [f"js/{p.name}" for p in js.iterdir() if p.name.endswith(".js")]
    names += [f"js/pages/{p.name}" for p in (js / "pages").iterdir() if p.name.endswith(".js")]
    return sorted(names)


async def test_dashboard_page_and_its_modules_are_served(client: httpx.AsyncClient) -> None:
    page = await client.get(f"{ROOT}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in page.text
    for name in ["app.css", "favicon.svg", *_modules()]:
        asset = await client.get(f"{ROOT}/static/{name}")
        assert asset.status_code == 200, name
        assert "script-src 'self';" in asset.headers["content-security-policy"]
        if name.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], name
    missing = await client.get(f"{ROOT}/static/js/nothing.js")
    assert missing.status_code == 404


def test_every_import_resolves_and_nothing_names_another_origin() -> None:
    for name in _modules():
        text = (STATIC / name).read_text(encoding="utf-8")
        folder = name.rsplit("/", 1)[0]
        for target in re.findall(r'from "(\.[^"]+)"', text):
            parts = [*folder.split("/"), *target.split("/")]
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part != ".":
                    resolved.append(part)
            assert (STATIC / "/".join(resolved)).is_file(), (name, target)
        # The SVG namespace is a name, not an address.
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://(?!\$\{)", text), name
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    assert "http" not in index


def test_vendored_libraries_keep_their_licences() -> None:
    for folder, files_needed in {
        "swagger-ui": ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"],
        "redoc": ["redoc.standalone.js", "LICENSE"],
    }.items():
        for name in files_needed:
            assert (STATIC / "vendor" / folder / name).is_file(), (folder, name)
