"""GET /metrics: Prometheus text with the documented metric names."""

from __future__ import annotations

from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from opsflow.clock import SettableClock
from opsflow.context import AppContext
from opsflow.sla.engine import SlaEngine
from tests.conftest import T0


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_expose_tasks_breaches_latency_and_completions(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clock: SettableClock,
    app_context: AppContext,
) -> None:
    body = {"title": "x", "task_type": "INCIDENT", "priority": "CRITICAL", "start_sla_minutes": 15}
    first = (await client.post("/tasks", json=body, headers=admin_headers)).json()["id"]
    await client.post("/tasks", json=body, headers=admin_headers)
    clock.set(T0 + timedelta(minutes=5))
    await client.patch(f"/tasks/{first}/start", headers=admin_headers)
    clock.set(T0 + timedelta(minutes=20))
    await client.patch(f"/tasks/{first}/complete", json={}, headers=admin_headers)
    await SlaEngine().run(app_context, batch=500)

    response = await client.get("http://testserver/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples[("opsflow_tasks_created_total", ())] == 2
    assert samples[("opsflow_active_tasks", (("status", "completed"),))] == 1
    assert samples[("opsflow_active_tasks", (("status", "created"),))] == 1
    assert samples[("opsflow_sla_breaches_total", (("breach_type", "start"),))] == 1
    assert samples[("opsflow_outbox_backlog", ())] > 0
    completion = (
        "opsflow_task_completion_duration_seconds_sum",
        (("priority", "CRITICAL"), ("task_type", "INCIDENT")),
    )
    assert samples[completion] == 20 * 60
    created = (
        "opsflow_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/api/v1/tasks"), ("status", "201")),
    )
    assert samples[created] == 2


async def test_rolled_back_completion_is_not_observed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: SettableClock
) -> None:
    body = {"title": "x", "task_type": "TASK", "priority": "LOW"}
    task_id = (await client.post("/tasks", json=body, headers=admin_headers)).json()["id"]
    await client.patch(f"/tasks/{task_id}/start", headers=admin_headers)
    stale = await client.patch(
        f"/tasks/{task_id}/complete", json={}, headers={**admin_headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    samples = _samples((await client.get("/metrics")).text)
    assert not any(
        name == "opsflow_task_completion_duration_seconds_count" and value > 0
        for (name, _), value in samples.items()
    )
