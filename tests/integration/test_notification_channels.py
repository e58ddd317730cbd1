"""Delivery channels against real servers on loopback, started by the tests.

- SMTP: an aiosmtpd sink (its own thread and event loop) that records envelopes, can refuse
  recipients and can require a login; a socket that accepts and never greets (timeouts).
- HTTP: a minimal HTTP/1.1 server on ``asyncio.start_server`` that records each request and
  answers from a script (a status, a ``Retry-After``, a huge body, a redirect, or never).

Nothing sleeps to let time pass: timeouts are short and bounded by ``asyncio.wait_for``,
the breaker's time is a settable clock.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from opsflow.clock import SettableClock
from opsflow.models.enums import Channel
from opsflow.notifications.backoff import next_attempt_at
from opsflow.notifications.breaker import BreakerConfig, CircuitBreaker
from opsflow.notifications.channels import (
    Delivery,
    EmailChannel,
    HttpSmsProvider,
    RecordingSmsProvider,
    SlackChannel,
    SmsChannel,
    SmtpSettings,
    WebhookChannel,
    deliver,
    verify,
)
from opsflow.notifications.channels.http import Connections
from opsflow.notifications.templates import NotificationTemplates, sample_context
from tests.sinks import ENDLESS, HANG, HttpSink, Reply, SmtpSink, free_port

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
SECRET = "whsec_integration"
GUARD = 10  # seconds: no single exchange in these tests may take longer


def make_delivery(channel: Channel, address: str, **overrides: Any) -> Delivery:
    values: dict[str, Any] = {
        "notification_id": uuid.UUID("990e8400-e29b-41d4-a716-446655440000"),
        "channel": channel,
        "recipient": "Jane Smith",
        "address": address,
        "idempotency_key": "notif-990e8400-e29b",
        "event": "sla.breach",
    }
    values.update(overrides)
    return Delivery(**values)


def file_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def read_message(path: Path) -> tuple[bytes, EmailMessage]:
    raw = path.read_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


async def guarded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, GUARD)


# --------------------------------------------------------------------------- SMTP sink


def smtp_channel(port: int, **settings: Any) -> EmailChannel:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "from_address": "OpsFlow <noreply@ops.example.com>",
        "timeout": 5.0,
    }
    values.update(settings)
    return EmailChannel(SmtpSettings(**values), clock=SettableClock(T0))


def rendered_email_delivery(**overrides: Any) -> Delivery:
    rendered = NotificationTemplates().render(
        "sla.breach", Channel.EMAIL, sample_context("sla.breach")
    )
    values: dict[str, Any] = {
        "subject": rendered.subject,
        "body": rendered.body,
        "html_body": rendered.html,
    }
    values.update(overrides)
    return make_delivery(Channel.EMAIL, "jane.smith@example.com", **values)


async def test_email_over_smtp_arrives_with_its_headers(
    smtp_with_auth: tuple[SmtpSink, int],
) -> None:
    sink, port = smtp_with_auth
    channel = smtp_channel(port)
    result = await guarded(channel.send(rendered_email_delivery()))
    assert result.ok, result.error
    assert result.destination == f"smtp:127.0.0.1:{port}"
    assert len(sink.received) == 1
    received = sink.received[0]
    assert received.mail_from == "noreply@ops.example.com"
    assert received.rcpt_tos == ["jane.smith@example.com"]
    message = received.message
    assert message["Subject"] == "SLA Breach: Database connection pool exhaustion"
    assert message["From"] == "OpsFlow <noreply@ops.example.com>"
    assert message["To"] == "Jane Smith <jane.smith@example.com>"
    assert message["X-OpsFlow-Idempotency-Key"] == "notif-990e8400-e29b"
    assert message["X-OpsFlow-Event"] == "sla.breach"
    digest = hashlib.sha256(b"notif-990e8400-e29b").hexdigest()[:40]
    assert message["Message-ID"] == f"<{digest}@ops.example.com>"
    assert message["Date"] == "Tue, 27 Jan 2026 10:30:00 +0000"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "has been breached: it was due Tue 27 Jan 2026, 14:30 UTC" in text.get_content()
    assert "<h1" in html.get_content()


async def test_smtp_login_is_used_when_configured(smtp_with_auth: tuple[SmtpSink, int]) -> None:
    sink, port = smtp_with_auth
    ok = await guarded(
        smtp_channel(port, username="opsflow", password="s3cret").send(rendered_email_delivery())
    )
    assert ok.ok, ok.error
    assert sink.logins == [("opsflow", "s3cret")]
    denied = await guarded(
        smtp_channel(port, username="opsflow", password="wrong-pw").send(rendered_email_delivery())
    )
    assert not denied.ok
    assert not denied.retryable  # 535: fix the configuration, do not hammer
    assert denied.status_code == 535
    assert "wrong-pw" not in (denied.error or "")
    assert len(sink.received) == 1


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 No such user", False), ("451 4.3.0 Mailbox busy, try later", True)],
)
async def test_refused_recipients_are_classified_by_reply_code(
    smtp_with_auth: tuple[SmtpSink, int], reply: str, retryable: bool
) -> None:
    sink, port = smtp_with_auth
    sink.refuse["jane.smith@example.com"] = reply
    result = await guarded(smtp_channel(port).send(rendered_email_delivery()))
    assert not result.ok
    assert result.retryable is retryable
    assert result.status_code == int(reply[:3])
    assert reply.split(" ", 2)[2] in (result.error or "")
    assert sink.received == []


async def test_unreachable_smtp_server_is_retryable() -> None:
    port = free_port()  # nothing listens there
    result = await guarded(smtp_channel(port).send(rendered_email_delivery()))
    assert not result.ok
    assert result.retryable
    assert result.error


async def test_silent_smtp_server_times_out_and_is_retryable() -> None:
    release = asyncio.Event()

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        result = await guarded(smtp_channel(port, timeout=0.3).send(rendered_email_delivery()))
        assert time.monotonic() - started < 3
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    assert not result.ok
    assert result.retryable
    assert "timed out" in (result.error or "").lower()


async def test_without_smtp_host_email_goes_to_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "mail" / "outbox"
    channel = EmailChannel(SmtpSettings(), clock=SettableClock(T0), outbox_dir=outbox)
    item = rendered_email_delivery()
    first = await guarded(channel.send(item))
    assert first.ok, first.error
    assert first.destination == "email:outbox"
    assert file_names(outbox) == ["notif-990e8400-e29b.eml"]
    raw, message = read_message(outbox / "notif-990e8400-e29b.eml")
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")  # RFC 5322 line endings throughout
    assert message["Subject"] == "SLA Breach: Database connection pool exhaustion"
    assert message["X-OpsFlow-Idempotency-Key"] == "notif-990e8400-e29b"
    assert message["Message-ID"].startswith(
        "<" + hashlib.sha256(b"notif-990e8400-e29b").hexdigest()[:40]
    )
    # A re-delivery (retry after a crash) replaces the file instead of adding one.
    again = await guarded(channel.send(rendered_email_delivery(attempt=2, subject="Changed")))
    assert again.ok
    assert file_names(outbox) == ["notif-990e8400-e29b.eml"]
    _raw, changed = read_message(outbox / "notif-990e8400-e29b.eml")
    assert changed["Subject"] == "Changed"
    other = await guarded(channel.send(rendered_email_delivery(idempotency_key="notif-2")))
    assert other.ok
    assert file_names(outbox) == ["notif-2.eml", "notif-990e8400-e29b.eml"]


@pytest.fixture
def blocked_folder(tmp_path: Path) -> Path:
    """A path under a regular file: no folder can be created there."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the outbox folder should be")
    return blocker / "outbox"


