"""The `slack_alerts` policy section: which Slack channels the bot watches for alert
messages, and which alerting apps' messages count as alerts there.

A message is an alert only when it is in a listed channel and was posted by a listed
sender: a bot (`bot_id`, `B…`) or an app (`app_id`, `A…`). Messages of people are never
alerts. Channels are IDs (`C…`, private ones `G…`), as Slack events name them.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,}")


class AlertSender(BaseModel):
    """One alerting app: its bot ID or its app ID (exactly one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bot_id: str | None = Field(default=None, pattern=r"^B[A-Z0-9]{2,}$")
    app_id: str | None = Field(default=None, pattern=r"^A[A-Z0-9]{2,}$")

    @model_validator(mode="after")
    def _one_id(self) -> AlertSender:
        if (self.bot_id is None) == (self.app_id is None):
            raise ValueError("a sender names exactly one of bot_id (B…) or app_id (A…)")
        return self

    def sent(self, bot_id: str | None, app_id: str | None) -> bool:
        """Whether a message with these ids is this sender's."""
        if self.bot_id is not None:
            return self.bot_id == bot_id
        return self.app_id == app_id


class SlackAlerts(BaseModel):
    """Channels watched for alert messages and the senders whose messages are alerts."""

    model_config = ConfigDict(extra="forbid")
    channels: list[str] = Field(default_factory=list)
    senders: list[AlertSender] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, channels: list[str]) -> list[str]:
        for channel in channels:
            if _CHANNEL.fullmatch(channel) is None:
                raise ValueError(
                    f"{channel!r} is not a channel ID: write the C… (or private G…) ID "
                    "that Slack shows under the channel's details, not its #name"
                )
        return channels

    @model_validator(mode="after")
    def _both_or_neither(self) -> SlackAlerts:
        if bool(self.channels) != bool(self.senders):
            raise ValueError("slack_alerts needs both channels and senders (or neither)")
        return self

    def watches(self, channel: str, bot_id: str | None, app_id: str | None) -> bool:
        """Whether a bot's message in `channel` with these ids is an alert."""
        if bot_id is None or channel not in self.channels:
            return False
        return any(s.sent(bot_id, app_id) for s in self.senders)
