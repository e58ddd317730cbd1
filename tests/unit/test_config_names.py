"""Configuration names: the plain names deployments carry over are aliases of the OPSFLOW_
settings (the prefixed one wins), and a start warns about OPSFLOW_* variables nothing reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from opsflow.app import create_app
from opsflow.config import Settings, current_environment, environment_warnings, known_variables
from tests.conftest import make_settings

# plain name, its OPSFLOW_ setting, the field, a value, another value
ALIASES = [
    ("SMTP_HOST", "OPSFLOW_SMTP_HOST", "smtp_host", "mail.example.com", "relay.example.com"),
    ("SMTP_PORT", "OPSFLOW_SMTP_PORT", "smtp_port", "2525", "587"),
    ("SMTP_USER", "OPSFLOW_SMTP_USERNAME", "smtp_username", "mailer", "relay-user"),
    ("SMTP_PASSWORD", "OPSFLOW_SMTP_PASSWORD", "smtp_password", "s3cret", "other-secret"),
    ("EMAIL_FROM", "OPSFLOW_SMTP_FROM", "smtp_from", "ops@example.com", "noc@example.com"),
    (
        "SLACK_WEBHOOK_URL",
        "OPSFLOW_SLACK_WEBHOOK_URL",
        "slack_webhook_url",
        "https://hooks.slack.com/services/T/B/one",
        "https://hooks.slack.com/services/T/B/two",
    ),
    (
        "CELERY_BROKER_URL",
        "OPSFLOW_CELERY_BROKER_URL",
        "celery_broker_url",
        "redis://broker:6379/1",
        "redis://other:6379/2",
    ),
    (
        "REDIS_URL",
        "OPSFLOW_CELERY_BROKER_URL",
        "celery_broker_url",
        "redis://cache:6379/3",
        "redis://other:6379/4",
    ),
]
ALL_NAMES = {name for alias in ALIASES for name in alias[:2]}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_NAMES | {"SMTP_USERNAME", "SMTP_FROM"}:
        monkeypatch.delenv(name, raising=False)


def _read() -> Settings:
    return Settings(_env_file=None)


@pytest.mark.parametrize(("plain", "prefixed", "field", "value", "other"), ALIASES)
def test_plain_name_sets_the_setting(
    monkeypatch: pytest.MonkeyPatch, plain: str, prefixed: str, field: str, value: str, other: str
) -> None:
    monkeypatch.setenv(plain, value)
    assert str(getattr(_read(), field)) == value


@pytest.mark.parametrize(("plain", "prefixed", "field", "value", "other"), ALIASES)
def test_prefixed_name_wins(
    monkeypatch: pytest.MonkeyPatch, plain: str, prefixed: str, field: str, value: str, other: str
) -> None:
    monkeypatch.setenv(plain, value)
    monkeypatch.setenv(prefixed, other)
    assert str(getattr(_read(), field)) == other


def test_celery_broker_url_wins_over_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/3")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker:6379/1")
    assert _read().celery_broker_url == "redis://broker:6379/1"


def test_every_alias_is_a_known_variable() -> None:
    assert known_variables() >= ALL_NAMES


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("OPSFLOW_SMTP_HOTS", "OPSFLOW_SMTP_HOST"),
        ("OPSFLOW_SMTP_USER", "OPSFLOW_SMTP_USERNAME"),
        ("OPSFLOW_ADMIN_PASWORD", "OPSFLOW_ADMIN_PASSWORD"),
        ("opsflow_engine_batchsize", "OPSFLOW_ENGINE_BATCH_SIZE"),
    ],
)
def test_unknown_prefixed_variable_is_named_with_the_closest_setting(
    name: str, suggestion: str
) -> None:
    (warning,) = environment_warnings({name: "x", "PATH": "/bin"})
    assert warning.startswith(f"{name} is not an OpsFlow setting")
    assert warning.endswith(f"did you mean {suggestion}?")


def test_known_tooling_and_foreign_variables_raise_no_warning() -> None:
    environ = {
        "OPSFLOW_SMTP_HOST": "x",
        "opsflow_smtp_port": "25",
        "SMTP_USER": "x",
        "OPSFLOW_TEST_DATABASE_URL": "x",
        "HOME": "/root",
        "DATABASE_URL": "x",
    }
    assert environment_warnings(environ) == []


def test_far_off_unknown_variable_gets_no_suggestion() -> None:
    (warning,) = environment_warnings({"OPSFLOW_QWERTYUIOP": "1"})
    assert warning == "OPSFLOW_QWERTYUIOP is not an OpsFlow setting and is ignored"


@pytest.mark.parametrize("name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"])
def test_tracing_variables_are_read(name: str) -> None:
    assert environment_warnings({name: "http://127.0.0.1:4318"}) == []


def test_test_tooling_variables_are_not_reported() -> None:
    assert environment_warnings({"OPSFLOW_CHAOS": "1", "OPSFLOW_CI": "1"}) == []


def test_rate_limit_per_minute_is_read() -> None:
    assert environment_warnings({"RATE_LIMIT_PER_MINUTE": "100"}) == []
    assert Settings(RATE_LIMIT_PER_MINUTE="100").rate_limit_per_minute == 100


def test_dotenv_file_counts_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPSFLOW_SMTP_HOTS=mail\n")
    monkeypatch.delenv("OPSFLOW_SMTP_HOTS", raising=False)
    warnings = environment_warnings(current_environment(env_file))
    assert any("did you mean OPSFLOW_SMTP_HOST?" in w for w in warnings)


async def test_start_warns_about_a_misspelt_setting(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSFLOW_ENGIN_ENABLED", "false")
    settings = make_settings(database_url)
    application = create_app(settings)
    with structlog.testing.capture_logs() as logs:
        async with application.router.lifespan_context(application):
            pass
    warnings = [entry for entry in logs if entry["event"] == "configuration_warning"]
    assert [w["message"] for w in warnings] == [
        "OPSFLOW_ENGIN_ENABLED is not an OpsFlow setting and is ignored;"
        " did you mean OPSFLOW_ENGINE_ENABLED?"
    ]
    assert warnings[0]["log_level"] == "warning"
