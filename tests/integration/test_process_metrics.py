"""Metrics from every process, scraped for real and checked by `promtool check metrics`.

An `opsflow engine` serves its own instruments on OPSFLOW_METRICS_PORT; `opsflow serve
--workers 2` answers /metrics from either worker with the counters of both (prometheus
multiprocess files in PROMETHEUS_MULTIPROC_DIR, managed by OpsFlow).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Engines, free_port, opsflow_serve_workers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ADMIN_PASSWORD = "Metrics-Admin-Pass-1"


def _promtool_accepts(exposition: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed (Debian package prometheus)"
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _sample(exposition: str, name: str, match: Callable[[dict[str, str]], bool]) -> float:
    """The sum of the samples `name` whose labels `match`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and match(sample.labels)
    )


def _until(what: str, found: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not found():
        assert time.monotonic() < deadline, f"not seen within {seconds} s: {what}"
        time.sleep(0.1)  # polling a process, not waiting on a deadline


def test_engine_process_serves_its_own_metrics(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    engines = Engines(
        database_url,
        tmp_path,
        batch=100,
        arguments=["--passes", "all", "--interval", "0.2"],
        env={"OPSFLOW_METRICS_PORT": str(port), "OPSFLOW_METRICS_HOST": "127.0.0.1"},
    )
    try:
        engine = engines.start()
        scraped: list[str] = []

        def relay_passes() -> bool:
            assert engine.alive(), engines.report()
            try:
                scraped.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
            except httpx.HTTPError:
                return False
            return (
                _sample(
                    scraped[-1],
                    "opsflow_engine_passes_total",
                    lambda labels: labels == {"engine": "relay", "outcome": "ok"},
                )
                >= 2
            )

        _until("two relay passes counted on the engine's port", relay_passes)
        _promtool_accepts(scraped[-1])
    finally:
        engines.close()


def _per_process_count(directory: Path, route: str) -> dict[str, float]:
    """GET `route` requests counted by each process, from its own multiprocess files."""
    counts: dict[str, float] = {}
    for path in directory.glob("histogram_*.db"):
        pid = path.stem.rsplit("_", 1)[1]
        counts[pid] = sum(
            sample.value
            for metric in MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
                [str(path)], accumulate=True
            )
            for sample in metric.samples
            if sample.name == "opsflow_http_request_duration_seconds_count"
            and sample.labels.get("route") == route
            and sample.labels.get("method") == "GET"
        )
    return counts


def test_serve_workers_answer_metrics_for_all_of_them(database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"left by an earlier run")  # must be cleared
    with opsflow_serve_workers(
        tmp_path, database_url, ADMIN_PASSWORD, 2, PROMETHEUS_MULTIPROC_DIR=str(directory)
    ) as base:
        route = "/health"
        sent = 0
        # new connections until each worker has answered some (the kernel picks the worker)
        while sum(1 for count in _per_process_count(directory, route).values() if count) < 2:
            assert sent < 500, _per_process_count(directory, route)
            assert httpx.get(f"{base}{route}", timeout=10).status_code == 200
            sent += 1
        # A worker counts a request once its answer is sent, so the client can read the
        # answer before the worker's file counts it: wait (bounded) for the last one.
        for _ in range(100):
            per_process = _per_process_count(directory, route)
            if sum(per_process.values()) >= sent:
                break
            time.sleep(0.1)
        exposition = httpx.get(f"{base}/metrics", timeout=10).text
    total = _sample(
        exposition,
        "opsflow_http_request_duration_seconds_count",
        lambda labels: labels.get("route") == route and labels.get("method") == "GET",
    )
    assert total == sent == sum(per_process.values())
    assert len([pid for pid, count in per_process.items() if count]) == 2
    assert "opsflow_active_tasks" in exposition  # the database series are there too
    _promtool_accepts(exposition)
    print(f"{sent} requests, per worker {sorted(per_process.values())}")
