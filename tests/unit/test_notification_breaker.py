"""The per-destination circuit breaker: every transition, cooldown growth, the single probe."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from opsflow.notifications.breaker import BreakerConfig, BreakerState, CircuitBreaker

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
KEY = "webhook:https://hooks.example.com:443"
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fail(breaker: CircuitBreaker, times: int, at: datetime = T0, key: str = KEY) -> None:
    for _ in range(times):
        breaker.record(key, False, at)


def test_closed_until_five_consecutive_failures() -> None:
    breaker = CircuitBreaker()
    assert breaker.state(KEY, T0) is CLOSED
    assert breaker.allow(KEY, T0)
    fail(breaker, 4)
    assert breaker.state(KEY, T0) is CLOSED
    assert breaker.allow(KEY, T0)
    fail(breaker, 1)
    assert breaker.state(KEY, T0) is OPEN
    assert not breaker.allow(KEY, T0)
    assert breaker.retry_at(KEY) == s(60)


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 4)
    breaker.record(KEY, True, T0)
    fail(breaker, 4)
    assert breaker.state(KEY, T0) is CLOSED


def test_open_turns_half_open_when_the_cooldown_ends() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    assert breaker.state(KEY, s(59.999)) is OPEN
    assert not breaker.allow(KEY, s(59.999))
    assert breaker.state(KEY, s(60)) is HALF_OPEN


def test_half_open_allows_exactly_one_probe() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    assert breaker.allow(KEY, s(60))
    assert not breaker.allow(KEY, s(60))
    assert not breaker.allow(KEY, s(90))
    # Held deliveries come back when the probe would be presumed lost.
    assert breaker.retry_at(KEY) == s(120)


def test_probe_success_closes() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    assert breaker.allow(KEY, s(60))
    breaker.record(KEY, True, s(61))
    assert breaker.state(KEY, s(61)) is CLOSED
    assert breaker.allow(KEY, s(61))
    assert breaker.retry_at(KEY) is None


def test_probe_failure_reopens_with_a_doubled_cooldown() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    assert breaker.allow(KEY, s(60))
    breaker.record(KEY, False, s(61))
    assert breaker.state(KEY, s(61)) is OPEN
    assert breaker.retry_at(KEY) == s(61 + 120)
    assert not breaker.allow(KEY, s(180))


def test_cooldown_grows_exponentially_up_to_the_maximum() -> None:
    config = BreakerConfig(
        failure_threshold=1, cooldown=timedelta(seconds=10), max_cooldown=timedelta(seconds=100)
    )
    breaker = CircuitBreaker(config)
    now = T0
    cooldowns = []
    for _ in range(7):
        breaker.record(KEY, False, now)
        retry = breaker.retry_at(KEY)
        assert retry is not None
        cooldowns.append((retry - now).total_seconds())
        now = retry
        assert breaker.allow(KEY, now)  # the probe...
    assert cooldowns == [10, 20, 40, 80, 100, 100, 100]


def test_a_success_resets_the_cooldown_growth() -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1))
    breaker.record(KEY, False, T0)
    breaker.allow(KEY, s(60))
    breaker.record(KEY, False, s(60))  # second trip: 120 s
    breaker.allow(KEY, s(180))
    breaker.record(KEY, True, s(180))
    breaker.record(KEY, False, s(200))
    assert breaker.retry_at(KEY) == s(260)


def test_a_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    breaker = CircuitBreaker(BreakerConfig(probe_timeout=timedelta(seconds=30)))
    fail(breaker, 5)
    assert breaker.allow(KEY, s(60))
    assert not breaker.allow(KEY, s(89))
    assert breaker.allow(KEY, s(90))
    assert not breaker.allow(KEY, s(91))


def test_late_failures_while_open_do_not_extend_the_cooldown() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    fail(breaker, 3, at=s(30))
    assert breaker.retry_at(KEY) == s(60)
    assert breaker.state(KEY, s(60)) is HALF_OPEN


def test_late_success_while_open_closes() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    breaker.record(KEY, True, s(1))
    assert breaker.state(KEY, s(1)) is CLOSED


def test_destinations_are_independent() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    assert not breaker.allow(KEY, T0)
    assert breaker.allow("smtp:mail.example.com:587", T0)
    assert breaker.state("smtp:mail.example.com:587", T0) is CLOSED


def test_snapshot_reports_every_known_destination() -> None:
    breaker = CircuitBreaker()
    fail(breaker, 5)
    fail(breaker, 2, key="slack:https://hooks.slack.com:443")
    breaker.record("sms:recording", True, T0)
    assert breaker.snapshot() == {
        KEY: "open",
        "slack:https://hooks.slack.com:443": "closed",
        "sms:recording": "closed",
    }
    assert breaker.snapshot(s(60))[KEY] == "half_open"
    assert breaker.prune() == 1  # sms:recording: closed with no failures
    assert "sms:recording" not in breaker.snapshot()
    breaker.forget(KEY)
    assert breaker.state(KEY, T0) is CLOSED


def test_state_round_trips_through_json() -> None:
    config = BreakerConfig(failure_threshold=2, cooldown=timedelta(seconds=5))
    breaker = CircuitBreaker(config)
    fail(breaker, 2)
    fail(breaker, 1, key="other")
    breaker.allow(KEY, s(5))  # a probe in flight
    data = json.loads(json.dumps(breaker.to_dict()))
    restored = CircuitBreaker.from_dict(data)
    assert restored.config == config
    assert restored.to_dict() == breaker.to_dict()
    assert not restored.allow(KEY, s(6))  # the probe is still in flight
    restored.record(KEY, True, s(6))
    assert restored.state(KEY, s(6)) is CLOSED
    fail(restored, 1, key="other")
    assert restored.state("other", T0) is OPEN
    # An explicit configuration wins over the stored one.
    assert CircuitBreaker.from_dict(data, BreakerConfig()).config == BreakerConfig()


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CircuitBreaker().allow(KEY, datetime(2026, 1, 27))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"cooldown": timedelta(0)}, "positive"),
        ({"probe_timeout": timedelta(seconds=-1)}, "positive"),
        ({"cooldown_factor": 0.5}, "cooldown_factor"),
        ({"max_cooldown": timedelta(seconds=1)}, "max_cooldown"),
    ],
)
def test_invalid_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]
