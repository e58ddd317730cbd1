"""The process's live connections and the in-process bus that feeds them.

The outbox relay's realtime consumer publishes each committed event here once; the hub
offers it to every connection subscribed to a channel the event belongs to, as one frame
per connection. Offering never waits: an idle connection reachable through the server's
transport gets the frame's pre-encoded bytes written at once (realtime/transport.py), any
other has it queued for its one writer task; a connection whose queue or transport buffer
is full is marked for eviction (close 1013) so a slow client never stalls the others.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opsflow.auth.permissions import Permission, reach_allows, reach_of
from opsflow.auth.principal import Principal
from opsflow.clock import Clock
from opsflow.collaboration.service import reads_internal
from opsflow.realtime.transport import DirectWriter, Outcome, encode_text

# The channels an event reaches, from its type and the task it carries.
ALERT_PREFIXES = ("sla.", "escalation.")
STREAMED_PREFIXES = ("task.", "sla.", "escalation.")
COMMENT_PREFIX = "comment."
INBOX_READ = "inbox.read"
# A live frame, shared by every connection it goes to (never changed once offered),
# carries to the writers its serialised text and its commit instant (epoch seconds, the
# delivery-latency histogram's start) under these keys, which are never sent.
TEXT_KEY = "__text__"
COMMITTED_KEY = "__committed__"
# A request to the writer task to close the socket: {CLOSE_KEY: (code, reason)}.
CLOSE_KEY = "__close__"


def channels_of(frame: dict[str, Any]) -> set[str]:
    """Every channel name an event frame is published on: `tasks` (every task event, for
    lists that show all the tasks a reader may read), the task's, its team's, its assignee's,
    `alerts` for SLA and escalation events. `inbox.read` (a user read a task's conversation)
    goes to that user's own channel only."""
    if frame["type"] == INBOX_READ:
        return {f"user:{(frame.get('data') or {}).get('user_id')}"}
    task = frame.get("task") or {}
    names = {"tasks", f"task:{task.get('id')}"}
    if task.get("team_id"):
        names.add(f"team:{task['team_id']}")
    if task.get("assigned_to"):
        names.add(f"user:{task['assigned_to']}")
    if str(frame["type"]).startswith(ALERT_PREFIXES):
        names.add("alerts")
    return names


def may_see(principal: Principal, frame: dict[str, Any]) -> bool:
    """The task-read rule of the role matrix applied to the task an event carries; an
    internal comment only for those who read internal comments; `inbox.read` only for the
    user who read."""
    data = frame.get("data") or {}
    if frame["type"] == INBOX_READ:
        return principal.is_user and str(principal.id) == str(data.get("user_id"))
    reach = reach_of(principal, Permission.TASK_READ)
    if reach is None:
        return False
    internal = str(frame["type"]).startswith(COMMENT_PREFIX) and data.get("internal") is not False
    if internal and not reads_internal(principal):
        return False
    task = frame.get("task") or {}
    team = task.get("team_id")
    assignee = task.get("assigned_to")
    return reach_allows(
        principal,
        reach,
        team_id=uuid.UUID(team) if team else None,
        assignee_ids=[uuid.UUID(assignee)] if assignee else [],
    )


class Subscriber:
    """One open connection as the hub sees it.

    Frames reach the socket one at a time, in order, by one of two paths, never both at
    once: through `queue`, drained by the connection's writer task (ASGI `send`), or — when
    the connection has a `direct` writer, nothing is queued and its writer is idle — the
    hub writes a live event's pre-encoded bytes to the transport itself (realtime/transport.py).
    """

    __slots__ = (
        "_principal",
        "channels",
        "clock",
        "direct",
        "evicted",
        "expires_at",
        "group",
        "held",
        "hub",
        "metrics",
        "overflowed",
        "pending",
        "queue",
        "reader",
        "resolved",
    )

    def __init__(
        self,
        principal: Principal,
        queue: asyncio.Queue[dict[str, Any]],
        *,
        direct: DirectWriter | None = None,
        clock: Clock | None = None,
        expires_at: datetime | None = None,
        metrics: Any = None,
    ) -> None:
        self.queue = queue
        self.channels: set[str] = set()
        # The channels with `user:me` spelled out; one shared object per distinct set.
        self.resolved: frozenset[str] = frozenset()
        self.overflowed = asyncio.Event()
        self.evicted = False  # `overflowed` is set (read without a call by the broadcast loop)
        # While a replay reads the outbox, live events wait here (then sent after it,
        # skipping what the replay already sent).
        self.held: list[dict[str, Any]] | None = None
        self.direct = direct
        # Frames put in `queue` and not yet sent by the writer task (queued or being sent):
        # one counter the broadcast loop reads, instead of the queue's size and a busy flag.
        self.pending = 0
        self.clock = clock
        self.expires_at = expires_at
        self.metrics = metrics  # what `observe_delivery` is called on for direct writes
        self.hub: Hub | None = None  # the hub it joined
        self.group: tuple[Any, ...] = ()
        self.principal = principal

    @property
    def principal(self) -> Principal:
        return self._principal

    @principal.setter
    def principal(self, principal: Principal) -> None:
        self._principal = principal
        self.reader: tuple[Any, ...] = (
            principal.actor_type,
            principal.id,
            principal.role,
            principal.team_id,
            principal.scopes,
        )
        self._rechannel()

    def subscribe(self, names: Iterable[str]) -> None:
        self.channels.update(names)
        self._rechannel()

    def unsubscribe(self, names: Iterable[str]) -> None:
        self.channels.difference_update(names)
        self._rechannel()

    def _rechannel(self) -> None:
        """Recompute its channel set, and file it under its new group in the hub."""
        self.resolved = _resolve(self)
        if self.hub is not None:
            self.hub.regroup(self)

    def offer(self, frame: dict[str, Any]) -> bool:
        """Send a frame: written at once when the direct path is free (see the class),
        otherwise queued for the writer task; a full queue or transport marks the
        connection evicted. A close request always goes through the writer task."""
        if self.evicted:
            return False
        if self.held is not None and isinstance(frame.get("id"), int):
            self.held.append(frame)
            return True
        direct = self.direct
        if direct is not None and CLOSE_KEY not in frame and self.idle() and not self._expired():
            text = frame.get(TEXT_KEY)
            if text is None:
                text = json.dumps(frame, separators=(",", ":"))
            outcome = direct.write(encode_text(text.encode()), HUB.write_buffer_limit)
            if outcome is Outcome.WRITTEN:
                HUB.note(self)
                HUB.stats.sent += 1
                committed = frame.get(COMMITTED_KEY)
                if committed is not None and self.metrics is not None:
                    self.metrics.observe_delivery(max(0.0, time.time() - committed), 1)
                return True
            if outcome is Outcome.FULL:
                self.evict()
            return False
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.evict()
            return False
        self.pending += 1
        return True

    def evict(self) -> None:
        """Mark the connection to be closed (1013); nothing more is offered to it."""
        self.evicted = True
        self.overflowed.set()

    def sent(self) -> None:
        """The writer task is done with a frame it took from the queue."""
        self.pending -= 1

    def _expired(self) -> bool:
        """The token expired: frames go to the writer task, which closes (4401)."""
        expires = self.expires_at
        return expires is not None and self.clock is not None and self.clock.now() >= expires

    def idle(self) -> bool:
        """Nothing queued, held or being sent: a frame written now comes after all of it."""
        return not self.pending and self.held is None


@dataclass
class HubStats:
    open: int = 0
    sent: int = 0
    evicted: int = 0
    refused: int = 0
    buffered: int = 0  # bytes the transports held unsent, at the last look
    shed: int = 0  # connections dropped because the process held more than its budget


class Hub:
    """This process's connections, filed by group: the connections of one group (same user,
    role, team and scopes, same channels) see exactly the same frames, so what an event
    costs (may it be seen, its text and wire bytes) is worked out once per group and the
    per-connection work is one check and one write."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._groups: dict[tuple[Any, ...], dict[Subscriber, None]] = {}
        # Connections whose transport held unsent bytes at the last look (usually few).
        self._backlog: dict[Subscriber, None] = {}
        self._per_user: dict[uuid.UUID, int] = {}
        self.stats = HubStats()
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        # Bytes a transport may hold before the hub evicts its connection instead of
        # writing more (OPSFLOW_WS_WRITE_BUFFER_BYTES; set when a connection opens).
        self.write_buffer_limit = 256 * 1024
        # Bytes all the transports of the process may hold together before those holding
        # the most are dropped (OPSFLOW_WS_BUFFER_BUDGET_BYTES; set when a connection opens).
        self.buffer_budget = 256 * 1024 * 1024
        self._heartbeat: asyncio.Task[None] | None = None

    def join(self, subscriber: Subscriber, *, limit: int) -> bool:
        """Register a connection; False (and counted as refused) past `limit` per user."""
        key = subscriber.principal.id
        if self._per_user.get(key, 0) >= limit:
            self.stats.refused += 1
            return False
        self._per_user[key] = self._per_user.get(key, 0) + 1
        self._subscribers.add(subscriber)
        subscriber.hub = self
        self.regroup(subscriber)
        self.stats.open += 1
        return True

    def leave(self, subscriber: Subscriber) -> None:
        if subscriber not in self._subscribers:
            return
        self._subscribers.discard(subscriber)
        self._ungroup(subscriber)
        subscriber.hub = None
        self._backlog.pop(subscriber, None)
        key = subscriber.principal.id
        self._per_user[key] -= 1
        if not self._per_user[key]:
            del self._per_user[key]
        self.stats.open -= 1
        if not self._subscribers and self._heartbeat is not None:
            self._heartbeat.cancel()  # no connection left to ping
            self._heartbeat = None

    def regroup(self, subscriber: Subscriber) -> None:
        """File a connection under the group its reader and channels make now."""
        self._ungroup(subscriber)
        key = (subscriber.reader, subscriber.resolved, subscriber.metrics, subscriber.clock)
        subscriber.group = key
        self._groups.setdefault(key, {})[subscriber] = None

    def _ungroup(self, subscriber: Subscriber) -> None:
        members = self._groups.get(subscriber.group)
        if members is not None:
            members.pop(subscriber, None)
            if not members:
                del self._groups[subscriber.group]

    def note(self, subscriber: Subscriber) -> None:
        """After something was written to a connection's transport outside `publish_many`
        (a reply, a frame from its queue): count what it holds against the budget."""
        direct = subscriber.direct
        if direct is not None and direct.refresh() and subscriber.hub is self:
            self._backlog[subscriber] = None

    def heartbeat(self, interval: float) -> None:
        """Start this process's one heartbeat sweep (if it is not running in this event
        loop): every `interval` seconds a `ping` frame to every connection, instead of a
        timer per connection. The frame also makes a quiet connection whose token expired
        close (4401) through its writer."""
        task = self._heartbeat
        loop = asyncio.get_running_loop()
        if task is None or task.done() or task.get_loop() is not loop:
            self._heartbeat = loop.create_task(self._sweep(interval))

    async def _sweep(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.ping_all()

    def ping_all(self) -> None:
        """Offer a `ping` frame to every connection (serialised once)."""
        frame = {"type": "ping"}
        shared = {**frame, TEXT_KEY: json.dumps(frame, separators=(",", ":"))}
        for subscriber in tuple(self._subscribers):
            subscriber.offer(shared)
        self.enforce_budget()

    def publish(self, frame: dict[str, Any]) -> None:
        """Offer one event frame (see `publish_many`)."""
        self.publish_many([frame])

    def publish_many(self, frames: list[dict[str, Any]]) -> None:
        """Offer event frames, in order, to every connection subscribed to one of their
        channels.

        The work per event is done once per group of connections (see the class), not once
        per connection: which of the events the group may see, and the wire bytes of those
        frames, concatenated (they stay separate WebSocket frames). An idle connection with
        a direct writer gets those bytes in one write, here and now; one whose transport
        holds more than `write_buffer_limit` bytes is evicted (close 1013); any other (busy,
        replaying, no direct writer, token expired) gets the frames queued. Then the process
        budget is applied (`enforce_budget`)."""
        events = [_Event(frame) for frame in frames]
        limit = self.write_buffer_limit
        backlog = self._backlog
        for subscriber in tuple(backlog):
            if not subscriber.direct or not subscriber.direct.refresh():
                del backlog[subscriber]  # drained since the last look
        for (_, resolved, metrics, clock), members in tuple(self._groups.items()):
            sample = next(iter(members))
            seen: list[_Event] = []
            picked: list[tuple[dict[str, Any], bytes]] = []
            for event in events:
                if resolved.isdisjoint(event.names):
                    continue
                entry = event.addressed_to(sample)
                if entry is not None:
                    seen.append(event)
                    picked.append(entry)
            if not picked:
                continue
            wire = picked[0][1] if len(picked) == 1 else b"".join(entry[1] for entry in picked)
            now = clock.now() if clock is not None else None
            written = 0
            for subscriber in tuple(members):
                # Per socket only attribute reads and the write itself: this loop runs once
                # per connection for every event, the send system call is what must dominate.
                direct = subscriber.direct
                if (
                    direct is not None
                    and not subscriber.pending
                    and subscriber.held is None
                    and not subscriber.evicted
                    and (now is None or (expires := subscriber.expires_at) is None or now < expires)
                ):  # an expired one's frames go to its writer, which closes
                    if (  # DirectWriter.closed(), inline
                        direct.protocol.close_sent
                        or direct.closing()
                        or direct.conn.state is not direct.open_state
                    ):
                        continue  # its reader sees the disconnect
                    if direct.buffered > limit:
                        subscriber.evict()
                        continue
                    direct.send(wire)
                    written += 1
                    if direct.size():
                        direct.buffered = direct.size()
                        backlog[subscriber] = None
                    else:
                        direct.buffered = 0
                    continue
                for frame, _ in picked:
                    subscriber.offer(frame)
            if written:
                for event in seen:
                    event.written[metrics] = event.written.get(metrics, 0) + written
        self.enforce_budget()
        for event in events:
            event.observe(self.stats)
            for listener in self.listeners:
                listener(event.frame)

    def enforce_budget(self) -> None:
        """Keep what the transports hold unsent within `buffer_budget`: past it, drop the
        connections holding the most (their buffers freed at once; counted as evicted and
        as shed) until the rest fit. Their clients see the connection drop and resume with
        `since`, so nothing is lost; without this, every slow reader may hold up to
        `write_buffer_limit`, which for thousands of sockets is gigabytes."""
        backlog = self._backlog
        total = 0
        for subscriber in backlog:
            total += subscriber.direct.buffered if subscriber.direct else 0
        if total > self.buffer_budget:
            heaviest = sorted(
                backlog, key=lambda s: s.direct.buffered if s.direct else 0, reverse=True
            )
            for subscriber in heaviest:
                if total <= self.buffer_budget:
                    break
                direct = subscriber.direct
                if direct is None:
                    continue
                total -= direct.buffered
                direct.abort()
                del backlog[subscriber]
                subscriber.evict()
                self.stats.shed += 1
        self.stats.buffered = total


class _Event:
    """One event of a `publish_many` call: what is worked out once for all connections."""

    __slots__ = ("by_channels", "committed", "frame", "names", "prepared", "visible", "written")

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.names = channels_of(frame)
        self.committed = _instant(frame.get("occurred_at"))
        self.visible: dict[tuple[Any, ...], bool] = {}
        self.prepared: dict[tuple[str, ...], tuple[dict[str, Any], bytes]] = {}
        # The same, by a subscriber's (shared) channel set: one lookup per connection.
        self.by_channels: dict[frozenset[str], tuple[dict[str, Any], bytes]] = {}
        self.written: dict[Any, int] = {}  # frames written directly, by metrics object

    def addressed_to(self, subscriber: Subscriber) -> tuple[dict[str, Any], bytes] | None:
        """The frame (and its wire bytes) as this subscriber gets it, or None when it may
        not see it."""
        reader = subscriber.reader
        allowed = self.visible.get(reader)
        if allowed is None:
            allowed = self.visible[reader] = may_see(subscriber.principal, self.frame)
        if not allowed:
            return None
        resolved = subscriber.resolved
        entry = self.by_channels.get(resolved)
        if entry is not None:
            return entry
        key = tuple(sorted(resolved & self.names))
        entry = self.prepared.get(key)
        if entry is None:
            addressed = {**self.frame, "channels": list(key)}
            text = json.dumps(addressed, separators=(",", ":"))
            addressed[TEXT_KEY] = text
            if self.committed is not None:
                addressed[COMMITTED_KEY] = self.committed
            entry = self.prepared[key] = (addressed, encode_text(text.encode()))
        self.by_channels[resolved] = entry
        return entry

    def observe(self, stats: HubStats) -> None:
        """Count its direct writes, and their commit -> written latency, once."""
        if not self.written:
            return
        stats.sent += sum(self.written.values())
        if self.committed is None:
            return
        latency = max(0.0, time.time() - self.committed)
        for metrics, count in self.written.items():
            if metrics is not None:
                metrics.observe_delivery(latency, count)


def frame_for(subscriber: Subscriber, frame: dict[str, Any]) -> dict[str, Any] | None:
    """The frame as this subscriber receives it (with the channels it matched), or None
    when it is on none of its channels or the subscriber may not read its task."""
    matched = subscriber.resolved & channels_of(frame)
    if not matched or not may_see(subscriber.principal, frame):
        return None
    return {**frame, "channels": sorted(matched)}


def _instant(value: object) -> float | None:
    """An event's `occurred_at` (the outbox instant it was committed with) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_CHANNEL_SETS: dict[frozenset[str], frozenset[str]] = {}
CHANNEL_SETS_KEPT = 100_000


def _resolve(subscriber: Subscriber) -> frozenset[str]:
    """The subscriber's channels with ``user:me`` spelled as its own user id, as the one
    shared object for that set (its hash computed once, equal sets found by identity)."""
    names = set(subscriber.channels)
    if "user:me" in names:
        names.discard("user:me")
        names.add(f"user:{subscriber.principal.id}")
    frozen = frozenset(names)
    if len(_CHANNEL_SETS) >= CHANNEL_SETS_KEPT:
        _CHANNEL_SETS.clear()
    return _CHANNEL_SETS.setdefault(frozen, frozen)


HUB = Hub()
