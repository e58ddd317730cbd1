"""A circuit breaker per destination (pure state machine; time is always passed in).

A circuit breaker per destination stops hammering a dead endpoint without consuming
attempts. The dispatcher asks :meth:`CircuitBreaker.allow` before an attempt;
when it says no, the notification is *held* — rescheduled to :meth:`CircuitBreaker.retry_at`
without counting an attempt — and after the attempt it reports the outcome with
:meth:`CircuitBreaker.record`.

States of one destination::

    CLOSED --N consecutive failures--> OPEN --cooldown elapsed--> HALF_OPEN
    HALF_OPEN --one probe allowed; success--> CLOSED
    HALF_OPEN --probe fails--> OPEN (cooldown x factor, up to max_cooldown)

OPEN becomes HALF_OPEN by the passage of time alone, so :meth:`state` needs ``now``.
In HALF_OPEN exactly one caller gets ``allow() == True`` (the probe); everyone else is held
until the probe reports. A probe that never reports (its process died) is presumed lost
after ``probe_timeout`` and another probe is allowed.

The whole state is plain data (:meth:`to_dict` / :meth:`from_dict`) so it can later live in
Redis or a database row shared by several workers; this module holds no global state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5
    cooldown: timedelta = timedelta(seconds=60)
    cooldown_factor: float = 2.0
    max_cooldown: timedelta = timedelta(minutes=15)
    probe_timeout: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.cooldown <= timedelta(0) or self.probe_timeout <= timedelta(0):
            raise ValueError("cooldown and probe_timeout must be positive")
        if self.cooldown_factor < 1:
            raise ValueError("cooldown_factor must be at least 1")
        if self.max_cooldown < self.cooldown:
            raise ValueError("max_cooldown must not be shorter than cooldown")

    def cooldown_after(self, trips: int) -> timedelta:
        """Cooldown after the ``trips``-th consecutive trip (1 = first)."""
        try:
            seconds = self.cooldown.total_seconds() * self.cooldown_factor ** max(trips - 1, 0)
        except OverflowError:
            return self.max_cooldown
        return min(timedelta(seconds=seconds), self.max_cooldown)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failure_threshold": self.failure_threshold,
            "cooldown_seconds": self.cooldown.total_seconds(),
            "cooldown_factor": self.cooldown_factor,
            "max_cooldown_seconds": self.max_cooldown.total_seconds(),
            "probe_timeout_seconds": self.probe_timeout.total_seconds(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerConfig:
        return cls(
            failure_threshold=int(data["failure_threshold"]),
            cooldown=timedelta(seconds=float(data["cooldown_seconds"])),
            cooldown_factor=float(data["cooldown_factor"]),
            max_cooldown=timedelta(seconds=float(data["max_cooldown_seconds"])),
            probe_timeout=timedelta(seconds=float(data["probe_timeout_seconds"])),
        )


@dataclass(frozen=True)
class Circuit:
    """What the breaker knows about one destination."""

    failures: int = 0
    """Consecutive failures since the last success (drives the trip while CLOSED)."""
    trips: int = 0
    """Consecutive trips without a success in between (drives the cooldown growth)."""
    opened_at: datetime | None = None
    retry_at: datetime | None = None
    """End of the current cooldown; meaningful while the circuit is open."""
    probe_started_at: datetime | None = None

    def state(self, now: datetime) -> BreakerState:
        if self.opened_at is None or self.retry_at is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self.retry_at else BreakerState.HALF_OPEN

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "trips": self.trips,
            "opened_at": _iso(self.opened_at),
            "retry_at": _iso(self.retry_at),
            "probe_started_at": _iso(self.probe_started_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Circuit:
        return cls(
            failures=int(data.get("failures", 0)),
            trips=int(data.get("trips", 0)),
            opened_at=_parse(data.get("opened_at")),
            retry_at=_parse(data.get("retry_at")),
            probe_started_at=_parse(data.get("probe_started_at")),
        )


_CLOSED = Circuit()


class CircuitBreaker:
    """Circuit breakers for any number of destinations, keyed by a destination string."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self._circuits: dict[str, Circuit] = {}

    def circuit(self, key: str) -> Circuit:
        return self._circuits.get(key, _CLOSED)

    def state(self, key: str, now: datetime) -> BreakerState:
        return self.circuit(key).state(_aware(now))

    def allow(self, key: str, now: datetime) -> bool:
        """May an attempt to ``key`` go out at ``now``? In HALF_OPEN, grants the one probe."""
        now = _aware(now)
        circuit = self.circuit(key)
        state = circuit.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        probe = circuit.probe_started_at
        if probe is not None and now < probe + self.config.probe_timeout:
            return False  # a probe is in flight: wait for its verdict
        self._circuits[key] = replace(circuit, probe_started_at=now)
        return True

    def record(self, key: str, ok: bool, now: datetime) -> None:
        """Report the outcome of an attempt to ``key`` that finished at ``now``."""
        now = _aware(now)
        circuit = self.circuit(key)
        if ok:
            # Any success proves the destination works, including a late answer to a
            # request sent before the circuit opened.
            self._circuits[key] = _CLOSED
            return
        state = circuit.state(now)
        if state is BreakerState.CLOSED:
            failures = circuit.failures + 1
            if failures >= self.config.failure_threshold:
                self._circuits[key] = self._trip(circuit, now, failures)
            else:
                self._circuits[key] = replace(circuit, failures=failures)
        elif state is BreakerState.HALF_OPEN:
            self._circuits[key] = self._trip(circuit, now, circuit.failures + 1)
        else:
            # OPEN: a late failure of a request sent before the trip. It says nothing new
            # and must not extend the cooldown.
            self._circuits[key] = replace(circuit, failures=circuit.failures + 1)

    def retry_at(self, key: str) -> datetime | None:
        """Earliest instant an attempt to ``key`` may be allowed; None while CLOSED.

        Held deliveries are rescheduled to ``max(now, retry_at)``. While a probe is in
        flight it is the moment the probe would be presumed lost.
        """
        circuit = self.circuit(key)
        if circuit.opened_at is None or circuit.retry_at is None:
            return None
        if circuit.probe_started_at is not None:
            return max(circuit.retry_at, circuit.probe_started_at + self.config.probe_timeout)
        return circuit.retry_at

    def snapshot(self, now: datetime | None = None) -> dict[str, str]:
        """``{key: state}`` for metrics. Without ``now`` an expired cooldown still reads
        ``open`` (only time turns it half-open)."""
        result: dict[str, str] = {}
        for key, circuit in sorted(self._circuits.items()):
            if now is not None:
                result[key] = circuit.state(_aware(now)).value
            elif circuit.opened_at is None:
                result[key] = BreakerState.CLOSED.value
            else:
                result[key] = BreakerState.OPEN.value
        return result

    def forget(self, key: str) -> None:
        """Drop a destination (deleted subscription): it starts CLOSED if seen again."""
        self._circuits.pop(key, None)

    def prune(self) -> int:
        """Drop closed circuits without recent failures; returns how many went."""
        idle = [key for key, circuit in self._circuits.items() if circuit == _CLOSED]
        for key in idle:
            del self._circuits[key]
        return len(idle)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "circuits": {key: c.to_dict() for key, c in sorted(self._circuits.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: BreakerConfig | None = None) -> CircuitBreaker:
        """Restore a breaker; ``config`` overrides the stored configuration."""
        stored = data.get("config")
        breaker = cls(config or (BreakerConfig.from_dict(stored) if stored else None))
        for key, circuit in (data.get("circuits") or {}).items():
            breaker._circuits[str(key)] = Circuit.from_dict(circuit)
        return breaker

    def _trip(self, circuit: Circuit, now: datetime, failures: int) -> Circuit:
        trips = circuit.trips + 1
        return Circuit(
            failures=failures,
            trips=trips,
            opened_at=now,
            retry_at=now + self.config.cooldown_after(trips),
            probe_started_at=None,
        )


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return _aware(parsed)
