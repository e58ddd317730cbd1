"""``WS /api/v1/ws`` (alias ``/api/v1/ws/alerts``): the authenticated event stream.

Protocol (JSON text frames; docs/api.md has the full description):

- authenticate with ``?token=<access token>`` or, to keep tokens out of access logs, a
  first frame ``{"action": "auth", "token": "..."}``; a later ``auth`` frame replaces the
  token (to stay connected past its expiry);
- ``{"action": "subscribe" | "unsubscribe", "channels": [...]}`` with channels ``alerts``,
  ``tasks``, ``task:<id>``, ``team:<id>``, ``user:me``;
- events arrive as ``{"id", "type", "occurred_at", "task", "data", "channels"}``; replies
  are ``{"type": "auth.ok" | "subscribed" | "pong" | "error", ...}``.

One writer at a time per connection: its writer task drains its bounded queue (replies,
replays, anything that arrives while something is queued), and while that is idle the hub
writes live events' pre-encoded bytes straight to the transport (realtime/transport.py).
Close codes: 4401 authentication failed, expired or revoked; 4429 too many connections for
this user; 1013 the client reads too slowly (its queue or its transport's buffer full). When
the transports of the whole process hold more than the buffer budget, the connections
holding the most are dropped without a close frame (their buffers freed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import datetime
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from opsflow.auth import service as auth_service
from opsflow.auth.permissions import Permission, Reach, reach_of
from opsflow.auth.principal import Principal, RequestMeta
from opsflow.context import AppContext
from opsflow.errors import AppError
from opsflow.realtime import consumer as realtime_consumer
from opsflow.realtime.hub import (
    CLOSE_KEY,
    COMMITTED_KEY,
    HUB,
    TEXT_KEY,
    Subscriber,
    frame_for,
)
from opsflow.realtime.transport import DirectWriter, writer_for

MAX_FRAME_BYTES = 64 * 1024
MAX_CHANNELS = 100
REPLAY_LIMIT = 10_000
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY = 4429
CLOSE_TRY_AGAIN_LATER = 1013


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _authenticate(
    ctx: AppContext, token: object, meta: RequestMeta
) -> tuple[Principal, datetime]:
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise _Refused(CLOSE_UNAUTHORIZED, "Invalid or expired token")
    try:
        claims = ctx.tokens.decode_access(token, now=ctx.clock.now())
        async with ctx.read_sessions() as session:
            principal = await auth_service.resolve_bearer(session, ctx, token, meta)
    except AppError as exc:
        raise _Refused(CLOSE_UNAUTHORIZED, exc.message) from exc
    if reach_of(principal, Permission.TASK_READ) is None:
        raise _Refused(CLOSE_UNAUTHORIZED, "This account may not read tasks")
    return principal, claims.expires_at


def channel_problem(principal: Principal, name: object) -> str | None:
    """Why `principal` may not subscribe to channel `name`, or None when it may."""
    if not isinstance(name, str):
        return "a channel is a string"
    reach = reach_of(principal, Permission.TASK_READ)
    if name in {"alerts", "tasks"}:
        return None
    kind, _, ident = name.partition(":")
    if name == "user:me":
        return None if principal.is_user else "only a user has a user:me channel"
    if kind not in {"task", "team", "user"}:
        return "unknown channel"
    try:
        parsed = uuid.UUID(ident)
    except ValueError:
        return "the channel's id is not a UUID"
    if kind == "user" and parsed != principal.id:
        return "you may read only your own user channel (user:me)"
    own_team = reach is Reach.OWN_TEAM and principal.team_id == parsed
    if kind == "team" and reach is not Reach.ALL and not own_team:
        return "your role may read only your own team's channel"
    return None


class Connection:
    def __init__(self, websocket: WebSocket, ctx: AppContext) -> None:
        self.websocket = websocket
        self.ctx = ctx
        client = websocket.client
        self.meta = RequestMeta(
            ip_address=client.host if client else None,
            user_agent=websocket.headers.get("user-agent"),
        )
        self.expires_at: datetime | None = None
        self.direct: DirectWriter | None = None

    async def run(self) -> None:
        await self.websocket.accept()
        try:
            principal, self.expires_at = await self._first_auth()
        except _Refused as refused:
            await self.websocket.close(refused.code, refused.reason)
            return
        except WebSocketDisconnect:
            return
        settings = self.ctx.settings
        HUB.write_buffer_limit = settings.ws_write_buffer_bytes
        HUB.buffer_budget = settings.ws_buffer_budget_bytes
        self.direct = writer_for(self.websocket.scope)
        subscriber = Subscriber(
            principal,
            asyncio.Queue(maxsize=settings.ws_send_queue),
            direct=self.direct,
            clock=self.ctx.clock,
            expires_at=self.expires_at,
            metrics=self.ctx.metrics,
        )
        if not HUB.join(subscriber, limit=settings.ws_max_connections_per_user):
            await self.websocket.close(
                CLOSE_TOO_MANY,
                f"At most {settings.ws_max_connections_per_user} connections per user",
            )
            return
        HUB.heartbeat(settings.ws_ping_interval_seconds)
        try:
            subscriber.offer(_auth_ok(principal, self.expires_at))
            await self._serve(subscriber)
        finally:
            HUB.leave(subscriber)

    async def _first_auth(self) -> tuple[Principal, datetime]:
        token: object = self.websocket.query_params.get("token")
        if token is None:
            try:
                text = await asyncio.wait_for(
                    self.websocket.receive_text(), self.ctx.settings.ws_auth_timeout_seconds
                )
            except TimeoutError as exc:
                raise _Refused(CLOSE_UNAUTHORIZED, "Authentication timed out") from exc
            except (KeyError, RuntimeError) as exc:  # a binary frame
                raise _Refused(CLOSE_UNAUTHORIZED, "The first frame must be an auth frame") from exc
            message = _parse(text)
            if not isinstance(message, dict) or message.get("action") != "auth":
                raise _Refused(CLOSE_UNAUTHORIZED, "The first frame must be an auth frame")
            token = message.get("token")
        return await _authenticate(self.ctx, token, self.meta)

    async def _serve(self, subscriber: Subscriber) -> None:
        tasks = [
            asyncio.create_task(self._read(subscriber)),
            asyncio.create_task(self._write(subscriber)),
        ]
        evicted = asyncio.create_task(subscriber.overflowed.wait())
        try:
            done, _ = await asyncio.wait([*tasks, evicted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, evicted]:
                task.cancel()
            for task in [*tasks, evicted]:
                with contextlib.suppress(BaseException):
                    await task
        if evicted in done:
            HUB.stats.evicted += 1
            closing = self._close(CLOSE_TRY_AGAIN_LATER, "The client reads too slowly")
            try:  # the close frame waits behind what the client has not read yet
                await asyncio.wait_for(closing, self.ctx.settings.ws_ping_interval_seconds)
            except TimeoutError:
                if self.direct is not None:
                    self.direct.abort()

    async def _close(self, code: int, reason: str) -> None:
        if self.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.websocket.close(code, reason)

    def _expired(self) -> bool:
        return self.expires_at is not None and self.ctx.clock.now() >= self.expires_at

    async def _write(self, subscriber: Subscriber) -> None:
        """The connection's writer task: what the queue holds, through ASGI `send` (the hub
        writes a live event itself only while this is idle and the queue empty). A frame
        stays counted as pending until it is sent; after a close nothing is written directly
        any more."""
        while True:
            frame = await subscriber.queue.get()
            if CLOSE_KEY in frame:
                code, reason = frame[CLOSE_KEY]
                await self._close(code, reason)
                return
            if self._expired():
                await self._close(CLOSE_UNAUTHORIZED, "The access token expired")
                return
            text = frame.get(TEXT_KEY)  # a live frame comes serialised (and is shared)
            if text is None:
                text = json.dumps(frame, separators=(",", ":"))
            committed = frame.get(COMMITTED_KEY)
            await self.websocket.send_text(text)
            subscriber.sent()
            HUB.note(subscriber)
            HUB.stats.sent += 1
            if committed is not None:
                self.ctx.metrics.ws_delivery.observe(max(0.0, time.time() - committed))

    async def _read(self, subscriber: Subscriber) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw: str | bytes | None = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            if len(raw) > MAX_FRAME_BYTES:
                too_large = f"Frames are at most {MAX_FRAME_BYTES} bytes"
                subscriber.offer(_error("frame_too_large", too_large))
                continue
            if self._expired():
                subscriber.offer({CLOSE_KEY: (CLOSE_UNAUTHORIZED, "The access token expired")})
                return
            parsed = _parse(raw)
            if not isinstance(parsed, dict):
                subscriber.offer(_error("invalid_json", "A frame is one JSON object"))
                continue
            if not await self._handle(subscriber, parsed):
                return

    async def _handle(self, subscriber: Subscriber, message: dict[str, Any]) -> bool:
        action = message.get("action")
        if action == "auth":
            try:
                principal, expires = await _authenticate(self.ctx, message.get("token"), self.meta)
            except _Refused as refused:
                subscriber.offer({CLOSE_KEY: (refused.code, refused.reason)})
                return False
            if principal.id != subscriber.principal.id:
                reason = "The token is another account's"
                subscriber.offer({CLOSE_KEY: (CLOSE_UNAUTHORIZED, reason)})
                return False
            subscriber.principal, self.expires_at = principal, expires
            subscriber.expires_at = expires
            subscriber.offer(_auth_ok(principal, expires))
        elif action in {"subscribe", "unsubscribe"}:
            channels = message.get("channels")
            if not isinstance(channels, list) or not channels or len(channels) > MAX_CHANNELS:
                subscriber.offer(
                    _error("invalid_channels", f"channels is a list of 1 to {MAX_CHANNELS} names")
                )
                return True
            problems = {
                str(name): problem
                for name in channels
                if (problem := channel_problem(subscriber.principal, name)) is not None
            }
            if problems:
                not_subscribed = "Not subscribed to these channels"
                subscriber.offer(_error("forbidden_channel", not_subscribed, channels=problems))
                return True
            since = message.get("since")
            if since is not None and (action != "subscribe" or type(since) is not int or since < 0):
                subscriber.offer(
                    _error("invalid_since", "since is the id of the last event received")
                )
                return True
            if action == "subscribe":
                subscriber.subscribe(channels)
            else:
                subscriber.unsubscribe(channels)
            subscriber.offer({"type": "subscribed", "channels": sorted(subscriber.channels)})
            if since is not None:
                await self._replay(subscriber, since)
        elif action == "ping":
            subscriber.offer({"type": "pong"})
        else:
            subscriber.offer(
                _error("unknown_action", "action is one of auth, subscribe, unsubscribe, ping")
            )
        return True

    async def _replay(self, subscriber: Subscriber, since: int) -> None:
        """Every streamed event after `since` on the subscriber's channels, in order, then
        the live events that arrived meanwhile, none twice. When events after `since` were
        already pruned (older than the retention window), a `resync` frame instead of the
        replay: the client reloads what it shows, the live stream goes on."""
        subscriber.held = []
        try:
            async with self.ctx.read_sessions() as session:
                oldest = await realtime_consumer.oldest_id(session)
                pruned = oldest is not None and oldest > since + 1
                frames = (
                    [] if pruned else await realtime_consumer.since(session, since, REPLAY_LIMIT)
                )
        finally:
            held, subscriber.held = subscriber.held, None
        if pruned:
            subscriber.offer(
                {
                    "type": "resync",
                    "since": since,
                    "oldest_id": oldest,
                    "retention_hours": self.ctx.settings.outbox_retention_hours,
                    "message": "Events after this id are past the replay window: "
                    "reload the current state; the live stream goes on",
                }
            )
            for frame in held or []:
                subscriber.offer(frame)
            return
        last = since
        for frame in frames:
            last = max(last, int(frame["id"]))
            addressed = frame_for(subscriber, frame)
            if addressed is not None:
                subscriber.offer(addressed)
        if len(frames) >= REPLAY_LIMIT:
            subscriber.offer({"type": "replay.truncated", "last_id": last})
            return
        for frame in held or []:
            if int(frame["id"]) > last:
                subscriber.offer(frame)


def _parse(raw: str | bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **details}


def _auth_ok(principal: Principal, expires_at: datetime) -> dict[str, Any]:
    return {
        "type": "auth.ok",
        "user_id": str(principal.id),
        "role": principal.role.value if principal.role else None,
        "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
    }


REALTIME_PATHS = ("/ws", "/ws/alerts")


async def stream(websocket: WebSocket) -> None:
    ctx: AppContext = websocket.app.state.context
    await Connection(websocket, ctx).run()
