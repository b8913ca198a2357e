"""PagerDuty's Slack app: an incident notification names the incident as
`[#4821] Checkout 5xx ratio above 5%` (linked to the incident), says its state
(`Triggered`, `Acknowledged`, `Resolved`: a `Status` field, or the first word of the
text, `Resolved: [#4821] …`), and carries fields such as `Service` and `Urgency`.

The incident number is the group: every notification of one incident reaches one run;
`Resolved` resolves it (an acknowledged incident is still firing).
"""

from __future__ import annotations

import re

from bot.intake.slack_alerts.alerts import Status, labels_of, message_alert
from bot.intake.slack_alerts.message import AlertMessage
from bot.models import Alert

_INCIDENT = re.compile(r"\[#(\d+)\]\s*(.+)")
_STATE = re.compile(r"\W*(Triggered|Acknowledged|Resolved)\b", re.I)
_KEPT = {"service", "urgency", "priority"}


def parse(message: AlertMessage) -> list[Alert] | None:
    """The incident as an alert, or None when the message names no PagerDuty incident."""
    lines = message.lines()
    found = next((m for m in map(_INCIDENT.search, lines) if m), None)
    if found is None or not _from_pagerduty(message, lines):
        return None
    number, title = found.group(1), found.group(2).strip()
    fields = dict(labels_of(message.fields()))
    labels = {k: v for k, v in fields.items() if k in _KEPT}
    labels["pagerduty_incident"] = number
    return [
        message_alert(
            message,
            family="pagerduty",
            group=f"#{number}",
            status=_status(fields.get("status"), lines),
            title=title,
            labels=labels,
            annotations={"summary": title, "state": fields.get("status", "")},
            fingerprint=f"pagerduty:{number}",
        )
    ]


def _from_pagerduty(message: AlertMessage, lines: list[str]) -> bool:
    """A PagerDuty link, or the incident's state spelled as PagerDuty spells it."""
    if any(".pagerduty.com/" in link for link in message.links()):
        return True
    return any(_STATE.match(line) for line in lines)


def _status(field: str | None, lines: list[str]) -> Status:
    state = field or next((m.group(1) for m in map(_STATE.match, lines) if m), "")
    return "resolved" if state.lower() == "resolved" else "firing"
