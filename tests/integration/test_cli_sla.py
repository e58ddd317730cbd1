"""`opsflow sla import` / `opsflow sla export` as real processes on an embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from opsflow.sla_config.yaml_format import parse_sla_config

CONFIG = """
sla_targets:
  PREMIUM:
    P1: {response_minutes: 120, resolution_minutes: 480}
alert_thresholds: {warning: 20, critical: 5}
opsflow:
  calendars:
    office:
      timezone: America/New_York
      hours: {mon: ["09:00-17:00"], fri: ["09:00-12:00"]}
      holidays: [2026-07-03]
"""


def opsflow(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'cli.db'}",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "opsflow", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_then_export_gives_the_file_back(tmp_path: Path) -> None:
    source = tmp_path / "sla_config.yaml"
    source.write_text(CONFIG, "utf-8")
    dry = opsflow(tmp_path, "sla", "import", str(source), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would apply 3 change(s)" in dry.stdout  # policy, calendar, thresholds
    applied = opsflow(tmp_path, "sla", "import", str(source))
    assert applied.returncode == 0, applied.stderr
    assert "added policy premium-p1" in applied.stdout
    again = opsflow(tmp_path, "sla", "import", str(source), "--mode", "replace")
    assert "applied 0 change(s)" in again.stdout

    target = tmp_path / "exported.yaml"
    exported = opsflow(tmp_path, "sla", "export", "--output", str(target))
    assert exported.returncode == 0, exported.stderr
    text = target.read_text("utf-8")
    assert parse_sla_config(text) == parse_sla_config(CONFIG)
    assert yaml.safe_load(text)["sla_targets"] == yaml.safe_load(CONFIG)["sla_targets"]


def test_an_invalid_file_is_reported_and_exits_1(tmp_path: Path) -> None:
    source = tmp_path / "broken.yaml"
    source.write_text("sla_targets:\n  PREMIUM:\n    P9: {response_minutes: 5}\n", "utf-8")
    result = opsflow(tmp_path, "sla", "import", str(source))
    assert result.returncode == 1
    assert "P9" in result.stderr
    assert "Traceback" not in result.stderr
