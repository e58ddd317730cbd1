"""The engine contract: what an engine is, what one pass of it reports, and the registry.

An engine is a background job that acts on what is due in the database: it claims rows
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of processes can run it side by
side), acts on them, commits, and reports. Every engine has the same shape:

* ``name``: how it is selected (``opsflow engine --passes <name>,...``) and logged;
* ``batch``: how many rows one pass claims unless the driver says otherwise;
* ``on_commit``: whether a commit that wrote outbox events can give it work to do at once
  (the relay, and the engines that act at once on what the relay's consumers queue); a
  round that such a commit starts early runs only these (`workers/rounds.py`, `Cadence`);
* ``run(ctx, batch=...)``: one pass, returning a :class:`PassReport`.

The drivers (the loop inside ``opsflow serve``, ``opsflow engine``, the Celery job) never
know which engines exist: they run :func:`opsflow.workers.rounds.run_round` over the
registry that `opsflow.composition.engine_registry` assembles.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from opsflow.context import AppContext


@dataclass
class PassReport:
    """What one pass of one engine did."""

    name: str
    worked: bool = False  # it took something (clocks, events, steps, deliveries)
    backlog: bool = False  # its batch came back full: more may be waiting, run again now
    next_due: datetime | None = None  # the earliest instant something of its kind is due
    counts: dict[str, int] = field(default_factory=dict)  # what it did, by kind
    at: datetime | None = None  # the clock reading the pass acted at (its `now`)
    # Lateness of what it acted on: (kind, seconds from due instant to persisted).
    lags: list[tuple[str, float]] = field(default_factory=list)
    duration_seconds: float = 0.0  # wall time of the pass, set by the round

    @property
    def max_lag_seconds(self) -> float:
        return max((lag for _, lag in self.lags), default=0.0)

    @classmethod
    def of_claim(
        cls,
        name: str,
        claimed: Sized,
        batch: int,
        *,
        next_due: datetime | None,
        counts: dict[str, int],
        at: datetime,
        lags: list[tuple[str, float]] | None = None,
    ) -> PassReport:
        """The report of a pass that claimed `claimed` (at most `batch`) and acted on it:
        it worked if it claimed anything, and a full batch means more may be waiting."""
        return cls(
            name,
            worked=bool(len(claimed)),
            backlog=len(claimed) >= batch,
            next_due=next_due,
            counts=counts,
            at=at,
            lags=[] if lags is None else lags,
        )


class Engine(Protocol):
    """One engine. Implementations are small classes in their domain package
    (`sla/engine.py`, `escalation/engine.py`, ...); they import no service module."""

    @property
    def name(self) -> str: ...

    @property
    def batch(self) -> int: ...

    @property
    def on_commit(self) -> bool: ...

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        """One pass: claim what is due (at most `batch`), act, commit, report."""
        ...


class EngineRegistry:
    """The engines of this installation, in the order a round runs them."""

    def __init__(self, engines: Iterable[Engine]) -> None:
        self._engines = tuple(engines)
        names = [engine.name for engine in self._engines]
        if len(set(names)) != len(names):
            raise ValueError(f"engine names must be unique: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(engine.name for engine in self._engines)

    def __iter__(self) -> Iterator[Engine]:
        return iter(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def get(self, name: str) -> Engine:
        for engine in self._engines:
            if engine.name == name:
                return engine
        raise KeyError(name)

    def select(self, names: Iterable[str]) -> EngineRegistry:
        """The named engines, in round order (the order `names` lists them in is ignored)."""
        wanted = set(names)
        unknown = wanted - set(self.names)
        if unknown:
            raise KeyError(", ".join(sorted(unknown)))
        return EngineRegistry(e for e in self._engines if e.name in wanted)

    def on_commit(self) -> EngineRegistry:
        """The engines a commit that wrote outbox events can give work at once."""
        return EngineRegistry(e for e in self._engines if e.on_commit)

    def parse(self, value: str) -> EngineRegistry:
        """A comma list of engine names, or ``all``; raises ValueError naming the choices."""
        names = {part.strip().lower() for part in value.split(",") if part.strip()}
        if names == {"all"}:
            return self
        unknown = names - set(self.names)
        if unknown or not names:
            raise ValueError(
                f"expected a comma list of {','.join(self.names)} or 'all', got {value!r}"
            )
        return self.select(names)
