"""JWT access tokens (PyJWT, algorithm pinned by configuration) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from opsflow.config import Settings
from opsflow.errors import Unauthorized

ISSUER = "opsflow"
# The longest access-token lifetime the settings allow (ACCESS_TOKEN_EXPIRE_MINUTES <= 1440).
MAX_LIFETIME_SECONDS = 24 * 3600
CLOCK_SKEW_SECONDS = 60
# Verified signatures remembered per process (see TokenCodec._verified).
VERIFIED_TOKENS_KEPT = 10_000


@dataclass(frozen=True)
class AccessClaims:
    subject: uuid.UUID
    kind: str  # "user" | "client"
    session_id: uuid.UUID | None
    scopes: tuple[str, ...]
    token_id: str
    expires_at: datetime


class TokenCodec:
    def __init__(self, settings: Settings) -> None:
        self._algorithm = settings.jwt_algorithm
        self._signing_key = settings.jwt_signing_key()
        self._verification_key = settings.jwt_verification_key()
        self.access_ttl = timedelta(minutes=settings.access_token_expire_minutes)
        self.refresh_ttl = timedelta(days=settings.refresh_token_expire_days)
        # Checking an HMAC/RSA signature and parsing the claims costs more than the rest of
        # authentication; a token's verified claims never change, so they are remembered
        # by the exact token text. The time rules (expiry, not-before) are still applied on
        # every request against the injected clock, and revocation is the principal
        # cache's business (auth/cache.py), so remembering adds no window of its own.
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def issue_access(
        self,
        *,
        subject: uuid.UUID,
        kind: str,
        now: datetime,
        session_id: uuid.UUID | None = None,
        scopes: tuple[str, ...] = (),
    ) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": str(subject),
            "typ": "access",
            "knd": kind,
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + self.access_ttl).timestamp()),
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        if scopes:
            claims["scope"] = " ".join(scopes)
        return jwt.encode(claims, self._signing_key, algorithm=self._algorithm)

    def decode_access(self, token: str, *, now: datetime) -> AccessClaims:
        """Verify signature, issuer and lifetime against the injected clock."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            self._verified[token] = claims
            if len(self._verified) > VERIFIED_TOKENS_KEPT:
                self._verified.popitem(last=False)
        return self._access_claims(claims, now)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._verification_key,
                algorithms=[self._algorithm],
                issuer=ISSUER,
                options={
                    "require": ["exp", "iat", "sub", "iss"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid or expired token") from exc
        return claims

    @staticmethod
    def _access_claims(claims: dict[str, Any], now: datetime) -> AccessClaims:
        try:
            expires = int(claims["exp"])
            if claims.get("typ") != "access" or expires <= now.timestamp():
                raise Unauthorized("Invalid or expired token")
            # Tokens this server issues live at most a day; an absurd expiry (10^20) is
            # not one of them, and would overflow a datetime below.
            if expires > now.timestamp() + MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
                raise Unauthorized("Invalid or expired token")
            issued = int(claims["iat"])
            if max(issued, int(claims.get("nbf", issued))) > now.timestamp() + CLOCK_SKEW_SECONDS:
                raise Unauthorized("Token not valid yet")
            sid = claims.get("sid")
            return AccessClaims(
                subject=uuid.UUID(str(claims["sub"])),
                kind=str(claims.get("knd", "user")),
                session_id=uuid.UUID(str(sid)) if sid else None,
                scopes=tuple(str(claims.get("scope", "")).split()),
                token_id=str(claims.get("jti", "")),
                expires_at=datetime.fromtimestamp(expires, tz=now.tzinfo),
            )
        except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
            raise Unauthorized("Invalid or expired token") from exc


def new_refresh_token() -> str:
    return "ofr_" + secrets.token_urlsafe(32)


def new_client_id() -> str:
    return "ofc_" + secrets.token_hex(12)


def new_client_secret() -> str:
    return "ofs_" + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """SHA-256 of a high-entropy token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()
