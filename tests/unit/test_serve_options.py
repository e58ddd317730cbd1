"""What `opsflow serve` hands uvicorn (uvicorn itself replaced: pure wiring)."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn

from opsflow import cli
from opsflow.config import Settings


def test_serve_bounds_its_shutdown_and_streams_without_deflate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: seen.update(options))
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:", shutdown_timeout_seconds=4)
    cli._run_uvicorn(settings, "127.0.0.1", 8000, 1, False)
    assert seen["timeout_graceful_shutdown"] == 4
    assert seen["ws_per_message_deflate"] is False
