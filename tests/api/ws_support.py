"""A WebSocket client that drives the ASGI app in the test's own event loop.

Starlette's TestClient runs the app in another thread and loop, where the test's database
engine cannot be used; this one sends and receives the ASGI WebSocket messages directly.
`slow=True` makes the client accept one frame at a time only when asked (a slow reader).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

# A safety net against a hung test, not a timing assertion.
GIVE_UP_SECONDS = 10


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class Rejected(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class WsClient:
    def __init__(self, app: Any, path: str, *, query: str = "", slow: bool = False) -> None:
        self.app = app
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1 if slow else 0)
        self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"user-agent", b"ws-test")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
        }
        self.task: asyncio.Task[None] | None = None
        self.hello_frame: dict[str, Any] = {}

    async def __aenter__(self) -> WsClient:
        self.task = asyncio.create_task(self.app(self.scope, self.to_app.get, self.from_app.put))
        await self.to_app.put({"type": "websocket.connect"})
        first = await self._next()
        if first["type"] == "websocket.http.response.start":
            body = await self._next()
            raise Rejected(first["status"], body.get("body", b""))
        if first["type"] == "websocket.close":
            raise Closed(first.get("code", 1000), first.get("reason", ""))
        assert first["type"] == "websocket.accept", first
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        while not self.task.done():  # drain what the app still sends while closing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.from_app.get(), 0.05)
        await self.task

    async def _next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.from_app.get(), GIVE_UP_SECONDS)

    async def send(self, frame: Any) -> None:
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        await self.to_app.put({"type": "websocket.receive", "text": text})

    async def receive(self) -> dict[str, Any]:
        """The next frame the server sent; `Closed` when it closed the socket instead."""
        message = await self._next()
        if message["type"] == "websocket.close":
            raise Closed(message.get("code", 1000), message.get("reason", ""))
        assert message["type"] == "websocket.send", message
        return dict(json.loads(message["text"]))

    async def receive_until(self, kind: str) -> list[dict[str, Any]]:
        """Every frame up to and including the first of type `kind`."""
        frames = []
        while True:
            frames.append(await self.receive())
            if frames[-1]["type"] == kind:
                return frames

    async def hello(self) -> dict[str, Any]:
        """The `auth.ok` frame that follows a successful authentication."""
        frame = await self.receive()
        assert frame["type"] == "auth.ok", frame
        self.hello_frame = frame
        return frame

    async def subscribe(self, channels: list[str], since: int | None = None) -> dict[str, Any]:
        """Subscribe (replaying from `since`); the server's answer (`subscribed` or an
        error frame)."""
        frame: dict[str, Any] = {"action": "subscribe", "channels": channels}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return await self.receive()

    async def drain(self) -> list[dict[str, Any]]:
        """Every frame the server sent before it answers a ping (frames are in order)."""
        await self.send({"action": "ping"})
        return (await self.receive_until("pong"))[:-1]


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


WS_PATH = "/api/v1/ws"


@contextlib.asynccontextmanager
async def connected(
    app: Any,
    headers: dict[str, str],
    channels: list[str] | None = None,
    *,
    since: int | None = None,
    slow: bool = False,
) -> AsyncIterator[WsClient]:
    """A socket authenticated with `headers`' token (`auth.ok` read) and, given `channels`,
    subscribed to them (the `subscribed` answer read)."""
    async with WsClient(app, WS_PATH, query=f"token={token_of(headers)}", slow=slow) as ws:
        await ws.hello()
        if channels is not None:
            answer = await ws.subscribe(channels, since)
            assert answer["type"] == "subscribed", answer
        yield ws


class SocketClient:
    """A WebSocket client over a real socket (for `opsflow serve` processes): a reader task
    keeps every frame with the wall-clock instant it arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.url = f"{url}?token={token}"
        self.frames: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self._changed = asyncio.Event()
        self._socket: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SocketClient:
        from websockets.asyncio.client import connect

        self._socket = await connect(self.url, compression=None, max_size=2**22)
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda f: f["type"] == "auth.ok")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._socket.close()
        assert self._reader is not None
        with contextlib.suppress(BaseException):
            await self._reader

    async def _read(self) -> None:
        import time

        async for text in self._socket:
            self.frames.append(json.loads(text))
            self.arrived.append(time.time())
            self._changed.set()

    async def send(self, frame: Any) -> None:
        await self._socket.send(json.dumps(frame))

    async def wait_for(self, match: Any, *, start: int = 0) -> dict[str, Any]:
        """The first frame from index `start` on that satisfies `match`."""

        async def first() -> dict[str, Any]:
            while True:
                for frame in self.frames[start:]:
                    if match(frame):
                        return frame
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(first(), GIVE_UP_SECONDS * 3)

    async def subscribe(self, channels: list[str], since: int | None = None) -> None:
        start = len(self.frames)
        frame: dict[str, Any] = {"action": "subscribe", "channels": channels}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        await self.wait_for(lambda f: f["type"] in {"subscribed", "error"}, start=start)

    async def settle(self) -> None:
        """Every frame sent before the server answered a ping has arrived."""
        start = len(self.frames)
        await self.send({"action": "ping"})
        await self.wait_for(lambda f: f["type"] == "pong", start=start)

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if isinstance(f.get("id"), int)]
