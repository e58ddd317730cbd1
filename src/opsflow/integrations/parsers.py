"""Inbound bodies -> normalized alert events, with every problem of a body listed at once.

Four shapes arrive: the generic one (PagerDuty Events API v2 semantics), Prometheus
Alertmanager's webhook (version 4), Grafana's (Alertmanager's plus title/state/message) and
Elastic's (Kibana and Watcher have no fixed schema: JSON pointers say where to look).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opsflow.errors import ValidationFailed
from opsflow.integrations.schemas import MAPPING_FIELDS, Severity

TRIGGER, ACKNOWLEDGE, RESOLVE = "trigger", "acknowledge", "resolve"
ACTIONS = (TRIGGER, ACKNOWLEDGE, RESOLVE)
MAX_KEY = 255
MAX_SUMMARY = 1024
MAX_ALERTS = 1000

Problems = list[dict[str, Any]]


@dataclass
class AlertEvent:
    action: str
    dedup_key: str
    summary: str = ""
    severity: Severity = Severity.ERROR
    source: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    links: list[Any] = field(default_factory=list)
    # When the alert started and ended according to the sender (Alertmanager, Grafana):
    # a firing re-send that started before the last resolution is stale.
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generated_key: bool = False


def _problem(problems: Problems, where: str, message: str) -> None:
    problems.append({"field": where, "message": message})


MAX_DEPTH = 64


def _nul_paths(document: Any) -> list[str]:
    """Where strings (or keys) hold NUL characters; raises ValueError past MAX_DEPTH."""
    found: list[str] = []
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"number out of range at {path or 'body'}")
        if isinstance(value, str):
            if "\x00" in value or not _encodable(value):
                found.append(path or "body")
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key or not _encodable(key):
                    found.append(f"{path}.{key!r}" if path else repr(key))
                else:
                    stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                stack.append((item, f"{path}[{index}]", depth + 1))
    return sorted(found)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\\ud800"
        return False
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _invalid(message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": "body", "message": message}])


def load_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; malformed JSON (NaN and Infinity included), another type,
    nesting past MAX_DEPTH levels or NUL characters -> 400."""
    try:
        document = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise _invalid(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError):
        raise _invalid("Malformed JSON body") from None
    if not isinstance(document, dict):
        raise ValidationFailed(details=[{"field": "body", "message": "must be a JSON object"}])
    try:
        found = _nul_paths(document)
    except ValueError as exc:
        raise _invalid(f"JSON {exc}") from None
    if found:
        raise ValidationFailed(
            details=[
                {"field": f, "message": "must not contain NUL characters or lone surrogates"}
                for f in found
            ]
        )
    return document


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def _timestamp(value: Any, where: str, problems: Problems) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        _problem(problems, where, "must be an ISO 8601 timestamp")
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _problem(problems, where, "must be an ISO 8601 timestamp")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Alertmanager's "0001-01-01T00:00:00Z" means "not ended".
    return None if parsed.year <= 1 else parsed.astimezone(UTC)


_SEVERITY_WORDS = {
    Severity.CRITICAL: {"critical", "crit", "fatal", "emergency", "page", "p1", "sev1", "high"},
    Severity.ERROR: {"error", "err", "major", "p2", "sev2"},
    Severity.WARNING: {"warning", "warn", "medium", "minor", "p3", "sev3"},
    Severity.INFO: {"info", "informational", "low", "none", "notice", "p4", "p5", "sev4"},
}


def severity_of(value: Any, default: Severity = Severity.ERROR) -> Severity:
    """A sender's severity word as one of ours; an absent or unknown word: `default`."""
    word = (_text(value) or "").strip().lower()
    for severity, words in _SEVERITY_WORDS.items():
        if word in words:
            return severity
    return default


def _raise(problems: Problems) -> None:
    if problems:
        raise ValidationFailed(details=problems)


# --- generic (PagerDuty Events API v2 semantics) -----------------------------------------


