"""Settings: production safety checks and database URL normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from opsflow.config import DEFAULT_JWT_SECRET, ConfigError, Settings

LONG_SECRET = "x" * 32


def make(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


# --- check_safe --------------------------------------------------------------------------------


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ConfigError, match="default JWT_SECRET_KEY"):
        make(app_env="production", jwt_secret_key=DEFAULT_JWT_SECRET).check_safe()


@pytest.mark.parametrize("secret", ["short", "y" * 31])
def test_production_refuses_a_short_secret(secret: str) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        make(app_env="production", jwt_secret_key=secret).check_safe()


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_production_accepts_a_long_secret(algorithm: str) -> None:
    make(app_env="production", jwt_secret_key=LONG_SECRET, jwt_algorithm=algorithm).check_safe()


@pytest.mark.parametrize("env", ["development", "test"])
def test_outside_production_the_default_secret_is_tolerated(env: str) -> None:
    make(app_env=env, jwt_secret_key=DEFAULT_JWT_SECRET).check_safe()


def test_production_rs256_needs_key_files() -> None:
    with pytest.raises(ConfigError, match="PRIVATE_KEY_FILE"):
        make(
            app_env="production",
            jwt_algorithm="RS256",
            jwt_private_key_file=None,
            jwt_public_key_file=None,
        ).check_safe()


def test_production_rs256_with_keys(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "private.pem"
    public = tmp_path / "public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    settings = make(
        app_env="production",
        jwt_algorithm="RS256",
        jwt_secret_key=DEFAULT_JWT_SECRET,  # unused with RS256
        jwt_private_key_file=private,
        jwt_public_key_file=public,
    )
    settings.check_safe()
    assert settings.jwt_signing_key().startswith("-----BEGIN PRIVATE KEY-----")
    assert settings.jwt_verification_key().startswith("-----BEGIN PUBLIC KEY-----")


@pytest.mark.parametrize("minutes", [5, 1440])
def test_production_refuses_access_tokens_outside_15_to_60_minutes(minutes: int) -> None:
    with pytest.raises(ConfigError):
        make(
            app_env="production", jwt_secret_key=LONG_SECRET, access_token_expire_minutes=minutes
        ).check_safe()


@pytest.mark.parametrize("minutes", [15, 60])
def test_production_accepts_access_tokens_of_15_to_60_minutes(minutes: int) -> None:
    make(
        app_env="production", jwt_secret_key=LONG_SECRET, access_token_expire_minutes=minutes
    ).check_safe()


def test_hmac_signing_and_verification_key_is_the_secret() -> None:
    settings = make(jwt_secret_key=LONG_SECRET)
    assert settings.jwt_signing_key() == settings.jwt_verification_key() == LONG_SECRET


def test_unknown_algorithm_is_rejected() -> None:
    with pytest.raises(ValueError, match="jwt_algorithm"):
        make(jwt_algorithm="none")


def test_environment_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", "short")
    settings = make()
    assert settings.app_env == "production"
    with pytest.raises(ConfigError):
        settings.check_safe()


# --- database URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/ops", "postgresql+asyncpg://u:p@db:5432/ops"),
        ("postgresql://u:p@db/ops", "postgresql+asyncpg://u:p@db/ops"),
        ("postgresql+asyncpg://u@db/ops", "postgresql+asyncpg://u@db/ops"),
        ("sqlite:///./opsflow.db", "sqlite+aiosqlite:///./opsflow.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_database_url_normalisation(given: str, expected: str) -> None:
    assert make(database_url=given).database_url == expected


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://ops@db/ops")
    assert make().database_url == "postgresql+asyncpg://ops@db/ops"


def test_database_url_default_is_embedded_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("database_url", raising=False)
    settings = make()
    assert settings.database_url == "sqlite+aiosqlite:///./opsflow.db"
    assert settings.is_sqlite
    assert not make(database_url="postgres://h/d").is_sqlite


# --- other values ------------------------------------------------------------------------------


def test_allowed_origins_split_from_a_string() -> None:
    assert make(allowed_origins="https://a.example, https://b.example,,").allowed_origins == [
        "https://a.example",
        "https://b.example",
    ]


def test_allowed_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.example,https://b.example")
    assert make().allowed_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize("minutes", [0, 1441])
def test_access_token_lifetime_bounds(minutes: int) -> None:
    with pytest.raises(ValueError, match="access_token_expire_minutes"):
        make(access_token_expire_minutes=minutes)
