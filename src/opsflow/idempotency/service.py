"""`Idempotency-Key` on POST: the same key and body within 24 h replays the
stored response; the same key with another body is refused with 422.

An answer that carries a credential shown only once (an API client's secret, a webhook's
signing secret, an integration's or a heartbeat monitor's key) is never stored: the key
still makes the creation happen once, and a replay answers 409
`IDEMPOTENT_ANSWER_WITHHELD` with the created resource's `Location` (rotate the credential
there if the first answer was lost).

The record is inserted in the request's own unit of work, so it commits together with the
effect or not at all: a retry after a rollback runs again, a retry after a commit never
does. The response is attached right after it is produced (see :class:`ResponseRecorder`).
If the process dies between the commit and that step, a retry learns that the request was
already processed (409) instead of repeating it. A request that presents a key while
another request with it is still running answers 409 `IDEMPOTENCY_KEY_IN_USE`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsflow.auth.principal import Principal
from opsflow.context import AppContext
from opsflow.db import unit_of_work
from opsflow.errors import AppError, Conflict, ValidationFailed
from opsflow.idempotency import repository
from opsflow.models.idempotency import IdempotencyRecord

TTL = timedelta(hours=24)
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAYED_HEADERS = ("content-type", "location", "etag")
STATE_KEY = "idempotency_record_id"
WITHHOLD_KEY = "idempotency_withhold_body"


class KeyInUse(AppError):
    status_code = 409
    code = "IDEMPOTENCY_KEY_IN_USE"
    default_message = (
        "A request with this Idempotency-Key is being processed; retry once it has finished"
    )


class KeyReused(AppError):
    status_code = 422
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This Idempotency-Key was used with a different request"


class AnswerWithheld(AppError):
    status_code = 409
    code = "IDEMPOTENT_ANSWER_WITHHELD"
    default_message = (
        "A request with this Idempotency-Key already created the resource; its answer held a "
        "credential shown only once and was not kept (the resource is at Location)"
    )


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


class Replay(Exception):
    def __init__(self, stored: StoredResponse) -> None:
        self.stored = stored
        super().__init__("idempotent replay")


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def principal_key(principal: Principal) -> str:
    return f"{principal.actor_type.value}:{principal.id}"


async def begin(
    session: AsyncSession,
    ctx: AppContext,
    principal: Principal,
    key: str,
    *,
    method: str,
    path: str,
    body: bytes,
) -> uuid.UUID:
    """Claim `key` for this request inside its unit of work, or raise Replay / an error."""
    if not KEY_PATTERN.match(key):
        raise ValidationFailed(
            details=[{"field": "Idempotency-Key", "message": "1-255 printable ASCII characters"}]
        )
    now = ctx.clock.now()
    owner = principal_key(principal)
    print_ = fingerprint(method, path, body)
    existing = await repository.find(session, owner, key)
    if existing is not None and existing.expires_at <= now:
        await repository.remove(session, existing.id)
        await session.flush()
        existing = None
    if existing is not None:
        return _answer_existing(existing, print_)
    record = IdempotencyRecord(
        id=uuid.uuid4(),
        principal=owner,
        key=key,
        method=method,
        path=path[:500],
        fingerprint=print_,
        created_at=now,
        expires_at=now + TTL,
    )
    session.add(record)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another request claimed the key between our lookup and our insert (it waited on
        # the unique index until that request committed): the client retries and gets the
        # stored response then.
        raise KeyInUse(idempotency_key=key) from exc
    return record.id


def _answer_existing(existing: IdempotencyRecord, print_: str) -> uuid.UUID:
    if existing.fingerprint != print_:
        raise KeyReused(
            details=[{"field": "Idempotency-Key", "message": "already used with another body"}]
        )
    if existing.status_code is not None and existing.response_body is None:
        headers = existing.response_headers or {}
        location = headers.get("location")
        raise AnswerWithheld(
            headers={"Location": str(location)} if location else None,
            idempotency_key=existing.key,
            location=location,
        )
    if existing.status_code is None or existing.response_body is None:
        raise Conflict(
            "A request with this Idempotency-Key was already processed; its response is "
            "not available",
            idempotency_key=existing.key,
        )
    raise Replay(
        StoredResponse(
            status_code=existing.status_code,
            body=existing.response_body,
            headers={k: str(v) for k, v in (existing.response_headers or {}).items()},
        )
    )


class ResponseRecorder:
    """ASGI middleware: stores the response of a request that claimed an idempotency key.

    Responses with status >= 500 are not stored; their transaction rolled back, and with it
    the claim, so the client may retry.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        captured: dict[str, Any] = {"status": 0, "headers": {}, "body": bytearray()}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = {
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() in REPLAYED_HEADERS
                }
            elif message["type"] == "http.response.body":
                captured["body"].extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        state = scope.get("state", {})
        record_id = state.get(STATE_KEY)
        if record_id is None or captured["status"] >= 500:
            return
        withhold = bool(state.get(WITHHOLD_KEY)) and captured["status"] < 300
        ctx: AppContext = scope["app"].state.context
        async with unit_of_work(ctx.sessions) as session:
            await repository.complete(
                session,
                record_id,
                status_code=captured["status"],
                body=None if withhold else bytes(captured["body"]),
                headers=captured["headers"],
            )
