"""Alertmanager webhook v4 bodies (and single alerts from them) -> `Alert`.

One body is one notification of one alert group (its `groupKey`): every alert it
carries becomes an `Alert` of that group. Unknown fields are ignored, so a newer
Alertmanager that adds some still gets through; an unknown `version` does not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import InvalidAlert
from bot.models import Alert
from tools.toolset import describe_validation_error

# Alertmanager writes this for "no end time yet".
_ZERO_TIME = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


class WebhookAlert(BaseModel):
    """One alert of an Alertmanager webhook body."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str = ""


class WebhookBody(BaseModel):
    """An Alertmanager webhook body, version 4: one notification of one alert group."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1)
    status: Literal["firing", "resolved"]
    receiver: str
    alerts: list[WebhookAlert] = Field(min_length=1)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(default=None, alias="externalURL")
    # Alerts left out because of the receiver's `max_alerts`.
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, value: object) -> object:
        if value != "4":
            raise ValueError(f"unsupported webhook version {value!r}; incident-bot reads '4'")
        return value

    def to_alerts(self) -> list[Alert]:
        """The body's alerts, all in the body's group."""
        return [
            to_alert(
                a, group_key=self.group_key, link=self.external_url, group_labels=self.group_labels
            )
            for a in self.alerts
        ]


def parse_document(document: Any) -> list[Alert]:
    """Alerts from a webhook body (`version`, `alerts`) or from one alert object."""
    try:
        if isinstance(document, dict) and "alerts" in document:
            return WebhookBody.model_validate(document).to_alerts()
        single = WebhookAlert.model_validate(document)
    except ValidationError as exc:
        raise InvalidAlert(describe_validation_error(exc)) from exc
    return [to_alert(single, group_key=None, link=None)]


def to_alert(
    alert: WebhookAlert,
    *,
    group_key: str | None,
    link: str | None,
    group_labels: dict[str, str] | None = None,
) -> Alert:
    """One webhook alert as an `Alert`; without a group key, its labels make one."""
    labels = alert.labels
    fingerprint = alert.fingerprint or ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    title = alert.annotations.get("summary") or labels.get("alertname", "alert")
    return Alert(
        source="alertmanager",
        fingerprint=fingerprint,
        group_key=group_key or _label_group_key(labels),
        status=alert.status,
        title=title,
        labels=labels,
        annotations=alert.annotations,
        starts_at=alert.starts_at,
        ends_at=None if alert.ends_at in (None, _ZERO_TIME) else alert.ends_at,
        generator_url=alert.generator_url,
        links=[u for u in (alert.generator_url, alert.annotations.get("runbook_url"), link) if u],
        group_labels=group_labels or {},
    )


def _label_group_key(labels: dict[str, str]) -> str:
    """A group key in Alertmanager's shape, for an alert that came without one."""
    return "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
