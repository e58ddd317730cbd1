"""`opsflow reports rebuild` as a real process on an embedded database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_reports_rebuild_migrates_and_reports_what_it_changed(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "opsflow", "reports", "rebuild"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "rebuilt: 0 task(s), clock(s) and rollup group(s) changed"
