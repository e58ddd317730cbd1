"""Configuration: one Settings object read from the environment and `.env`.

Names follow the seeds (`DATABASE_URL`, `JWT_SECRET_KEY`, ...); OpsFlow's own
settings carry the `OPSFLOW_` prefix. See the README for the full table.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, TypedDict

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me-insecure-development-secret"


class ConfigError(RuntimeError):
    """Raised when the configuration is unsafe or inconsistent."""


def _env(name: str, *aliases: str) -> AliasChoices:
    """The variable `name`, then each alias in order: the first one that is set wins, so an
    `OPSFLOW_` name always beats the plain name deployments may carry over."""
    return AliasChoices(*(choice for n in (name, *aliases) for choice in (n, n.lower())))


class EngineOptions(TypedDict):
    """The keyword arguments of `db.create_engine` that come from the settings."""

    sqlite_busy_timeout_ms: int
    pool_size: int
    max_overflow: int
    pool_timeout: float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    app_env: Literal["development", "production", "test"] = Field(
        "development", validation_alias=_env("APP_ENV")
    )
    database_url: str = Field(
        "sqlite+aiosqlite:///./opsflow.db", validation_alias=_env("DATABASE_URL")
    )

    jwt_secret_key: str = Field(DEFAULT_JWT_SECRET, validation_alias=_env("JWT_SECRET_KEY"))
    jwt_algorithm: Literal["HS256", "HS384", "HS512", "RS256"] = Field(
        "HS256", validation_alias=_env("JWT_ALGORITHM")
    )
    jwt_private_key_file: Path | None = Field(
        None, validation_alias=_env("OPSFLOW_JWT_PRIVATE_KEY_FILE")
    )
    jwt_public_key_file: Path | None = Field(
        None, validation_alias=_env("OPSFLOW_JWT_PUBLIC_KEY_FILE")
    )
    access_token_expire_minutes: int = Field(
        30, ge=1, le=1440, validation_alias=_env("ACCESS_TOKEN_EXPIRE_MINUTES")
    )
    refresh_token_expire_days: int = Field(
        14, ge=1, le=365, validation_alias=_env("REFRESH_TOKEN_EXPIRE_DAYS")
    )
    # How long a process trusts what it last read about a token's user/session/client;
    # other processes see a revocation within this window (see auth/cache.py).
    auth_cache_seconds: float = Field(
        5.0, ge=0, le=60, validation_alias=_env("OPSFLOW_AUTH_CACHE_SECONDS")
    )

    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    log_json: bool = Field(True, validation_alias=_env("OPSFLOW_LOG_JSON"))
    # NoDecode: the value is a comma-separated list, not JSON.
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("ALLOWED_ORIGINS")
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, validation_alias=_env("OPSFLOW_MAX_REQUEST_BYTES")
    )
    # Batch ingestion (POST /tickets, up to 1,000 tickets) takes bigger bodies.
    max_batch_request_bytes: int = Field(
        16 * 1_048_576, ge=1024, validation_alias=_env("OPSFLOW_MAX_BATCH_REQUEST_BYTES")
    )

    admin_username: str = Field("admin", validation_alias=_env("OPSFLOW_ADMIN_USERNAME"))
    admin_email: str = Field("admin@opsflow.local", validation_alias=_env("OPSFLOW_ADMIN_EMAIL"))
    admin_password: str | None = Field(None, validation_alias=_env("OPSFLOW_ADMIN_PASSWORD"))
    data_dir: Path = Field(Path("./opsflow-data"), validation_alias=_env("OPSFLOW_DATA_DIR"))

    # argon2id cost; the defaults are argon2-cffi's RFC 9106 "low memory" profile.
    password_time_cost: int = Field(3, ge=1, validation_alias=_env("OPSFLOW_PASSWORD_TIME_COST"))
    password_memory_cost_kib: int = Field(
        65536, ge=8, validation_alias=_env("OPSFLOW_PASSWORD_MEMORY_COST_KIB")
    )
    # At most this many password hashes (logins, password changes, API-client secrets) run
    # at once per process, each allocating the memory cost above; up to the queue more wait,
    # further ones are answered 503 with Retry-After at once.
    password_hash_concurrency: int = Field(
        4, ge=1, le=256, validation_alias=_env("OPSFLOW_PASSWORD_HASH_CONCURRENCY")
    )
    password_hash_queue: int = Field(
        32, ge=0, le=10_000, validation_alias=_env("OPSFLOW_PASSWORD_HASH_QUEUE")
    )
    login_max_failures_per_username: int = Field(
        10, ge=1, validation_alias=_env("OPSFLOW_LOGIN_MAX_FAILURES_PER_USERNAME")
    )
    login_max_failures_per_ip: int = Field(
        50, ge=1, validation_alias=_env("OPSFLOW_LOGIN_MAX_FAILURES_PER_IP")
    )
    # Request rate limits per minute and fixed window (see auth/ratelimit.py): reads per
    # principal (the default), writes per principal, the login endpoints per client address.
    rate_limit_enabled: bool = Field(True, validation_alias=_env("OPSFLOW_RATE_LIMIT_ENABLED"))
    rate_limit_per_minute: int = Field(
        600,
        ge=1,
        validation_alias=_env("OPSFLOW_RATE_LIMIT_PER_MINUTE", "RATE_LIMIT_PER_MINUTE"),
    )
    rate_limit_writes_per_minute: int = Field(
        120, ge=1, validation_alias=_env("OPSFLOW_RATE_LIMIT_WRITES_PER_MINUTE")
    )
    rate_limit_login_per_minute: int = Field(
        60, ge=1, validation_alias=_env("OPSFLOW_RATE_LIMIT_LOGIN_PER_MINUTE")
    )
    # Strict-Transport-Security max-age; 0 sends none. Set it when clients reach OpsFlow
    # over TLS only (directly or through a TLS-terminating proxy).
    hsts_max_age_seconds: int = Field(
        0, ge=0, le=2 * 365 * 86400, validation_alias=_env("OPSFLOW_HSTS_MAX_AGE_SECONDS")
    )
    ws_max_connections_per_user: int = Field(
        5, ge=1, le=1000, validation_alias=_env("OPSFLOW_WS_MAX_CONNECTIONS_PER_USER")
    )
    ws_send_queue: int = Field(
        256, ge=1, le=100_000, validation_alias=_env("OPSFLOW_WS_SEND_QUEUE")
    )
    # Bytes a WebSocket's transport may hold unsent before the hub closes it (1013)
    # instead of writing it another event.
    ws_write_buffer_bytes: int = Field(
        256 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        validation_alias=_env("OPSFLOW_WS_WRITE_BUFFER_BYTES"),
    )
    # Bytes the transports of all of a process's WebSockets may hold unsent together;
    # past it the connections holding the most are dropped (their clients resume with
    # `since`), so memory stays bounded however many clients read slowly.
    ws_buffer_budget_bytes: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024 * 1024,
        validation_alias=_env("OPSFLOW_WS_BUFFER_BUDGET_BYTES"),
    )
    # How long `serve` waits, once told to stop, for open connections (WebSockets whose
    # clients read slowly hold their close frame behind what they have not read) before it
    # cancels what is left and stops.
    shutdown_timeout_seconds: int = Field(
        10, ge=1, le=3600, validation_alias=_env("OPSFLOW_SHUTDOWN_TIMEOUT_SECONDS")
    )
    # Freeze what start-up built out of the garbage collector's scans and collect young
    # objects less often (kit/gctune.py): many open WebSockets make full scans costly.
    gc_tuning: bool = Field(True, validation_alias=_env("OPSFLOW_GC_TUNING"))
    # How long relayed outbox events are kept: the WebSocket stream's replay window (a
    # client resuming from an older id is told to resync).
    outbox_retention_hours: float = Field(
        24.0, gt=0, le=24 * 366, validation_alias=_env("OPSFLOW_OUTBOX_RETENTION_HOURS")
    )
    # Relayed events waiting in a process's bus for its sockets (or for Redis); past it the
    # backlog is read back from the outbox instead of held in memory.
    ws_bus_queue: int = Field(
        10_000, ge=1, le=1_000_000, validation_alias=_env("OPSFLOW_WS_BUS_QUEUE")
    )
    ws_auth_timeout_seconds: float = Field(
        10.0, gt=0, le=300, validation_alias=_env("OPSFLOW_WS_AUTH_TIMEOUT_SECONDS")
    )
    ws_ping_interval_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("OPSFLOW_WS_PING_INTERVAL_SECONDS")
    )
    engine_enabled: bool = Field(True, validation_alias=_env("OPSFLOW_ENGINE_ENABLED"))
    # The longest wait between two engine rounds. Commits that write outbox events wake the
    # relay at once (events/wake.py), so this is the safety net, not the relay's latency.
    engine_interval_seconds: float = Field(
        1.0, gt=0, le=3600, validation_alias=_env("OPSFLOW_ENGINE_INTERVAL_SECONDS")
    )
    # On PostgreSQL, a transaction that writes outbox events also notifies the engine loops
    # of other processes (pg_notify), which listen on a connection of their own.
    outbox_notify: bool = Field(True, validation_alias=_env("OPSFLOW_OUTBOX_NOTIFY"))
    engine_batch_size: int = Field(
        500, ge=1, le=10_000, validation_alias=_env("OPSFLOW_ENGINE_BATCH_SIZE")
    )
    # PostgreSQL connections per process. Requests past the pool wait for a connection
    # (up to db_pool_timeout_seconds, then 503) rather than opening more: an overflow
    # connection is closed as soon as the pool has enough idle ones, so under steady load
    # past the pool it is opened and closed again and again (a backend started per
    # request, and every statement prepared anew on it).
    db_pool_size: int = Field(20, ge=1, le=500, validation_alias=_env("OPSFLOW_DB_POOL_SIZE"))
    db_max_overflow: int = Field(0, ge=0, le=500, validation_alias=_env("OPSFLOW_DB_MAX_OVERFLOW"))
    db_pool_timeout_seconds: float = Field(
        30.0, gt=0, le=600, validation_alias=_env("OPSFLOW_DB_POOL_TIMEOUT_SECONDS")
    )
    # How long an SQLite writer waits for the write lock before the request answers 503.
    sqlite_busy_timeout_ms: int = Field(
        10_000, ge=0, le=600_000, validation_alias=_env("OPSFLOW_SQLITE_BUSY_TIMEOUT_MS")
    )
    auto_migrate: bool = Field(True, validation_alias=_env("OPSFLOW_AUTO_MIGRATE"))
    # An sla_config.yaml that owns the SLA policies and calendars: applied at start
    # and on every change (hot reload); the API then refuses to edit them.
    sla_config_path: Path | None = Field(None, validation_alias=_env("OPSFLOW_SLA_CONFIG"))

    # Notifications. Without an SMTP host, e-mail is written to the outbox folder.
    public_url: str = Field("http://127.0.0.1:8000", validation_alias=_env("OPSFLOW_PUBLIC_URL"))
    smtp_host: str | None = Field(None, validation_alias=_env("OPSFLOW_SMTP_HOST", "SMTP_HOST"))
    smtp_port: int | None = Field(
        None, ge=1, le=65535, validation_alias=_env("OPSFLOW_SMTP_PORT", "SMTP_PORT")
    )
    smtp_username: str | None = Field(
        None, validation_alias=_env("OPSFLOW_SMTP_USERNAME", "SMTP_USER")
    )
    smtp_password: str | None = Field(
        None, validation_alias=_env("OPSFLOW_SMTP_PASSWORD", "SMTP_PASSWORD")
    )
    smtp_starttls: bool | None = Field(None, validation_alias=_env("OPSFLOW_SMTP_STARTTLS"))
    smtp_ssl: bool = Field(False, validation_alias=_env("OPSFLOW_SMTP_SSL"))
    smtp_from: str = Field(
        "OpsFlow <noreply@opsflow.local>", validation_alias=_env("OPSFLOW_SMTP_FROM", "EMAIL_FROM")
    )
    mail_outbox_dir: Path | None = Field(None, validation_alias=_env("OPSFLOW_MAIL_OUTBOX_DIR"))
    slack_webhook_url: str | None = Field(
        None, validation_alias=_env("OPSFLOW_SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL")
    )
    sms_provider_url: str | None = Field(None, validation_alias=_env("OPSFLOW_SMS_PROVIDER_URL"))
    sms_provider_token: str | None = Field(
        None, validation_alias=_env("OPSFLOW_SMS_PROVIDER_TOKEN")
    )
    notification_retry_base_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("OPSFLOW_NOTIFICATION_RETRY_BASE_SECONDS")
    )
    # How long a claimed delivery stays leased to its engine: a killed engine's deliveries
    # are sent again (same idempotency key) once their lease runs out.
    notification_lease_seconds: float = Field(
        120.0, gt=0, le=3600, validation_alias=_env("OPSFLOW_NOTIFICATION_LEASE_SECONDS")
    )
    # Alert integrations: how long `GET /integrations/{id}/events` keeps what came in.
    integration_event_retention_days: int = Field(
        14, ge=1, le=3650, validation_alias=_env("OPSFLOW_INTEGRATION_EVENT_RETENTION_DAYS")
    )
    # The Celery broker of `opsflow worker`/`beat`; the first of these variables that is set.
    celery_broker_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=_env("OPSFLOW_CELERY_BROKER_URL", "CELERY_BROKER_URL", "REDIS_URL"),
    )
    # Attachments and resumable uploads. Files live in `storage_dir` (default
    # `<data_dir>/files`), or in an S3-compatible bucket with `storage=s3`.
    storage: Literal["local", "s3"] = Field("local", validation_alias=_env("OPSFLOW_STORAGE"))
    storage_dir: Path | None = Field(None, validation_alias=_env("OPSFLOW_STORAGE_DIR"))
    s3_endpoint_url: str | None = Field(None, validation_alias=_env("OPSFLOW_S3_ENDPOINT_URL"))
    s3_bucket: str | None = Field(None, validation_alias=_env("OPSFLOW_S3_BUCKET"))
    s3_region: str = Field("us-east-1", validation_alias=_env("OPSFLOW_S3_REGION"))
    s3_access_key_id: str | None = Field(None, validation_alias=_env("OPSFLOW_S3_ACCESS_KEY_ID"))
    s3_secret_access_key: str | None = Field(
        None, validation_alias=_env("OPSFLOW_S3_SECRET_ACCESS_KEY")
    )
    s3_prefix: str = Field("", max_length=200, validation_alias=_env("OPSFLOW_S3_PREFIX"))
    # The largest file `POST /tasks/{id}/attachments` takes in one request.
    attachment_max_bytes: int = Field(
        10 * 1_048_576,
        ge=1,
        le=1024 * 1_048_576,
        validation_alias=_env("OPSFLOW_ATTACHMENT_MAX_BYTES"),
    )
    # The largest chunk a resumable upload may declare (S3 takes parts of at most 5 GiB).
    upload_max_chunk_bytes: int = Field(
        64 * 1_048_576,
        ge=5 * 1_048_576,
        le=1024 * 1_048_576,
        validation_alias=_env("OPSFLOW_UPLOAD_MAX_CHUNK_BYTES"),
    )
    # An upload that receives nothing for this long is abandoned and collected.
    upload_expiry_hours: float = Field(
        24.0, gt=0, le=24 * 30, validation_alias=_env("OPSFLOW_UPLOAD_EXPIRY_HOURS")
    )
    # `opsflow beat`'s state file; None: `<data_dir>/celerybeat-schedule`.
    beat_schedule_file: Path | None = Field(
        None, validation_alias=_env("OPSFLOW_BEAT_SCHEDULE_FILE")
    )
    # Tracing: OpenTelemetry spans sent over OTLP/HTTP to this base URL (`/v1/traces` is
    # appended) when set; unset, nothing of OpenTelemetry is loaded.
    otel_endpoint: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    otel_service_name: str = Field("opsflow", validation_alias=_env("OTEL_SERVICE_NAME"))
    # `opsflow engine` and `opsflow worker` serve their metrics on this port when set.
    metrics_port: int | None = Field(
        None, ge=1, le=65535, validation_alias=_env("OPSFLOW_METRICS_PORT")
    )
    metrics_host: str = Field("0.0.0.0", validation_alias=_env("OPSFLOW_METRICS_HOST"))  # noqa: S104

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # Accept the plain scheme people paste from elsewhere and pick the async driver.
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        if value.startswith("sqlite:///"):
            value = "sqlite+aiosqlite:///" + value.removeprefix("sqlite:///")
        return value

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def engine_options(self) -> EngineOptions:
        """The keyword arguments of `db.create_engine` these settings choose."""
        return {
            "sqlite_busy_timeout_ms": self.sqlite_busy_timeout_ms,
            "pool_size": self.db_pool_size,
            "max_overflow": self.db_max_overflow,
            "pool_timeout": self.db_pool_timeout_seconds,
        }

    @property
    def files_dir(self) -> Path:
        """Where the local storage keeps attachments and upload chunks."""
        return self.storage_dir or self.data_dir / "files"

    def jwt_signing_key(self) -> str:
        if self.jwt_algorithm == "RS256":
            if self.jwt_private_key_file is None:
                raise ConfigError("JWT_ALGORITHM=RS256 needs OPSFLOW_JWT_PRIVATE_KEY_FILE")
            return self.jwt_private_key_file.read_text()
        return self.jwt_secret_key

    def jwt_verification_key(self) -> str:
        if self.jwt_algorithm == "RS256":
            if self.jwt_public_key_file is None:
                raise ConfigError("JWT_ALGORITHM=RS256 needs OPSFLOW_JWT_PUBLIC_KEY_FILE")
            return self.jwt_public_key_file.read_text()
        return self.jwt_secret_key

    def check_safe(self) -> None:
        """Refuse configurations that must never reach production."""
        if self.storage == "s3" and not self.s3_bucket:
            raise ConfigError("OPSFLOW_STORAGE=s3 needs OPSFLOW_S3_BUCKET")
        if self.app_env != "production":
            return
        if not 15 <= self.access_token_expire_minutes <= 60:
            raise ConfigError("ACCESS_TOKEN_EXPIRE_MINUTES must be 15-60 in production")
        if self.jwt_algorithm != "RS256":
            if self.jwt_secret_key == DEFAULT_JWT_SECRET:
                raise ConfigError(
                    "APP_ENV=production with the default JWT_SECRET_KEY: set a random secret"
                )
            if len(self.jwt_secret_key) < 32:
                raise ConfigError("JWT_SECRET_KEY must be at least 32 characters in production")
        else:
            self.jwt_signing_key()
            self.jwt_verification_key()


# Read by the test tooling, not by OpsFlow itself; never reported as unknown.
TOOLING_VARIABLES = frozenset(
    {
        "OPSFLOW_TEST_DATABASE_URL",
        "OPSFLOW_TEST_REDIS_URL",
        "OPSFLOW_REQUIRE_SERVICES",
        "OPSFLOW_CI",
        "OPSFLOW_CHAOS",
    }
)


def known_variables() -> frozenset[str]:
    """Every environment variable a setting reads (upper case)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []
        names.update(str(choice).upper() for choice in choices)
    return frozenset(names)


def environment_warnings(environ: Mapping[str, str]) -> list[str]:
    """What a start should warn about: `OPSFLOW_*` variables no setting reads (a typo must
    not pass silently; the closest known name is suggested)."""
    known = known_variables()
    prefixed = sorted(name for name in known if name.startswith("OPSFLOW_"))
    warnings: list[str] = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith("OPSFLOW_") and upper not in known | TOOLING_VARIABLES:
            # Compared without the shared prefix, which would make every name look close.
            close = difflib.get_close_matches(
                upper.removeprefix("OPSFLOW_"),
                [known_name.removeprefix("OPSFLOW_") for known_name in prefixed],
                n=1,
                cutoff=0.6,
            )
            hint = f"; did you mean OPSFLOW_{close[0]}?" if close else ""
            warnings.append(f"{name} is not an OpsFlow setting and is ignored{hint}")
    return warnings


def current_environment(env_file: Path = Path(".env")) -> dict[str, str]:
    """The variables settings are read from: the process environment over `.env`."""
    from_file = dotenv_values(env_file) if env_file.is_file() else {}
    return {**{k: v or "" for k, v in from_file.items()}, **os.environ}


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