def parse_generic(body: dict[str, Any]) -> AlertEvent:
    problems: Problems = []
    action = body.get("event_action")
    if action not in ACTIONS:
        _problem(problems, "event_action", "Must be one of: trigger, acknowledge, resolve")
    key = body.get("dedup_key")
    generated = False
    if key is not None and (not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY):
        _problem(problems, "dedup_key", f"must be a non-empty string of at most {MAX_KEY}")
    if key is None and action in (ACKNOWLEDGE, RESOLVE):
        _problem(problems, "dedup_key", f"required to {action}")
    if key is None and action == TRIGGER:
        key, generated = uuid.uuid4().hex, True
    payload = body.get("payload")
    summary: str = ""
    severity, source = Severity.ERROR, None
    if action == TRIGGER or payload is not None:
        if not isinstance(payload, dict):
            _problem(problems, "payload", "required: an object with summary, severity, source")
            payload = {}
        given = payload.get("summary")
        if not isinstance(given, str) or not given.strip():
            _problem(problems, "payload.summary", "required: a non-empty string")
        else:
            summary = given
        if len(summary) > MAX_SUMMARY:
            _problem(problems, "payload.summary", f"at most {MAX_SUMMARY} characters")
        raw_severity = payload.get("severity")
        if raw_severity not in {s.value for s in Severity}:
            _problem(problems, "payload.severity", "Must be one of: critical, error, warning, info")
        else:
            severity = Severity(raw_severity)
        source = payload.get("source")
        if not isinstance(source, str) or not source.strip():
            _problem(problems, "payload.source", "required: a non-empty string")
            source = None
        for name in ("component", "group", "class"):
            if payload.get(name) is not None and not isinstance(payload.get(name), str):
                _problem(problems, f"payload.{name}", "must be a string")
        if payload.get("custom_details") is not None and not isinstance(
            payload.get("custom_details"), dict | list | str | int | float | bool
        ):
            _problem(problems, "payload.custom_details", "must be JSON")
        _timestamp(payload.get("timestamp"), "payload.timestamp", problems)
    links = body.get("links", [])
    if not isinstance(links, list) or any(
        not isinstance(link, dict) or not isinstance(link.get("href"), str) for link in links
    ):
        _problem(problems, "links", "must be a list of {href, text}")
        links = []
    _raise(problems)
    assert isinstance(key, str)
    assert isinstance(action, str)
    return AlertEvent(
        action=action,
        dedup_key=key,
        summary=summary,
        severity=severity,
        source=source,
        payload=body,
        links=links,
        generated_key=generated,
    )


# --- Alertmanager and Grafana -------------------------------------------------------------