async def test_unwritable_outbox_is_a_retryable_failure(blocked_folder: Path) -> None:
    channel = EmailChannel(SmtpSettings(), clock=SettableClock(T0), outbox_dir=blocked_folder)
    result = await guarded(channel.send(rendered_email_delivery()))
    assert not result.ok
    assert result.retryable


# --------------------------------------------------------------------------- HTTP sink


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    server = HttpSink()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookChannel]:
    async with WebhookChannel(clock=SettableClock(T0), timeout=2.0) as channel:
        yield channel


def webhook_delivery(sink: HttpSink, **overrides: Any) -> Delivery:
    context = sample_context("sla.breach")
    values: dict[str, Any] = {"payload": context["webhook"], "secret": SECRET}
    values.update(overrides)
    return make_delivery(Channel.WEBHOOK, f"{sink.url}/hooks/opsflow", **values)


async def test_webhook_post_is_signed_and_verifiable(
    sink: HttpSink, webhook: WebhookChannel
) -> None:
    item = webhook_delivery(sink)
    result = await guarded(webhook.send(item))
    assert result.ok, result.error
    assert result.status_code == 200
    assert result.reply == "ok"
    assert result.destination == f"webhook:http://127.0.0.1:{sink.port}"
    [request] = sink.requests
    assert request.method == "POST"
    assert request.path == "/hooks/opsflow"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-opsflow-event"] == "sla.breach"
    assert request.headers["idempotency-key"] == "notif-990e8400-e29b"
    assert request.headers["x-opsflow-delivery"] == "notif-990e8400-e29b"
    assert request.headers["x-opsflow-timestamp"] == str(int(T0.timestamp()))
    assert request.headers["user-agent"].startswith("OpsFlow")
    assert request.json() == sample_context("sla.breach")["webhook"]
    assert verify(
        SECRET,
        request.headers["x-opsflow-timestamp"],
        request.body,
        request.headers["x-opsflow-signature"],
        now=T0 + timedelta(seconds=5),
    )
    assert not verify(
        "wrong",
        request.headers["x-opsflow-timestamp"],
        request.body,
        request.headers["x-opsflow-signature"],
        now=T0,
    )
    assert not verify(
        SECRET,
        request.headers["x-opsflow-timestamp"],
        request.body,
        request.headers["x-opsflow-signature"],
        now=T0 + timedelta(minutes=6),
    )


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [
        (Reply(500, b"boom"), True),
        (Reply(503, b"maintenance"), True),
        (Reply(404, b"no such hook"), False),
        (Reply(302, b"", {"Location": "http://127.0.0.1:1/elsewhere"}), False),
    ],
)
async def test_http_failures_are_classified(
    sink: HttpSink, webhook: WebhookChannel, reply: Reply, retryable: bool
) -> None:
    sink.script.append(reply)
    result = await guarded(webhook.send(webhook_delivery(sink)))
    assert not result.ok
    assert result.retryable is retryable
    assert result.status_code == reply.status
    assert (result.error or "").startswith(f"HTTP {reply.status}")
    assert len(sink.requests) == 1  # a redirect is not followed


