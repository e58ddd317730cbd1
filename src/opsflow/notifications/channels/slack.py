"""Slack incoming webhooks: a fallback text plus Block Kit blocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opsflow.models.enums import Channel
from opsflow.notifications.channels.base import Delivery, DeliveryResult, clean_header, clip
from opsflow.notifications.channels.http import HttpChannel, json_bytes
from opsflow.notifications.channels.urls import url_origin, validate_url


class SlackChannel(HttpChannel):
    """Slack incoming webhooks: ``text`` (notification fallback) plus Block Kit blocks.

    The header is ``delivery.subject`` (or ``payload["title"]``), the section is
    ``delivery.body`` (Slack mrkdwn, already escaped by the SLACK templates) and the context
    line shows ``payload`` facts: priority, status and a link.
    """

    channel = Channel.SLACK

    def destination_for(self, delivery: Delivery) -> str:
        return f"slack:{url_origin(delivery.address)}"

    async def send(self, delivery: Delivery) -> DeliveryResult:
        body = json_bytes(slack_message(delivery))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery.idempotency_key,
            "X-OpsFlow-Delivery": delivery.idempotency_key,
        }
        return await self._http.post(
            delivery.address,
            content=body,
            headers=headers,
            destination=self.destination_for(delivery),
        )


def slack_escape(text: str) -> str:
    """Slack's three control characters; anything else is literal in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(delivery: Delivery) -> dict[str, Any]:
    """The incoming-webhook JSON for a delivery (limits: header 150, section 3000)."""
    facts = delivery.payload
    task = facts.get("task") if isinstance(facts.get("task"), Mapping) else {}

    def fact(name: str) -> str:
        value = facts.get(name)
        if value is None and isinstance(task, Mapping):
            value = task.get(name)
        return "" if value is None else clean_header(str(value))

    title = clean_header(delivery.subject or "") or fact("title") or "OpsFlow notification"
    text = delivery.body.strip() or slack_escape(title)
    context: list[str] = []
    for label, name in (("Priority", "priority"), ("Status", "status")):
        if value := fact(name):
            context.append(f"*{label}:* {slack_escape(value)}")
    link = fact("link") or fact("url")
    if link:
        try:
            validate_url(link)
        except ValueError:
            link = ""
    if link:
        context.append(f"<{slack_escape(link)}|Open in OpsFlow>")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(title, 150), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, 3000)}},
    ]
    if context:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " | ".join(context)}]}
        )
    return {"text": clip(text, 3000), "blocks": blocks}
