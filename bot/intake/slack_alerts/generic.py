"""Any other alerting bot: the title (an attachment title, a header block, else the
first line), the text, and `key: value` fields and lines as labels. A title tagged
`[RESOLVED]` or starting `Resolved` resolves the group, which is the title without
its tag.
"""

from __future__ import annotations

import re

from bot.intake.slack_alerts.alerts import Status, cut, labels_of, message_alert, tagged
from bot.intake.slack_alerts.message import AlertMessage
from bot.models import Alert

DESCRIPTION_CHARS = 2000
_PAIR = re.compile(r"\s*[•\-]?\s*([A-Za-z][\w -]{0,40}?):\s+(\S.*)")
_RESOLVED = re.compile(r"\W*resolved\b\W*(.*)", re.I)


def parse(message: AlertMessage) -> list[Alert] | None:
    """The message as one alert, or None when it has no text at all."""
    lines = [line.strip() for line in message.lines() if line.strip()]
    title = next(iter(message.titles()), lines[0] if lines else "")
    if not title:
        return None
    status: Status = "firing"
    group = title
    if (tag := tagged(title)) is not None:
        status, group = tag.status, tag.subject
    elif (found := _RESOLVED.fullmatch(title)) is not None and found.group(1):
        status, group = "resolved", found.group(1)
    body = [line for line in lines if line != title]
    pairs = message.fields() + [(m.group(1), m.group(2)) for m in map(_PAIR.fullmatch, body) if m]
    return [
        message_alert(
            message,
            family="generic",
            group=group,
            status=status,
            title=group,
            labels=labels_of(pairs),
            annotations={"description": "\n".join(body)[:DESCRIPTION_CHARS]},
            fingerprint=cut(group, 300),
        )
    ]