async def test_429_carries_the_retry_after_hint(sink: HttpSink, webhook: WebhookChannel) -> None:
    sink.script.append(Reply(429, b"slow down", {"Retry-After": "120"}))
    result = await guarded(webhook.send(webhook_delivery(sink)))
    assert not result.ok
    assert result.retryable
    assert result.retry_after == timedelta(seconds=120)
    retry = next_attempt_at(1, T0, jitter="none", retry_after=result.retry_after)
    assert retry == T0 + timedelta(seconds=120)


async def test_failing_then_recovering_endpoint_with_the_breaker(sink: HttpSink) -> None:
    clock = SettableClock(T0)
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2, cooldown=timedelta(seconds=60)))
    sink.script += [Reply(500, b"down"), Reply(500, b"down")]
    async with WebhookChannel(clock=clock, timeout=2.0) as channel:
        item = webhook_delivery(sink)
        first = await guarded(deliver(channel, item, breaker=breaker, clock=clock))
        second = await guarded(deliver(channel, item, breaker=breaker, clock=clock))
        assert (first.retryable, second.retryable) == (True, True)
        held = await guarded(deliver(channel, item, breaker=breaker, clock=clock))
        assert held.held
        assert held.retry_at == T0 + timedelta(seconds=60)
        assert len(sink.requests) == 2  # the held delivery never left
        clock.advance(seconds=60)
        probe = await guarded(deliver(channel, item, breaker=breaker, clock=clock))
        assert probe.ok
        assert len(sink.requests) == 3
        assert breaker.snapshot(clock.now()) == {f"webhook:{sink.url}": "closed"}


async def test_a_hanging_endpoint_times_out_as_retryable(sink: HttpSink) -> None:
    sink.script.append(HANG)
    async with WebhookChannel(clock=SettableClock(T0), timeout=0.3) as channel:
        started = time.monotonic()
        result = await guarded(channel.send(webhook_delivery(sink)))
        elapsed = time.monotonic() - started
    assert not result.ok
    assert result.retryable
    assert result.error == "timed out after 0.3s"
    assert elapsed < 3


async def test_unreachable_endpoint_is_retryable(webhook: WebhookChannel) -> None:
    item = make_delivery(Channel.WEBHOOK, f"http://127.0.0.1:{free_port()}/hook", payload={"a": 1})
    result = await guarded(webhook.send(item))
    assert not result.ok
    assert result.retryable
    assert result.error


async def test_huge_responses_are_read_only_up_to_the_cap(sink: HttpSink) -> None:
    sink.script.append(ENDLESS)
    async with WebhookChannel(
        clock=SettableClock(T0), timeout=3.0, max_response_bytes=1024
    ) as channel:
        result = await guarded(channel.send(webhook_delivery(sink)))
    assert result.status_code == 500, result.error  # not "timed out": reading stopped
    assert result.reply == "x" * 500
    assert result.retryable
    assert result.error is not None
    assert len(result.error) <= 2000