def _fingerprint(labels: dict[str, Any]) -> str:
    text = json.dumps(labels, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _alert_summary(alert: dict[str, Any], fallback: str) -> str:
    annotations = alert.get("annotations") or {}
    labels = alert.get("labels") or {}
    for candidate in (
        annotations.get("summary"),
        annotations.get("title"),
        annotations.get("description"),
        annotations.get("message"),
        labels.get("alertname"),
        fallback,
    ):
        text = _text(candidate)
        if text and text.strip():
            return text.strip()[:MAX_SUMMARY]
    return "Alert"


def parse_alertmanager(body: dict[str, Any], *, per_group: bool) -> list[AlertEvent]:
    """One event per alert, keyed by the alert's fingerprint (its label set), or one event
    for the whole group keyed by `groupKey` when the integration groups incidents."""
    problems: Problems = []
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        _problem(problems, "alerts", "required: a list of alerts")
        alerts = []
    elif len(alerts) > MAX_ALERTS:
        _problem(problems, "alerts", f"at most {MAX_ALERTS} alerts per notification")
    group_key = body.get("groupKey")
    if group_key is not None and not isinstance(group_key, str):
        _problem(problems, "groupKey", "must be a string")
    title = _text(body.get("title")) or ""
    common = {
        k: body.get(k)
        for k in ("receiver", "groupKey", "groupLabels", "commonLabels", "externalURL")
        if body.get(k) is not None
    }
    events: list[AlertEvent] = []
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            _problem(problems, where, "must be an object")
            continue
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            _problem(problems, f"{where}.status", "Must be one of: firing, resolved")
        labels = alert.get("labels") or {}
        if not isinstance(labels, dict):
            _problem(problems, f"{where}.labels", "must be an object")
            labels = {}
        if not isinstance(alert.get("annotations") or {}, dict):
            _problem(problems, f"{where}.annotations", "must be an object")
            alert = {**alert, "annotations": {}}
        fingerprint = alert.get("fingerprint")
        if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
            _problem(problems, f"{where}.fingerprint", "must be a non-empty string")
            fingerprint = None
        starts = _timestamp(alert.get("startsAt"), f"{where}.startsAt", problems)
        ends = _timestamp(alert.get("endsAt"), f"{where}.endsAt", problems)
        key = (fingerprint or _fingerprint(labels))[:MAX_KEY]
        events.append(
            AlertEvent(
                action=RESOLVE if status == "resolved" else TRIGGER,
                dedup_key=key,
                summary=_alert_summary(alert, title),
                severity=severity_of(labels.get("severity")),
                source=_text(labels.get("instance")) or _text(labels.get("job")),
                payload={**common, "alert": alert},
                links=[{"href": alert["generatorURL"], "text": "Source"}]
                if isinstance(alert.get("generatorURL"), str) and alert["generatorURL"]
                else [],
                starts_at=starts,
                ends_at=ends,
            )
        )
    if per_group and not isinstance(group_key, str):
        _problem(problems, "groupKey", "required when the integration groups incidents")
    _raise(problems)
    if not per_group or not events:
        return events
    assert isinstance(group_key, str)
    firing = [e for e in events if e.action == TRIGGER]
    worst = max(events, key=lambda e: _RANK[e.severity])
    status = body.get("status")
    resolved = status == "resolved" or not firing
    return [
        AlertEvent(
            action=RESOLVE if resolved else TRIGGER,
            dedup_key=hashlib.sha256(group_key.encode()).hexdigest()
            if len(group_key) > MAX_KEY
            else group_key,
            summary=title or (firing[0] if firing else events[0]).summary,
            severity=worst.severity,
            source=worst.source,
            payload={**common, "alerts": [e.payload["alert"] for e in events]},
            links=[link for e in events for link in e.links][:10],
            starts_at=min((e.starts_at for e in firing if e.starts_at), default=None),
            ends_at=max((e.ends_at for e in events if e.ends_at), default=None),
        )
    ]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


# --- Elastic (Kibana rule actions, Watcher webhook actions) ------------------------------

# Where to look when the integration names no pointer: Kibana's documented rule variables
# ({{rule.id}}, {{alert.id}}, {{context.message}}, {{alert.actionGroup}}...) posted under
# their own names, then Watcher's ctx (watch_id, payload) posted whole or under "ctx".
DEFAULT_POINTERS: dict[str, tuple[str, ...]] = {
    "dedup_key": ("/alert/id", "/rule/id", "/watch_id", "/ctx/watch_id", "/id"),
    "summary": (
        "/context/message",
        "/context/reason",
        "/rule/name",
        "/message",
        "/summary",
        "/ctx/metadata/name",
        "/metadata/name",
        "/watch_id",
        "/ctx/watch_id",
    ),
    "severity": ("/severity", "/rule/severity", "/context/severity", "/ctx/metadata/severity"),
    "action": ("/action", "/event_action", "/alert/actionGroup", "/state"),
}


def resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901: the value at `pointer`, or None when any step is missing."""
    if pointer == "":
        return document
    current = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict):
            if token not in current:
                return None
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return None
    return current


def _first(document: dict[str, Any], pointers: tuple[str, ...]) -> str | None:
    for pointer in pointers:
        text = _text(resolve_pointer(document, pointer))
        if text is not None and text.strip():
            return text.strip()
    return None


_ACTION_WORDS = {
    TRIGGER: {"trigger", "triggered", "firing", "fire", "alert", "active", "open", "error"},
    ACKNOWLEDGE: {"acknowledge", "acknowledged", "ack"},
    RESOLVE: {"resolve", "resolved", "recovered", "recovery", "ok", "closed", "inactive"},
}


def parse_elastic(body: dict[str, Any], mapping: dict[str, Any]) -> AlertEvent:
    problems: Problems = []
    found: dict[str, str | None] = {}
    for name in MAPPING_FIELDS:
        pointer = mapping.get(name)
        pointers = (pointer,) if isinstance(pointer, str) else DEFAULT_POINTERS[name]
        found[name] = _first(body, pointers)
    key = found["dedup_key"]
    if mapping.get("dedup_key") is None:
        rule_id = _text(resolve_pointer(body, "/rule/id"))
        alert_id = _text(resolve_pointer(body, "/alert/id"))
        if rule_id and alert_id:
            key = f"{rule_id}:{alert_id}"
    if key is None:
        _problem(problems, "body", "no dedup key found: set the integration's mapping.dedup_key")
    elif len(key) > MAX_KEY:
        key = hashlib.sha256(key.encode()).hexdigest()
    action = TRIGGER
    if found["action"] is not None:
        word = found["action"].lower()
        matched = [a for a, words in _ACTION_WORDS.items() if word in words]
        # Kibana's action groups other than "recovered" ("threshold met", "query matched")
        # mean the rule fired.
        action = matched[0] if matched else TRIGGER
    _raise(problems)
    assert key is not None
    return AlertEvent(
        action=action,
        dedup_key=key,
        summary=(found["summary"] or f"Elastic alert {key}")[:MAX_SUMMARY],
        severity=severity_of(found["severity"]),
        source=_text(resolve_pointer(body, "/rule/name")) or _text(body.get("watch_id")),
        payload=body,
    )
