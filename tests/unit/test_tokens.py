"""Access tokens: round trip with an injected clock, and every way a token must be refused."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from opsflow.auth.tokens import ISSUER, TokenCodec, digest, new_refresh_token
from opsflow.config import Settings
from opsflow.errors import Unauthorized

SECRET = "unit-test-secret-" + "0123456789abcdef" * 4  # 81 bytes: enough for HS512 too
T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
USER = uuid.UUID("6f1c2a1e-0000-4000-8000-000000000001")


def make_codec(**overrides: Any) -> TokenCodec:
    values: dict[str, Any] = {
        "jwt_secret_key": SECRET,
        "jwt_algorithm": "HS256",
        "access_token_expire_minutes": 30,
        "refresh_token_expire_days": 14,
    }
    values.update(overrides)
    return TokenCodec(Settings(_env_file=None, **values))


@pytest.fixture
def codec() -> TokenCodec:
    return make_codec()


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(USER),
        "typ": "access",
        "knd": "user",
        "jti": "abc",
        "iat": int(T0.timestamp()),
        "nbf": int(T0.timestamp()),
        "exp": int((T0 + timedelta(minutes=30)).timestamp()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip(codec: TokenCodec) -> None:
    session = uuid.uuid4()
    token = codec.issue_access(
        subject=USER, kind="user", now=T0, session_id=session, scopes=("tasks:read", "x:y")
    )
    decoded = codec.decode_access(token, now=T0 + timedelta(minutes=29))
    assert decoded.subject == USER
    assert decoded.kind == "user"
    assert decoded.session_id == session
    assert decoded.scopes == ("tasks:read", "x:y")
    assert decoded.token_id
    assert decoded.expires_at == T0 + timedelta(minutes=30)


def test_round_trip_minimal(codec: TokenCodec) -> None:
    token = codec.issue_access(subject=USER, kind="client", now=T0)
    decoded = codec.decode_access(token, now=T0)
    assert decoded.kind == "client"
    assert decoded.session_id is None
    assert decoded.scopes == ()


def test_token_ids_are_unique(codec: TokenCodec) -> None:
    a = codec.decode_access(codec.issue_access(subject=USER, kind="user", now=T0), now=T0)
    b = codec.decode_access(codec.issue_access(subject=USER, kind="user", now=T0), now=T0)
    assert a.token_id != b.token_id


def test_header_pins_hs256(codec: TokenCodec) -> None:
    token = codec.issue_access(subject=USER, kind="user", now=T0)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert payload["iss"] == "opsflow"
    assert payload["typ"] == "access"
    assert payload["exp"] - payload["iat"] == 30 * 60


def test_ttl_comes_from_settings() -> None:
    codec = make_codec(access_token_expire_minutes=15)
    token = codec.issue_access(subject=USER, kind="user", now=T0)
    assert codec.decode_access(token, now=T0).expires_at == T0 + timedelta(minutes=15)
    assert codec.refresh_ttl == timedelta(days=14)


def test_expired_by_injected_clock(codec: TokenCodec) -> None:
    token = codec.issue_access(subject=USER, kind="user", now=T0)
    codec.decode_access(token, now=T0 + timedelta(minutes=29, seconds=59))
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0 + timedelta(minutes=30))
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0 + timedelta(days=1))


def test_not_yet_valid(codec: TokenCodec) -> None:
    token = codec.issue_access(subject=USER, kind="user", now=T0 + timedelta(minutes=5))
    codec.decode_access(token, now=T0 + timedelta(minutes=4))  # a minute of clock skew
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0)


def test_unauthorized_carries_bearer_challenge(codec: TokenCodec) -> None:
    with pytest.raises(Unauthorized) as info:
        codec.decode_access("not-a-jwt", now=T0)
    assert info.value.status_code == 401
    assert info.value.headers["WWW-Authenticate"] == "Bearer"


def test_tampered_signature(codec: TokenCodec) -> None:
    token = codec.issue_access(subject=USER, kind="user", now=T0)
    head, body, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = f"{head}.{body}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    with pytest.raises(Unauthorized):
        codec.decode_access(forged, now=T0)


def test_tampered_payload(codec: TokenCodec) -> None:
    token = codec.issue_access(subject=USER, kind="user", now=T0)
    head, _, signature = token.split(".")
    forged = f"{head}.{b64(claims(sub=str(uuid.uuid4())))}.{signature}"
    with pytest.raises(Unauthorized):
        codec.decode_access(forged, now=T0)


def test_other_secret(codec: TokenCodec) -> None:
    token = jwt.encode(claims(), "another-secret-of-sufficient-length-000000", algorithm="HS256")
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0)


def test_reference_token_is_accepted(codec: TokenCodec) -> None:
    # The hostile variants below differ from this one in a single respect.
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert codec.decode_access(token, now=T0).subject == USER


def test_other_hmac_algorithm_with_the_right_secret(codec: TokenCodec) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0)


def test_alg_none(codec: TokenCodec) -> None:
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(Unauthorized):
        codec.decode_access(unsigned, now=T0)


def test_alg_header_swapped_keeping_hs256_signature(codec: TokenCodec) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    _, body, signature = token.split(".")
    forged = f"{b64({'alg': 'HS512', 'typ': 'JWT'})}.{body}.{signature}"
    with pytest.raises(Unauthorized):
        codec.decode_access(forged, now=T0)


def test_wrong_issuer(codec: TokenCodec) -> None:
    token = jwt.encode(claims(iss="someone-else"), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0)


@pytest.mark.parametrize("typ", ["refresh", None, "ACCESS"])
def test_wrong_token_type(codec: TokenCodec, typ: str | None) -> None:
    token = jwt.encode(claims(typ=typ), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0)


def test_opaque_refresh_token_is_not_an_access_token(codec: TokenCodec) -> None:
    with pytest.raises(Unauthorized):
        codec.decode_access(new_refresh_token(), now=T0)


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "iss"])
def test_required_claims(codec: TokenCodec, missing: str) -> None:
    token = jwt.encode(claims(**{missing: None}), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0)


@pytest.mark.parametrize(("claim", "value"), [("sub", "not-a-uuid"), ("sid", "nope")])
def test_malformed_claims(codec: TokenCodec, claim: str, value: str) -> None:
    token = jwt.encode(claims(**{claim: value}), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0)


def test_refresh_tokens_and_digest() -> None:
    a, b = new_refresh_token(), new_refresh_token()
    assert a.startswith("ofr_")
    assert a != b
    assert len(digest(a)) == 64
    assert digest(a) == digest(a)
    assert digest(a) != digest(b)
    assert a not in digest(a)


def test_a_remembered_token_still_expires(codec: TokenCodec) -> None:
    """Verified signatures are remembered per token; the time rules still run every time."""
    token = codec.issue_access(subject=USER, kind="user", now=T0, session_id=uuid.uuid4())
    assert codec.decode_access(token, now=T0).subject == USER
    assert codec.decode_access(token, now=T0 + timedelta(minutes=29)).subject == USER
    with pytest.raises(Unauthorized):
        codec.decode_access(token, now=T0 + timedelta(minutes=30))


def test_a_token_refused_once_is_refused_again(codec: TokenCodec) -> None:
    forged = jwt.encode(claims(), "another-secret-" + "x" * 40, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            codec.decode_access(forged, now=T0)
