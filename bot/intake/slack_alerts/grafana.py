"""Grafana's Slack contact point: the default title `[FIRING:1] CheckoutLatency shop
(checkout critical)` (`[RESOLVED] …`) in an attachment or a header block, and the
default message, `**Firing**` / `**Resolved**` sections with one paragraph per alert:

    Value: A=1.84, C=1
    Labels:
     - alertname = CheckoutLatency
     - namespace = shop
    Annotations:
     - summary = p99 latency of checkout above 1.5s
    Source: https://grafana.example/alerting/grafana/abc/view
    Dashboard: https://grafana.example/d/checkout

A message is Grafana's when its attachment footer says so or its text has such a
paragraph. The title (without its tag) is the group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.intake.slack_alerts.alerts import Status, labels_of, message_alert, tagged
from bot.intake.slack_alerts.message import AlertMessage
from bot.models import Alert

_SECTION = re.compile(r"\s*(Firing|Resolved)\s*", re.I)
_VALUE = re.compile(r"\s*Value:\s*(.*)")
_PAIR = re.compile(r"\s*-\s*([A-Za-z_]\w*)\s*=\s*(.*)")
_LINK = re.compile(r"\s*(Source|Silence|Dashboard|Panel):\s*(https?://\S+)\s*")


@dataclass
class _Paragraph:
    status: Status
    value: str
    into: str = "labels"
    labels: list[tuple[str, str]] = field(default_factory=list)
    annotations: list[tuple[str, str]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)


def parse(message: AlertMessage) -> list[Alert] | None:
    """The message's alerts, or None when it is not a Grafana notification."""
    tag = next((t for t in map(tagged, message.titles()) if t is not None), None)
    if tag is None:
        return None
    paragraphs = _paragraphs(message.lines(), tag.status)
    by_grafana = any(a.footer.startswith("Grafana") for a in message.attachments)
    if not paragraphs and not by_grafana:
        return None
    if not paragraphs:
        paragraphs = [_Paragraph(status=tag.status, value="")]
    alerts = []
    for p in paragraphs:
        labels = labels_of(p.labels, exact=True)
        annotations = dict(labels_of(p.annotations, exact=True), value=p.value)
        alert = message_alert(
            message,
            family="grafana",
            group=tag.subject,
            status=p.status,
            title=annotations.get("summary") or labels.get("alertname", tag.subject),
            labels=labels,
            annotations=annotations,
            links=[p.links[k] for k in ("Source", "Dashboard", "Panel") if k in p.links],
        )
        generator = p.links.get("Source")
        alerts.append(alert.model_copy(update={"generator_url": generator}))
    return alerts


def _paragraphs(lines: list[str], status: Status) -> list[_Paragraph]:
    paragraphs: list[_Paragraph] = []
    for line in lines:
        if found := _SECTION.fullmatch(line):
            status = "firing" if found.group(1).lower() == "firing" else "resolved"
        elif found := _VALUE.fullmatch(line):
            paragraphs.append(_Paragraph(status=status, value=found.group(1).strip()))
        elif not paragraphs:
            continue
        elif line.strip() in {"Labels:", "Annotations:"}:
            paragraphs[-1].into = line.strip()[:-1].lower()
        elif found := _PAIR.fullmatch(line):
            pair = (found.group(1), found.group(2).strip())
            target = paragraphs[-1]
            (target.labels if target.into == "labels" else target.annotations).append(pair)
        elif found := _LINK.fullmatch(line):
            paragraphs[-1].links[found.group(1)] = found.group(2)
    return paragraphs
