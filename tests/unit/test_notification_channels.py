"""Delivery channels without a network: webhook signing, header injection, e-mail building,
URL and phone checks, SMS segmentation, status classification and the breaker wiring.
(Real SMTP and HTTP servers: tests/integration/test_notification_channels.py.)"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsflow.clock import SettableClock
from opsflow.models.enums import Channel
from opsflow.notifications.breaker import BreakerConfig, CircuitBreaker
from opsflow.notifications.channels import (
    Delivery,
    DeliveryResult,
    EmailChannel,
    RecordingSmsProvider,
    SlackChannel,
    SmsChannel,
    SmtpSettings,
    WebhookChannel,
    build_email,
    classify_status,
    clean_header,
    deliver,
    normalise_phone,
    outbox_file_name,
    parse_retry_after,
    segment_sms,
    sign,
    slack_message,
    url_origin,
    validate_url,
    verify,
)

T0 = datetime(2026, 1, 27, 10, 30, tzinfo=UTC)
SECRET = "whsec_test_secret"
BODY = b'{"type":"sla.breach","data":{"task":{"title":"Disk full"}}}'
NOTIFICATION_ID = uuid.UUID("990e8400-e29b-41d4-a716-446655440000")


def delivery(channel: Channel = Channel.EMAIL, **overrides: object) -> Delivery:
    values: dict[str, object] = {
        "notification_id": NOTIFICATION_ID,
        "channel": channel,
        "recipient": "Jane Smith",
        "address": "jane.smith@example.com",
        "idempotency_key": "notif-990e8400",
        "subject": "SLA Breach: Disk full",
        "body": "The resolution deadline has passed.\n",
        "event": "sla.breach",
    }
    values.update(overrides)
    return Delivery(**values)  # type: ignore[arg-type]


def file_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --------------------------------------------------------------------------- signing


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    stamp = int(T0.timestamp())
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, stamp, BODY) == f"sha256={expected}"
    assert sign(SECRET, str(stamp), BODY.decode()) == f"sha256={expected}"


def test_verify_accepts_a_fresh_genuine_signature() -> None:
    stamp = int(T0.timestamp())
    signature = sign(SECRET, stamp, BODY)
    assert verify(SECRET, stamp, BODY, signature, now=T0)
    assert verify(SECRET, str(stamp), BODY, signature, now=T0 + timedelta(seconds=300))
    assert verify(SECRET, stamp, BODY, signature, now=T0 - timedelta(seconds=300))


@pytest.mark.parametrize(
    ("secret", "stamp_delta", "body", "now_delta"),
    [
        ("other-secret", 0, BODY, 0),
        (SECRET, 1, BODY, 0),  # timestamp changed
        (SECRET, 0, BODY.replace(b"Disk", b"Dusk"), 0),  # body changed
        (SECRET, 0, BODY, 301),  # replayed too late
        (SECRET, 0, BODY, -301),  # from the future
    ],
)
def test_verify_rejects_tampering_and_stale_requests(
    secret: str, stamp_delta: int, body: bytes, now_delta: int
) -> None:
    stamp = int(T0.timestamp())
    signature = sign(SECRET, stamp, BODY)
    assert not verify(
        secret, stamp + stamp_delta, body, signature, now=T0 + timedelta(seconds=now_delta)
    )


def test_verify_handles_garbage_and_rotation() -> None:
    stamp = int(T0.timestamp())
    good = sign(SECRET, stamp, BODY)
    assert not verify(SECRET, "yesterday", BODY, good, now=T0)
    assert not verify(SECRET, stamp, BODY, "", now=T0)
    assert not verify(SECRET, stamp, BODY, good.removeprefix("sha256="), now=T0)
    # During secret rotation a sender may list several signatures.
    assert verify(SECRET, stamp, BODY, f"sha256={'0' * 64}, {good}", now=T0)
    assert verify(SECRET, stamp, BODY, good, now=T0, tolerance_seconds=0)
    assert not verify(SECRET, stamp, BODY, good, now=T0 + timedelta(seconds=1), tolerance_seconds=0)


def test_webhook_request_is_signed_with_the_clock_timestamp() -> None:
    clock = SettableClock(T0)
    channel = WebhookChannel(clock=clock)
    item = delivery(
        Channel.WEBHOOK,
        address="https://hooks.example.com/opsflow",
        payload={"type": "sla.breach", "data": {"id": uuid.UUID(int=1), "at": T0}},
        secret=SECRET,
        attempt=2,
    )
    body, headers = channel.request_for(item)
    assert body == (
        b'{"type":"sla.breach","data":{"id":"00000000-0000-0000-0000-000000000001",'
        b'"at":"2026-01-27T10:30:00Z"}}'
    )
    assert headers["X-OpsFlow-Timestamp"] == str(int(T0.timestamp()))
    assert headers["X-OpsFlow-Event"] == "sla.breach"
    assert headers["Idempotency-Key"] == headers["X-OpsFlow-Delivery"] == "notif-990e8400"
    assert headers["X-OpsFlow-Attempt"] == "2"
    assert verify(
        SECRET, headers["X-OpsFlow-Timestamp"], body, headers["X-OpsFlow-Signature"], now=T0
    )
    unsigned = channel.request_for(delivery(Channel.WEBHOOK, secret=None))[1]
    assert "X-OpsFlow-Signature" not in unsigned
    assert SECRET not in repr(item)


# --------------------------------------------------------------------------- headers, e-mail


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Disk full\r\nBcc: victim@example.com", "Disk full Bcc: victim@example.com"),
        ("a\nb\rc\x00d\x7fe", "a b c d e"),
        ("  spaced   out  ", "spaced out"),
    ],
)
def test_clean_header_removes_line_breaks_and_controls(raw: str, clean: str) -> None:
    assert clean_header(raw) == clean


def test_email_subject_and_label_cannot_inject_headers() -> None:
    item = delivery(
        subject="Breach\r\nBcc: victim@example.com\r\n\r\nfake body",
        recipient="Jane\r\nCc: other@example.com",
    )
    message = build_email(item, from_address="OpsFlow <noreply@ops.example.com>", now=T0)
    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed["Cc"] is None
    assert parsed["Subject"] == "Breach Bcc: victim@example.com fake body"
    assert parsed["To"].addresses[0].addr_spec == "jane.smith@example.com"


@pytest.mark.parametrize(
    "address",
    [
        "jane.smith@example.com\r\nBcc: victim@example.com",
        "not-an-address",
        "two@example.com, three@example.com",
        "Jane <jane@example.com>",
        "x@",
    ],
)
def test_email_needs_one_plain_address(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        build_email(delivery(address=address), from_address="noreply@x.example", now=T0)


def test_email_headers_carry_the_idempotency_key() -> None:
    message = build_email(
        delivery(html_body="<p>HTML</p>"), from_address="OpsFlow <noreply@ops.example.com>", now=T0
    )
    again = build_email(delivery(), from_address="OpsFlow <noreply@ops.example.com>", now=T0)
    other = build_email(
        delivery(idempotency_key="notif-other"), from_address="noreply@ops.example.com", now=T0
    )
    assert message["Message-ID"] == again["Message-ID"]
    assert message["Message-ID"] != other["Message-ID"]
    digest = hashlib.sha256(b"notif-990e8400").hexdigest()[:40]
    assert message["Message-ID"] == f"<{digest}@ops.example.com>"
    assert message["X-OpsFlow-Idempotency-Key"] == "notif-990e8400"
    assert message["X-OpsFlow-Notification-Id"] == str(NOTIFICATION_ID)
    assert message["X-OpsFlow-Event"] == "sla.breach"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Tue, 27 Jan 2026 10:30:00 +0000"
    assert str(message["To"]) == "Jane Smith <jane.smith@example.com>"
    assert message.get_body(("plain",)).get_content() == "The resolution deadline has passed.\n"  # type: ignore[union-attr]
    assert message.get_body(("html",)).get_content().strip() == "<p>HTML</p>"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("notif-990e8400", "notif-990e8400.eml"),
        ("n.1_2-3", "n.1_2-3.eml"),
        ("../../etc/passwd", hashlib.sha256(b"../../etc/passwd").hexdigest() + ".eml"),
        (".hidden", hashlib.sha256(b".hidden").hexdigest() + ".eml"),
        ("a/b", hashlib.sha256(b"a/b").hexdigest() + ".eml"),
        ("x" * 200, hashlib.sha256(b"x" * 200).hexdigest() + ".eml"),
    ],
)
def test_outbox_file_names_are_never_paths(key: str, name: str) -> None:
    assert outbox_file_name(key) == name


def test_email_channel_needs_a_host_or_an_outbox() -> None:
    with pytest.raises(ValueError, match="outbox"):
        EmailChannel(SmtpSettings(), clock=SettableClock(T0))


async def test_invalid_address_is_a_permanent_failure(tmp_path: Path) -> None:
    channel = EmailChannel(SmtpSettings(), clock=SettableClock(T0), outbox_dir=tmp_path)
    result = await channel.send(delivery(address="nobody"))
    assert not result.ok
    assert not result.retryable
    assert result.destination == "email:outbox"
    assert file_names(tmp_path) == []


def test_smtp_settings_do_not_show_the_password() -> None:
    assert "hunter2" not in repr(SmtpSettings(host="mail", password="hunter2"))


# --------------------------------------------------------------------------- URLs, statuses


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "javascript:alert(1)",
        "gopher://example.com",
        "https://",
        "/relative/path",
        "https://example.com/a b",
        "https://example.com/\r\nX-Evil: 1",
        "",
        "https://example.com/" + "x" * 2100,
    ],
)
def test_validate_url_refuses_everything_but_http_and_https(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|http"):
        validate_url(url)


def test_validate_url_accepts_http_and_https() -> None:
    assert validate_url("https://hooks.slack.com/services/T0/B0/X") == (
        "https://hooks.slack.com/services/T0/B0/X"
    )
    assert validate_url("http://127.0.0.1:8080/hook?x=1")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Hooks.Slack.com/services/T0/B0/SECRET", "https://hooks.slack.com:443"),
        ("http://user:pw@example.com/x?token=1", "http://example.com:80"),
        ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("not a url", "invalid-url"),
    ],
)
def test_destination_keys_are_origins_without_secrets(url: str, origin: str) -> None:
    assert url_origin(url) == origin


@pytest.mark.parametrize(
    ("status", "ok", "retryable"),
    [
        (200, True, False),
        (204, True, False),
        (301, False, False),
        (400, False, False),
        (401, False, False),
        (404, False, False),
        (408, False, True),
        (410, False, False),
        (422, False, False),
        (429, False, True),
        (500, False, True),
        (502, False, True),
        (503, False, True),
    ],
)
def test_classify_status(status: int, ok: bool, retryable: bool) -> None:
    assert classify_status(status) == (ok, retryable)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", T0) == timedelta(seconds=120)
    assert parse_retry_after(" 0 ", T0) == timedelta(0)
    assert parse_retry_after("Tue, 27 Jan 2026 10:35:00 GMT", T0) == timedelta(minutes=5)
    assert parse_retry_after("Tue, 27 Jan 2026 10:00:00 GMT", T0) == timedelta(0)
    assert parse_retry_after("99999999999", T0) == timedelta(days=7)
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


def test_result_errors_are_capped() -> None:
    result = DeliveryResult.failure("x", "e" * 5000, retryable=True, reply="r" * 5000)
    assert result.error is not None
    assert len(result.error) == 2000
    assert result.reply is not None
    assert len(result.reply) == 2000


# --------------------------------------------------------------------------- SMS


def test_short_sms_is_one_segment_with_whitespace_collapsed() -> None:
    assert segment_sms("  SLA   breach:\n disk full  ") == ["SLA breach: disk full"]
    assert segment_sms("x" * 160) == ["x" * 160]
    assert segment_sms("   ") == []


def test_long_sms_is_split_at_words_into_numbered_parts() -> None:
    words = " ".join(f"word{i:03d}" for i in range(30))  # 239 characters
    parts = segment_sms(words)
    assert len(parts) == 2
    assert all(len(part) <= 160 for part in parts)
    assert parts[0].endswith(" (1/2)")
    assert parts[1].endswith(" (2/2)")
    rejoined = " ".join(part.rsplit(" (", 1)[0] for part in parts)
    assert rejoined == words


def test_too_long_sms_is_cut_after_the_last_segment() -> None:
    words = " ".join(f"word{i:03d}" for i in range(200))
    parts = segment_sms(words)
    assert len(parts) == 3
    assert all(len(part) <= 160 for part in parts)
    assert parts[2].endswith("... (3/3)")
    body = parts[2].removesuffix("... (3/3)")
    assert body.split(" ")[-1].startswith("word")  # cut at a word boundary
    assert len(body.split(" ")[-1]) == 7
    single = segment_sms(words, max_segments=1)
    assert len(single) == 1
    assert len(single[0]) <= 160
    assert single[0].endswith("...")


def test_unicode_sms_uses_70_character_segments() -> None:
    assert segment_sms("é" * 160) == ["é" * 160]  # é is in the GSM-7 alphabet
    assert segment_sms("ł" * 70) == ["ł" * 70]
    parts = segment_sms("ł" * 71)
    assert len(parts) == 2
    assert all(len(part) <= 70 for part in parts)


def test_gsm_extension_characters_count_twice() -> None:
    assert segment_sms("{" * 80) == ["{" * 80]
    assert len(segment_sms("{" * 81)) == 2


def test_long_words_are_broken() -> None:
    url = "https://opsflow.example.com/tasks/" + "a" * 300
    parts = segment_sms(f"Breach {url}")
    assert len(parts) == 3
    assert all(len(part) <= 160 for part in parts)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("+49 151 1234-5678", "+4915112345678"),
        ("(555) 123.4567", "5551234567"),
        ("+1", None),
        ("call me", None),
        ("+49 151\r\n1234", "+491511234"),
        ("+123456789012345678", None),
    ],
)
def test_normalise_phone(raw: str, normal: str | None) -> None:
    assert normalise_phone(raw) == normal


async def test_sms_channel_sends_parts_with_their_own_keys() -> None:
    provider = RecordingSmsProvider()
    channel = SmsChannel(provider)
    body = " ".join(f"word{i:03d}" for i in range(30))
    result = await channel.send(delivery(Channel.SMS, address="+49 151 1234 5678", body=body))
    assert result.ok
    assert [sms.idempotency_key for sms in provider.sent] == [
        "notif-990e8400:1/2",
        "notif-990e8400:2/2",
    ]
    assert {sms.to for sms in provider.sent} == {"+4915112345678"}
    bad = await channel.send(delivery(Channel.SMS, address="jane@example.com"))
    assert not bad.ok
    assert not bad.retryable
    assert "phone" in (bad.error or "")


# --------------------------------------------------------------------------- Slack


def test_slack_message_shape() -> None:
    item = delivery(
        Channel.SLACK,
        address="https://hooks.slack.com/services/T0/B0/X",
        subject="SLA breached: Disk full",
        body=":red_circle: *SLA breached*: *Disk full*",
        payload={
            "title": "Disk full",
            "priority": "HIGH",
            "status": "IN_PROGRESS",
            "link": "https://ops.example.com/t/1?a=1&b=2",
        },
    )
    message = slack_message(item)
    assert message["text"] == ":red_circle: *SLA breached*: *Disk full*"
    header, section, context = message["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "SLA breached: Disk full", "emoji": True},
    }
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": message["text"]}}
    assert context["type"] == "context"
    assert context["elements"] == [
        {
            "type": "mrkdwn",
            "text": "*Priority:* HIGH | *Status:* IN_PROGRESS"
            " | <https://ops.example.com/t/1?a=1&amp;b=2|Open in OpsFlow>",
        }
    ]


def test_slack_message_escapes_facts_and_drops_bad_links() -> None:
    item = delivery(
        Channel.SLACK,
        subject=None,
        body="",
        payload={
            "task": {"title": "T" * 300, "priority": "<!here>", "status": "OPEN"},
            "link": "javascript:alert(1)",
        },
    )
    message = slack_message(item)
    header, _section, context = message["blocks"]
    assert len(header["text"]["text"]) == 150
    assert context["elements"][0]["text"] == "*Priority:* &lt;!here&gt; | *Status:* OPEN"


# --------------------------------------------------------------------------- breaker wiring


class ScriptedChannel:
    """A channel that answers from a script and counts its sends."""

    channel = Channel.WEBHOOK

    def __init__(self, results: list[DeliveryResult]) -> None:
        self.results = results
        self.sent = 0

    def destination_for(self, delivery: Delivery) -> str:
        return "webhook:https://down.example.com:443"

    async def send(self, delivery: Delivery) -> DeliveryResult:
        self.sent += 1
        return self.results.pop(0)


async def test_deliver_holds_deliveries_while_the_circuit_is_open() -> None:
    clock = SettableClock(T0)
    key = "webhook:https://down.example.com:443"
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=2))
    down = DeliveryResult.failure(key, "HTTP 503", retryable=True)
    channel = ScriptedChannel([down, down, DeliveryResult.success(key)])
    item = delivery(Channel.WEBHOOK)
    assert (await deliver(channel, item, breaker=breaker, clock=clock)).retryable
    assert not (await deliver(channel, item, breaker=breaker, clock=clock)).held
    held = await deliver(channel, item, breaker=breaker, clock=clock)
    assert held.held
    assert not held.ok
    assert held.retry_at == T0 + timedelta(seconds=60)
    assert channel.sent == 2  # held: nothing was attempted
    clock.advance(seconds=60)
    assert (await deliver(channel, item, breaker=breaker, clock=clock)).ok
    assert channel.sent == 3
    assert breaker.snapshot(clock.now()) == {key: "closed"}


async def test_permanent_failures_do_not_trip_the_breaker() -> None:
    clock = SettableClock(T0)
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1))
    gone = DeliveryResult.failure("k", "HTTP 404", retryable=False)
    assert gone.healthy
    channel = ScriptedChannel([gone, gone])
    await deliver(channel, delivery(), breaker=breaker, clock=clock)
    result = await deliver(channel, delivery(), breaker=breaker, clock=clock)
    assert not result.held
    assert channel.sent == 2


def test_channels_name_their_destinations() -> None:
    clock = SettableClock(T0)
    assert (
        WebhookChannel(clock=clock).destination_for(
            delivery(Channel.WEBHOOK, address="https://Example.com/hook/abc")
        )
        == "webhook:https://example.com:443"
    )
    assert (
        SlackChannel(clock=clock).destination_for(
            delivery(Channel.SLACK, address="https://hooks.slack.com/services/T0/B0/SECRET")
        )
        == "slack:https://hooks.slack.com:443"
    )
    smtp = EmailChannel(SmtpSettings(host="Mail.Example.com", port=587), clock=clock)
    assert smtp.destination_for(delivery()) == "smtp:mail.example.com:587"
    assert SmsChannel(RecordingSmsProvider()).destination_for(delivery()) == "sms:recording"