async def test_non_http_urls_are_refused_without_a_request(
    sink: HttpSink, webhook: WebhookChannel
) -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", f"{sink.url}/x\r\nX-Evil: 1"):
        result = await guarded(webhook.send(make_delivery(Channel.WEBHOOK, url, payload={})))
        assert not result.ok
        assert not result.retryable
    assert sink.requests == []


async def test_shared_connections_are_left_open(sink: HttpSink) -> None:
    connections = Connections()
    try:
        channel = WebhookChannel(clock=SettableClock(T0), connections=connections)
        assert (await guarded(channel.send(webhook_delivery(sink)))).ok
        await channel.aclose()
        other = WebhookChannel(clock=SettableClock(T0), connections=connections)
        assert (await guarded(other.send(webhook_delivery(sink)))).ok
    finally:
        await connections.aclose()
    assert len(sink.requests) == 2


@pytest.fixture
async def proxy() -> AsyncIterator[HttpSink]:
    """A sink standing in for a forward proxy: it records the absolute-form target a
    client sends a proxy, and answers itself."""
    server = HttpSink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The test's environment, with no proxy settings of the machine's own."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_the_proxy_the_environment_names_is_used(
    sink: HttpSink, proxy: HttpSink, environ: pytest.MonkeyPatch
) -> None:
    environ.setenv("HTTP_PROXY", f"http://relay:s3cret@127.0.0.1:{proxy.port}")
    async with WebhookChannel(clock=SettableClock(T0), timeout=3.0) as channel:
        result = await guarded(
            channel.send(make_delivery(Channel.WEBHOOK, "http://hooks.invalid/in", payload={}))
        )
    assert result.ok, result.error
    assert sink.requests == []
    [request] = proxy.requests
    assert request.path == "http://hooks.invalid/in"
    assert request.headers["host"] == "hooks.invalid"
    credentials = base64.b64encode(b"relay:s3cret").decode()
    assert request.headers["proxy-authorization"] == f"Basic {credentials}"
    assert request.headers["idempotency-key"] == "notif-990e8400-e29b"


async def test_no_proxy_hosts_are_reached_directly(
    sink: HttpSink, proxy: HttpSink, environ: pytest.MonkeyPatch
) -> None:
    environ.setenv("ALL_PROXY", proxy.url)
    environ.setenv("NO_PROXY", "localhost,127.0.0.1")
    async with WebhookChannel(clock=SettableClock(T0), timeout=3.0) as channel:
        result = await guarded(channel.send(webhook_delivery(sink)))
    assert result.ok, result.error
    assert proxy.requests == []
    [request] = sink.requests
    assert request.path == "/hooks/opsflow"


async def test_a_proxy_of_another_kind_fails_the_delivery_for_good(
    sink: HttpSink, environ: pytest.MonkeyPatch
) -> None:
    environ.setenv("http_proxy", "socks5://127.0.0.1:1080")
    async with WebhookChannel(clock=SettableClock(T0), timeout=3.0) as channel:
        result = await guarded(channel.send(webhook_delivery(sink)))
    assert not result.ok
    assert not result.retryable
    assert result.error is not None
    assert "unsupported proxy socks5" in result.error
    assert sink.requests == []


async def test_slack_payload_shape(sink: HttpSink) -> None:
    context = sample_context("sla.breach")
    rendered = NotificationTemplates().render("sla.breach", Channel.SLACK, context)
    item = make_delivery(
        Channel.SLACK,
        f"{sink.url}/services/T000/B000/XXXXSECRET",
        subject=rendered.subject,
        body=rendered.body,
        payload=rendered.payload,
    )
    async with SlackChannel(clock=SettableClock(T0), timeout=2.0) as channel:
        result = await guarded(channel.send(item))
    assert result.ok, result.error
    assert result.destination == f"slack:http://127.0.0.1:{sink.port}"
    [request] = sink.requests
    assert request.path == "/services/T000/B000/XXXXSECRET"
    assert request.headers["idempotency-key"] == "notif-990e8400-e29b"
    message = request.json()
    assert message["text"] == rendered.body
    assert [block["type"] for block in message["blocks"]] == ["header", "section", "context"]
    assert message["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": "SLA breached: Database connection pool exhaustion",
        "emoji": True,
    }
    assert message["blocks"][1]["text"]["type"] == "mrkdwn"
    context_text = message["blocks"][2]["elements"][0]["text"]
    assert "*Priority:* CRITICAL" in context_text
    assert "*Status:* IN_PROGRESS" in context_text
    assert f"<{context['link']}|Open in OpsFlow>" in context_text


