"""Hot reload of ``OPSFLOW_SLA_CONFIG`` (an ``sla_config.yaml``).

The file owns the SLA configuration: it is applied (``replace``) when the process starts —
an invalid file then stops the start, loudly — and again every time it changes on disk.
An invalid edit is logged with every problem and changes nothing: the last good
configuration stays in force. Each applied change is audited per policy, calendar and
setting (actor ``sla-config-file``), exactly like an import.

The parent directory is watched (``watchfiles``), not the file itself, so editors and
deployment tools that replace the file by renaming a new one over it are seen too. Several
processes may watch the same file: configuration changes are serialised on the settings
row and an unchanged file produces no changes, so each edit is recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import watchfiles

from opsflow.auth.principal import Principal
from opsflow.config import ConfigError
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.errors import ValidationFailed
from opsflow.observability.logging import get_logger
from opsflow.sla_config import service
from opsflow.sla_config.service import Applied

log = get_logger("opsflow.sla_config")
ACTOR = Principal.system("sla-config-file")


class SlaConfigWatcher:
    def __init__(self, ctx: AppContext, path: Path, *, debounce_ms: int = 200) -> None:
        self.ctx = ctx
        self.path = path.resolve()
        self.debounce_ms = debounce_ms
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Reloads that changed something, and edits refused as invalid (tests, logs).
        self.applied = 0
        self.rejected = 0

    async def apply_file(self) -> Applied:
        """Read, validate and apply the file. Raises ValidationFailed / OSError."""
        text = await asyncio.to_thread(self.path.read_text, "utf-8")
        config = service.parse(text)
        async with unit_of_work(self.ctx.sessions) as session:
            applied = await service.apply_config(
                session,
                ACTOR,
                config,
                self.ctx.clock.now(),
                mode="replace",
                source=service.SOURCE_FILE,
                origin=str(self.path),
            )
        if applied.changes:
            self.applied += 1
            log.info(
                "sla_config_applied",
                file=str(self.path),
                revision=applied.revision,
                changes=len(applied.changes),
                policies=applied.policies,
                calendars=applied.calendars,
            )
        return applied

    async def start(self) -> None:
        """Apply the file now (failing loudly), then follow its changes."""
        try:
            await self.apply_file()
        except ValidationFailed as exc:
            raise ConfigError(f"OPSFLOW_SLA_CONFIG {self.path}: {_problems(exc)}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"OPSFLOW_SLA_CONFIG {self.path}: {exc}") from exc
        self._task = asyncio.create_task(self._loop(), name="opsflow-sla-config-watcher")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _is_ours(self, _change: watchfiles.Change, path: str) -> bool:
        return Path(path).name == self.path.name

    async def _loop(self) -> None:
        async for _changes in watchfiles.awatch(
            self.path.parent,
            watch_filter=self._is_ours,
            stop_event=self._stop,
            debounce=self.debounce_ms,
            recursive=False,
        ):
            try:
                await self.apply_file()
            except ValidationFailed as exc:
                self.rejected += 1
                log.error("sla_config_rejected", file=str(self.path), problems=_problems(exc))
            except (OSError, UnicodeDecodeError) as exc:
                # Deleted or mid-replacement: the next event brings the new file.
                log.warning("sla_config_unreadable", file=str(self.path), error=str(exc))
            except Exception:  # the watcher must survive anything a reload does
                log.exception("sla_config_reload_failed", file=str(self.path))


def _problems(exc: ValidationFailed) -> str:
    return "; ".join(f"{d.get('field')}: {d.get('message')}" for d in exc.details or [])
