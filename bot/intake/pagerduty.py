"""PagerDuty V3 webhooks (webhook subscriptions) -> `Alert`.

A body carries one event. Incident events become an alert of the group
`pagerduty:<incident id>`, so every delivery about one incident reaches one run:

- `incident.triggered`, `incident.reopened`: firing; starts a run when the incident has
  none open.
- `incident.acknowledged`: firing, and never starts a run: it joins the incident's open
  run (as a repeat: the alert still fires) and is ignored when there is none, since a
  person is on it already.
- `incident.resolved`: resolved.

Every other event type (notes, escalations, priority changes, services, ...) is read only
as far as its `event_type`, and answered 202 `ignored`: PagerDuty drops a webhook that gets
a 4xx and disables a subscription that keeps failing. Labels: `alertname` (the title with
every run of other characters than letters and digits made one `_`, at most 64
characters), `service` (the PagerDuty service's name), `severity` (priority P1-P2
`critical`, P3 `warning`, P4-P5 `info`; without a priority, urgency `high` `critical`,
`low` `warning`), `urgency`, `priority`, `pagerduty_incident`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.models import Alert

_ALERTNAME_CHARS = 64
_FALLBACK_ALERTNAME = "pagerduty_incident"
_PRIORITY_SEVERITY = {
    "P1": "critical",
    "P2": "critical",
    "P3": "warning",
    "P4": "info",
    "P5": "info",
}
_URGENCY_SEVERITY = {"high": "critical", "low": "warning"}


@dataclass(frozen=True, kw_only=True)
class _Handling:
    status: Literal["firing", "resolved"]
    opens_run: bool


_HANDLED = {
    "incident.triggered": _Handling(status="firing", opens_run=True),
    "incident.reopened": _Handling(status="firing", opens_run=True),
    "incident.acknowledged": _Handling(status="firing", opens_run=False),
    "incident.resolved": _Handling(status="resolved", opens_run=False),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Reference(_Model):
    """A reference to another PagerDuty object (service, user, team, priority, ...)."""

    id: str = ""
    summary: str = ""
    html_url: str | None = None


class EventHead(_Model):
    """What every V3 webhook event carries."""

    id: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    resource_type: str
    occurred_at: datetime

    @property
    def handled(self) -> bool:
        """Whether incident-bot reads this event (else it is answered `ignored`)."""
        return self.resource_type == "incident" and self.event_type in _HANDLED


class Envelope(_Model):
    """A V3 webhook body read only as far as its event's type."""

    event: EventHead


class Incident(_Model):
    """The `data` of an incident event."""

    id: str = Field(min_length=1)
    type: Literal["incident"]
    title: str = Field(min_length=1)
    status: str
    service: Reference
    html_url: str | None = None
    number: int | None = None
    incident_key: str | None = None
    created_at: datetime | None = None
    urgency: str | None = None
    priority: Reference | None = None
    escalation_policy: Reference | None = None
    assignees: list[Reference] = Field(default_factory=list)
    teams: list[Reference] = Field(default_factory=list)


class IncidentEvent(EventHead):
    """An incident event of a type incident-bot reads."""

    agent: Reference | None = None
    data: Incident


class IncidentWebhook(_Model):
    """A V3 webhook body whose event is one incident-bot reads."""

    event: IncidentEvent

    @property
    def opens_run(self) -> bool:
        """Whether this event may start a run (else it only joins an open one)."""
        return _HANDLED[self.event.event_type].opens_run

    def to_alert(self) -> Alert:
        """The incident as an alert of the incident's group."""
        event, incident = self.event, self.event.data
        status = _HANDLED[event.event_type].status
        key = f"pagerduty:{incident.id}"
        return Alert(
            source="pagerduty",
            fingerprint=key,
            group_key=key,
            status=status,
            title=incident.title,
            labels=_labels(incident),
            annotations=_annotations(event),
            starts_at=incident.created_at,
            ends_at=event.occurred_at if status == "resolved" else None,
            generator_url=incident.html_url,
            links=[u for u in (incident.html_url, incident.service.html_url) if u],
        )


def _labels(incident: Incident) -> dict[str, str]:
    priority = incident.priority.summary if incident.priority else ""
    labels = {
        "alertname": _alertname(incident.title),
        "service": incident.service.summary,
        "severity": _PRIORITY_SEVERITY.get(priority)
        or _URGENCY_SEVERITY.get(incident.urgency or "", ""),
        "urgency": incident.urgency or "",
        "priority": priority,
        "pagerduty_incident": incident.id,
    }
    return {k: v for k, v in labels.items() if v}


def _annotations(event: IncidentEvent) -> dict[str, str]:
    incident = event.data
    annotations = {
        "summary": incident.title,
        "pagerduty_event": event.event_type,
        "pagerduty_status": incident.status,
        "incident_number": "" if incident.number is None else str(incident.number),
        "escalation_policy": incident.escalation_policy.summary
        if incident.escalation_policy
        else "",
        "assignees": ", ".join(a.summary for a in incident.assignees if a.summary),
        "teams": ", ".join(t.summary for t in incident.teams if t.summary),
        "changed_by": event.agent.summary if event.agent else "",
    }
    return {k: v for k, v in annotations.items() if v}


def _alertname(title: str) -> str:
    """The `alertname` label of an incident titled `title`."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", title).strip("_")[:_ALERTNAME_CHARS].rstrip("_")
    return slug or _FALLBACK_ALERTNAME
