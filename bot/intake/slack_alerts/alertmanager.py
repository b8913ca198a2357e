"""Alertmanager's Slack notifications: the default template's title in an attachment,
`[FIRING:2] HighErrorRate checkout (shop critical)` (`[RESOLVED] …` when resolved:
the group's label values, then the other common ones), and the text the Alertmanager
docs' Slack example writes for each alert:

    *Alert:* 5xx ratio above 5% - `critical`
    *Description:* checkout answers 12% of requests with 5xx
    *Details:*
      • *alertname:* `HighErrorRate`
      • *namespace:* `shop`

(`*Labels:*` is read as `*Details:*`). Each `*Alert:*` is one alert; without any, the
message is one alert named by its title. The title (without its tag) is the group.
"""

from __future__ import annotations

import re

from bot.intake.slack_alerts.alerts import labels_of, message_alert, tagged
from bot.intake.slack_alerts.message import AlertMessage
from bot.models import Alert

_ALERT = re.compile(r"\s*Alert:\s*(.*)")
_DESCRIPTION = re.compile(r"\s*Description:\s*(.*)")
_LABEL = re.compile(r"\s*[•\-]\s*([A-Za-z_]\w*):\s*(.+)")
# `5xx ratio above 5% - critical`: the severity is the last word after ` - `.
_SEVERITY = re.compile(r"(.*\S)\s+-\s+(\w+)")


def parse(message: AlertMessage) -> list[Alert] | None:
    """The message's alerts, or None when it is not an Alertmanager notification."""
    title = next((t for t in message.titles() if tagged(t)), None)
    tag = tagged(title) if title else None
    if tag is None:
        return None
    chunks = _chunks(message.lines())
    if not chunks:
        chunks = [(tag.subject, "", {})]
    return [
        message_alert(
            message,
            family="alertmanager",
            group=tag.subject,
            status=tag.status,
            title=summary or labels.get("alertname", tag.subject),
            labels=labels,
            annotations={"summary": summary, "description": description},
        )
        for summary, description, labels in chunks
    ]


def _chunks(lines: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """`(summary, description, labels)` of each `Alert:` paragraph."""
    chunks: list[tuple[str, str, list[tuple[str, str]]]] = []
    for line in lines:
        if found := _ALERT.fullmatch(line):
            chunks.append((found.group(1).strip(), "", []))
        elif not chunks:
            continue
        elif found := _DESCRIPTION.fullmatch(line):
            summary, _, pairs = chunks[-1]
            chunks[-1] = (summary, found.group(1).strip(), pairs)
        elif found := _LABEL.fullmatch(line):
            chunks[-1][2].append((found.group(1), found.group(2)))
    return [_with_severity(s, d, labels_of(p, exact=True)) for s, d, p in chunks]


def _with_severity(
    summary: str, description: str, labels: dict[str, str]
) -> tuple[str, str, dict[str, str]]:
    found = _SEVERITY.fullmatch(summary)
    if found is not None and found.group(2) == labels.get("severity", found.group(2)):
        summary = found.group(1)
        labels.setdefault("severity", found.group(2))
    return summary, description, labels