async def test_slack_errors_do_not_leak_the_webhook_secret(sink: HttpSink) -> None:
    secret_path = "/services/T000/B000/XXXXSECRET"
    sink.script.append(Reply(404, f"no hook at {secret_path}".encode()))
    item = make_delivery(Channel.SLACK, f"{sink.url}{secret_path}", subject="x", body="y")
    async with SlackChannel(clock=SettableClock(T0)) as channel:
        result = await guarded(channel.send(item))
    assert not result.ok
    assert not result.retryable
    assert "XXXXSECRET" not in (result.error or "")
    assert "XXXXSECRET" not in (result.reply or "")
    assert "XXXXSECRET" not in result.destination


# --------------------------------------------------------------------------- SMS


async def test_recording_provider_fails_then_delivers_once() -> None:
    provider = RecordingSmsProvider()
    provider.fail_next(1)
    channel = SmsChannel(provider)
    rendered = NotificationTemplates().render(
        "sla.breach", Channel.SMS, sample_context("sla.breach")
    )
    item = make_delivery(Channel.SMS, "+49 151 1234 5678", body=rendered.body)
    failed = await channel.send(item)
    assert not failed.ok
    assert failed.retryable
    assert provider.sent == []
    ok = await channel.send(item)
    assert ok.ok
    again = await channel.send(item)  # a duplicate attempt: the provider drops it
    assert again.ok
    texts = [sms.text for sms in provider.sent]
    assert len(texts) == 2  # the breach SMS with its link takes two segments
    assert texts[0].startswith("OpsFlow SLA BREACH: CRITICAL incident")
    assert texts[0].endswith("(1/2)")
    assert all(len(text) <= 160 for text in texts)


async def test_http_sms_provider_posts_json_with_a_bearer_token(sink: HttpSink) -> None:
    provider = HttpSmsProvider(
        f"{sink.url}/sms/send", clock=SettableClock(T0), token="tok-123", timeout=2.0
    )
    try:
        channel = SmsChannel(provider)
        result = await guarded(
            channel.send(
                make_delivery(Channel.SMS, "+1 (555) 123-4567", body="SLA breach: Disk full")
            )
        )
    finally:
        await provider.aclose()
    assert result.ok, result.error
    assert result.destination == f"sms:http://127.0.0.1:{sink.port}"
    [request] = sink.requests
    assert request.path == "/sms/send"
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["idempotency-key"] == "notif-990e8400-e29b"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"to": "+15551234567", "text": "SLA breach: Disk full"}


async def test_http_sms_provider_posts_a_form_with_basic_auth(sink: HttpSink) -> None:
    provider = HttpSmsProvider(
        f"{sink.url}/sms",
        clock=SettableClock(T0),
        basic_auth=("acct", "pw"),
        encoding="form",
        extra_fields={"from": "OpsFlow"},
    )
    try:
        long_text = " ".join(f"word{i:03d}" for i in range(30))
        result = await guarded(
            SmsChannel(provider).send(make_delivery(Channel.SMS, "+15551234567", body=long_text))
        )
    finally:
        await provider.aclose()
    assert result.ok, result.error
    assert len(sink.requests) == 2
    expected_auth = "Basic " + base64.b64encode(b"acct:pw").decode()
    for index, request in enumerate(sink.requests, 1):
        assert request.headers["authorization"] == expected_auth
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.headers["idempotency-key"] == f"notif-990e8400-e29b:{index}/2"
        form = parse_qs(request.body.decode())
        assert form["to"] == ["+15551234567"]
        assert form["from"] == ["OpsFlow"]
        assert form["text"][0].endswith(f"({index}/2)")


async def test_http_sms_provider_failure_is_classified(sink: HttpSink) -> None:
    sink.script += [Reply(503, b"busy", {"Retry-After": "30"}), Reply(400, b"bad number")]
    provider = HttpSmsProvider(f"{sink.url}/sms", clock=SettableClock(T0), token="tok-123")
    try:
        channel = SmsChannel(provider)
        item = make_delivery(Channel.SMS, "+15551234567", body="hello")
        busy = await guarded(channel.send(item))
        bad = await guarded(channel.send(item))
    finally:
        await provider.aclose()
    assert (busy.retryable, busy.retry_after) == (True, timedelta(seconds=30))
    assert not bad.retryable
    assert "tok-123" not in (bad.error or "")
