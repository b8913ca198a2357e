"""The generic JSON alert format, for sources that are not Alertmanager.

`POST /webhooks/generic` takes one alert as a JSON object; the server publishes this
model's JSON Schema at `GET /webhooks/generic/schema`. Fields:

- `title` (required): one line saying what is wrong.
- `fingerprint` or `dedup_key` (at least one): `dedup_key` names the alert group (one
  open run per group; repeats update it); `fingerprint` names this alert within the
  group. Either stands in for the other when only one is given.
- `status`: `firing` (default) or `resolved`.
- `severity`, `service`: copied into `labels` (they win over labels of the same name).
- `labels`, `annotations`: string maps, as in Prometheus.
- `links`: URLs for the reader (dashboards, runbooks).
- `starts_at`: RFC 3339 time the problem began.

Unknown fields are rejected, so a typo does not pass silently. Example:

    {
      "title": "5xx ratio above 5% for checkout",
      "severity": "critical",
      "service": "checkout",
      "dedup_key": "checkout-5xx",
      "labels": {"namespace": "shop"},
      "annotations": {"runbook_url": "https://runbooks.example/high-error-rate"},
      "links": ["https://grafana.example/d/checkout"],
      "starts_at": "2026-11-22T02:52:37Z"
    }
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from bot.models import Alert


class GenericAlert(BaseModel):
    """One alert in incident-bot's generic JSON format (`POST /webhooks/generic`)."""

    model_config = ConfigDict(
        extra="forbid",
        title="incident-bot generic alert",
        json_schema_extra={"anyOf": [{"required": ["fingerprint"]}, {"required": ["dedup_key"]}]},
    )
    title: str = Field(min_length=1, description="One line saying what is wrong.")
    severity: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, description="Copied into labels as `severity`."
    )
    service: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, description="Copied into labels as `service`."
    )
    fingerprint: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, description="This alert within its group."
    )
    dedup_key: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, description="The alert group: one open run per key."
    )
    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list)
    starts_at: datetime | SkipJsonSchema[None] = Field(
        default=None, description="When the problem began."
    )

    @model_validator(mode="after")
    def _needs_a_key(self) -> GenericAlert:
        if self.fingerprint is None and self.dedup_key is None:
            raise ValueError("one of fingerprint or dedup_key is required")
        return self

    def to_alert(self) -> Alert:
        """This alert as an `Alert` of the group `dedup_key` (or `fingerprint`)."""
        key = self.dedup_key or self.fingerprint or ""  # the validator ensures one is set
        labels = dict(self.labels)
        if self.service is not None:
            labels["service"] = self.service
        if self.severity is not None:
            labels["severity"] = self.severity
        return Alert(
            source="generic",
            fingerprint=self.fingerprint or key,
            group_key=key,
            status=self.status,
            title=self.title,
            labels=labels,
            annotations=self.annotations,
            starts_at=self.starts_at,
            links=self.links,
        )
