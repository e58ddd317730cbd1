"""A literal path (`/sla-policies/export`) belongs to its own route even where a
parameterised route (`/sla-policies/{policy_id}`) would match it too: a method the literal
route does not serve is a 405 with `Allow`, not a 400 about an invalid id."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import assert_error


def _shadowed(paths: dict[str, dict[str, object]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, literal path, methods it serves) for every method that a parameterised
    route serves on a path that a literal route owns."""
    found: set[tuple[str, str, tuple[str, ...]]] = set()
    for literal, literal_ops in paths.items():
        for template, ops in paths.items():
            if template == literal or template.count("{") <= literal.count("{"):
                continue
            pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
            if not re.match(pattern, literal) or "{" in literal:
                continue
            allowed = tuple(sorted(m.upper() for m in literal_ops))
            for method in ops:
                if method.upper() not in allowed:
                    found.add((method.upper(), literal, allowed))
    return sorted(found)


async def test_literal_paths_answer_405_for_methods_they_do_not_serve(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    cases = _shadowed(paths)
    labels = {f"{m} {p}" for m, p, _ in cases}
    assert {
        "PATCH /api/v1/sla-policies/export",
        "DELETE /api/v1/sla-policies/export",
        "PATCH /api/v1/sla-policies/import",
        "DELETE /api/v1/sla-policies/simulate",
    } <= labels
    failures = []
    for method, path, allowed in cases:
        response = await client.request(
            method, "http://testserver" + path, headers=admin_headers, json={}
        )
        if response.status_code != 405 or response.headers.get("allow") != ", ".join(allowed):
            failures.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        else:
            assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_allow_names_only_the_literal_routes_methods(
    client: httpx.AsyncClient, admin_headers: dict[str, str], method: str
) -> None:
    response = await client.request(method, "/sla-policies/export", headers=admin_headers)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET"


async def test_ids_are_still_ids(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    """A path that no literal route owns keeps its parameter meaning."""
    response = await client.patch("/sla-policies/not-a-uuid", json={}, headers=admin_headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "policy_id" in [d["field"] for d in error["details"]]


@pytest.mark.parametrize(
    ("segment", "allow"),
    [("0b6f3c1e-8d4a-4f2b-9c3d-5e6f7a8b9c0d", "GET"), ("a-secret-key", "POST")],
)
async def test_two_routes_of_one_path_shape_each_advertise_their_own_methods(
    client: httpx.AsyncClient, admin_headers: dict[str, str], segment: str, allow: str
) -> None:
    """`/integrations/{integration_id}/events` (GET, a UUID) and `/integrations/{key}/events`
    (POST, any other key) share a shape; `Allow` names the methods of the one the path
    belongs to."""
    response = await client.request(
        "OPTIONS", f"/integrations/{segment}/events", headers=admin_headers
    )
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allow


async def test_a_key_path_is_not_read_as_an_integration_id(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get("/integrations/a-secret-key/events", headers=admin_headers)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"
