"""Writing an event frame straight to a connection's socket: the broadcast fast path.

Sending through ASGI costs each connection a writer wake-up, the `send` call through every
middleware wrapper and the server's own framing, for every frame: at thousands of sockets
that, not the event's own work, is what a broadcast costs. Like the `websockets` library's
`broadcast()`, the hub instead encodes a frame once per event (`encode_text`: the RFC 6455
bytes of an unmasked, uncompressed text frame) and writes those bytes synchronously to each
idle connection's transport. A connection whose transport holds more than the write-buffer
bound is not written to but evicted (close 1013), and when the transports of the whole
process hold more than the buffer budget the ones holding most are dropped (hub.py), so
nothing is ever skipped silently and the memory held for slow readers stays bounded.

This needs the server's WebSocket protocol object, reached through the `send` callable the
server handed the application (`raw_send_of`, kept in the scope by `capture_raw_send`).
Only uvicorn's sans-I/O `websockets` implementation (its default when `websockets` is
installed) is recognised, and only when no extension (permessage-deflate) was negotiated;
any other server or implementation (wsproto, the legacy `websockets` one, a test client)
gets no `DirectWriter` and every frame goes through ASGI `send` as before.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

RAW_SEND_KEY = "opsflow.raw_send"
_SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"


def encode_text(payload: bytes) -> bytes:
    """The bytes of one final, unmasked text frame carrying `payload` (a server's frame)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


class Outcome(enum.Enum):
    WRITTEN = "written"  # the bytes are in the transport (sent or buffered)
    FULL = "full"  # the transport holds more than the bound: evict the connection
    CLOSED = "closed"  # closing or closed: nothing more is written to it


class DirectWriter:
    """Synchronous writes of pre-encoded frames to one open connection's transport.

    `buffered` is what the transport held unsent after the last write or `refresh`: the
    hub reads it back (`refresh`) only for connections that held something, and sums it
    against the process-wide budget (realtime/hub.py). The transport's methods are kept
    bound (`send`, `size`, `closing`): the broadcast loop calls them for every socket."""

    __slots__ = (
        "buffered",
        "closing",
        "conn",
        "open_state",
        "protocol",
        "send",
        "size",
        "transport",
    )

    def __init__(self, protocol: Any, open_state: Any) -> None:
        self.protocol = protocol  # the server's (uvicorn's) protocol object
        self.conn = protocol.conn  # its `websockets` connection state machine
        self.open_state = open_state
        self.transport: asyncio.WriteTransport = protocol.transport
        self.send: Callable[[bytes], None] = self.transport.write
        self.size: Callable[[], int] = self.transport.get_write_buffer_size
        self.closing: Callable[[], bool] = self.transport.is_closing
        self.buffered = 0

    def closed(self) -> bool:
        """A close frame was sent or received, or the transport is closing: nothing more
        may be written to it."""
        return bool(
            self.protocol.close_sent or self.closing() or self.conn.state is not self.open_state
        )

    def write(self, wire: bytes, limit: int) -> Outcome:
        if self.closed():
            return Outcome.CLOSED
        if self.buffered > limit:
            return Outcome.FULL
        self.send(wire)
        self.buffered = self.size()
        return Outcome.WRITTEN

    def refresh(self) -> int:
        """What the transport holds unsent now (it drains while the loop runs)."""
        self.buffered = size = self.transport.get_write_buffer_size()
        return size

    def abort(self) -> None:
        """Drop the connection at once, and what its transport held (a client that stopped
        reading holds its buffer)."""
        self.buffered = 0
        self.transport.abort()


def capture_raw_send(scope: MutableMapping[str, Any], send: Callable[..., Awaitable[None]]) -> None:
    """Keep the server's own `send` in a WebSocket scope (middleware may wrap the one the
    endpoint gets)."""
    if scope.get("type") == "websocket":
        scope[RAW_SEND_KEY] = send


def writer_for(scope: MutableMapping[str, Any]) -> DirectWriter | None:
    """The fast path to this accepted connection, or None when the server is not one this
    module knows (then frames go through ASGI `send`)."""
    protocol = getattr(scope.get(RAW_SEND_KEY), "__self__", None)
    if protocol is None or type(protocol).__module__ != _SANSIO_MODULE:
        return None
    try:
        from websockets.protocol import State

        conn = protocol.conn
        transport = protocol.transport
        if conn.extensions or not callable(getattr(transport, "get_write_buffer_size", None)):
            return None  # a negotiated extension (deflate) changes every frame's bytes
        if protocol.initial_response is not None or not protocol.handshake_complete:
            return None
        return DirectWriter(protocol, State.OPEN)
    except (AttributeError, ImportError):  # another version of the implementation
        return None
