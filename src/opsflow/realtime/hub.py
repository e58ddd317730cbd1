"""The process's live connections and the in-process bus that feeds them.

The outbox relay's realtime consumer publishes each committed event here once; the hub
offers it to every connection subscribed to a channel the event belongs to, as one frame
per connection. Offering never waits: each connection has a bounded queue drained by its
one writer, and a connection whose queue is full is marked for eviction (close 1013) so a
slow client never stalls the others.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opsflow.auth.permissions import Permission, reach_allows, reach_of
from opsflow.auth.principal import Principal
from opsflow.collaboration.service import reads_internal

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


@dataclass(eq=False)
class Subscriber:
    """One open connection as the hub sees it."""

    principal: Principal
    queue: asyncio.Queue[dict[str, Any]]
    channels: set[str] = field(default_factory=set)
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    # While a replay reads the outbox, live events wait here (then sent after it, skipping
    # what the replay already sent).
    held: list[dict[str, Any]] | None = None

    def offer(self, frame: dict[str, Any]) -> bool:
        if self.overflowed.is_set():
            return False
        if self.held is not None and isinstance(frame.get("id"), int):
            self.held.append(frame)
            return True
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed.set()
            return False
        return True


@dataclass
class HubStats:
    open: int = 0
    sent: int = 0
    evicted: int = 0
    refused: int = 0


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._per_user: dict[uuid.UUID, int] = {}
        self.stats = HubStats()
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def join(self, subscriber: Subscriber, *, limit: int) -> bool:
        """Register a connection; False (and counted as refused) past `limit` per user."""
        key = subscriber.principal.id
        if self._per_user.get(key, 0) >= limit:
            self.stats.refused += 1
            return False
        self._per_user[key] = self._per_user.get(key, 0) + 1
        self._subscribers.add(subscriber)
        self.stats.open += 1
        return True

    def leave(self, subscriber: Subscriber) -> None:
        if subscriber not in self._subscribers:
            return
        self._subscribers.discard(subscriber)
        key = subscriber.principal.id
        self._per_user[key] -= 1
        if not self._per_user[key]:
            del self._per_user[key]
        self.stats.open -= 1

    def publish(self, frame: dict[str, Any]) -> None:
        """Offer an event frame to every connection subscribed to one of its channels.

        The work per event is done once, not once per connection: the event's channels,
        whether a given kind of reader may see it (by user, role, team and scopes), and
        the serialised frame for each set of matched channels, shared by every connection
        that matched the same ones."""
        names = channels_of(frame)
        committed = _instant(frame.get("occurred_at"))
        visible: dict[tuple[Any, ...], bool] = {}
        prepared: dict[tuple[str, ...], dict[str, Any]] = {}
        for subscriber in list(self._subscribers):
            matched = _resolve(subscriber) & names
            if not matched:
                continue
            principal = subscriber.principal
            reader: tuple[Any, ...] = (principal.actor_type, principal.id, principal.role)
            reader += (principal.team_id, principal.scopes)
            allowed = visible.get(reader)
            if allowed is None:
                allowed = visible[reader] = may_see(principal, frame)
            if not allowed:
                continue
            key = tuple(sorted(matched))
            addressed = prepared.get(key)
            if addressed is None:
                addressed = {**frame, "channels": list(key)}
                addressed[TEXT_KEY] = json.dumps(addressed, separators=(",", ":"))
                if committed is not None:
                    addressed[COMMITTED_KEY] = committed
                prepared[key] = addressed
            subscriber.offer(addressed)
        for listener in self.listeners:
            listener(frame)


def frame_for(subscriber: Subscriber, frame: dict[str, Any]) -> dict[str, Any] | None:
    """The frame as this subscriber receives it (with the channels it matched), or None
    when it is on none of its channels or the subscriber may not read its task."""
    matched = _resolve(subscriber) & channels_of(frame)
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


def _resolve(subscriber: Subscriber) -> set[str]:
    """The subscriber's channels with ``user:me`` spelled as its own user id."""
    if "user:me" not in subscriber.channels:
        return subscriber.channels
    names = set(subscriber.channels)
    if "user:me" in names:
        names.discard("user:me")
        names.add(f"user:{subscriber.principal.id}")
    return names


HUB = Hub()
