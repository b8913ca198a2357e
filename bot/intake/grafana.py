"""Grafana Alerting webhook bodies (the webhook contact point, payload version 1) -> `Alert`.

Grafana's alerts are Alertmanager's with more links (dashboard, panel, image, silence)
and the values that fired (`valueString`, kept as the `value_string` annotation). One
body is one notification of one alert group; its `groupKey` is namespaced by `orgId`
(`grafana:<orgId>:<groupKey>`), so it never meets an Alertmanager group of the same
name. A custom payload template gives another body and is refused (422).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.intake.alertmanager import WebhookAlert, to_alert
from bot.models import Alert


class GrafanaAlert(WebhookAlert):
    """One alert of a Grafana webhook body."""

    silence_url: str = Field(default="", alias="silenceURL")
    dashboard_url: str = Field(default="", alias="dashboardURL")
    panel_url: str = Field(default="", alias="panelURL")
    image_url: str = Field(default="", alias="imageURL")
    value_string: str = Field(default="", alias="valueString")


class GrafanaBody(BaseModel):
    """A Grafana webhook contact point body, version 1."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    version: Literal["1"]
    group_key: str = Field(alias="groupKey", min_length=1)
    status: Literal["firing", "resolved"]
    receiver: str
    org_id: int = Field(alias="orgId", ge=0)
    alerts: list[GrafanaAlert] = Field(min_length=1)
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(default=None, alias="externalURL")
    # Alerts left out because of the contact point's "Max Alerts".
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, value: object) -> object:
        if value != "1":
            raise ValueError(f"unsupported Grafana webhook version {value!r}; the bot reads '1'")
        return value

    def to_alerts(self) -> list[Alert]:
        """The body's alerts, all in the body's group."""
        group_key = f"grafana:{self.org_id}:{self.group_key}"
        return [self._alert(a, group_key) for a in self.alerts]

    def _alert(self, alert: GrafanaAlert, group_key: str) -> Alert:
        base = to_alert(alert, group_key=group_key, link=None, group_labels=self.group_labels)
        annotations = dict(base.annotations)
        if alert.value_string:
            annotations.setdefault("value_string", alert.value_string)
        urls = (
            alert.generator_url,
            alert.annotations.get("runbook_url"),
            alert.dashboard_url,
            alert.panel_url,
            alert.image_url,
            alert.silence_url,
            self.external_url,
        )
        return base.model_copy(
            update={
                "source": "grafana",
                "annotations": annotations,
                "generator_url": alert.generator_url or None,
                "links": list(dict.fromkeys(u for u in urls if u)),
            }
        )
