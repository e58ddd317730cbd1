"""The process's delivery collaborators: one channel per kind, the circuit breaker, the
templates — built once from the settings and shared by every delivery pass."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from opsflow.clock import Clock
from opsflow.config import Settings
from opsflow.models.enums import Channel
from opsflow.notifications.breaker import CircuitBreaker
from opsflow.notifications.channels import (
    DeliveryChannel,
    EmailChannel,
    HttpSmsProvider,
    RecordingSmsProvider,
    SlackChannel,
    SmsChannel,
    SmsProvider,
    SmtpSettings,
    WebhookChannel,
)
from opsflow.notifications.templates import NotificationTemplates


@dataclass
class Notifier:
    channels: dict[Channel, DeliveryChannel]
    breaker: CircuitBreaker
    templates: NotificationTemplates
    sms_provider: SmsProvider
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Notifier:
        """Without an SMS provider URL, text messages go to an in-memory recording provider
        (visible to tests and demos, delivered nowhere)."""
        provider: SmsProvider = (
            HttpSmsProvider(
                settings.sms_provider_url, clock=clock, token=settings.sms_provider_token
            )
            if settings.sms_provider_url
            else RecordingSmsProvider()
        )
        email = EmailChannel(
            SmtpSettings(
                host=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password,
                starttls=settings.smtp_starttls,
                use_tls=settings.smtp_ssl,
                from_address=settings.smtp_from,
            ),
            clock=clock,
            outbox_dir=settings.mail_outbox_dir or settings.data_dir / "mail-outbox",
        )
        return cls(
            channels={
                Channel.EMAIL: email,
                Channel.WEBHOOK: WebhookChannel(clock=clock),
                Channel.SLACK: SlackChannel(clock=clock),
                Channel.SMS: SmsChannel(provider),
            },
            breaker=CircuitBreaker(),
            templates=NotificationTemplates(),
            sms_provider=provider,
        )

    async def aclose(self) -> None:
        for channel in self.channels.values():
            close = getattr(channel, "aclose", None)
            if close is not None:
                await close()
