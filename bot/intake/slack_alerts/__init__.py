"""Alert messages in Slack -> `Alert`: what alerting apps post in watched channels.

`parse_message` tries each format in turn, most specific first: Grafana's contact point
(`grafana.py`), Alertmanager's Slack notifications (`alertmanager.py`), PagerDuty's
Slack app (`pagerduty.py`), and any other bot's title, text and fields (`generic.py`).
Every alert of one message is in one group (`slack:<format>:<group>`), so a message
reaches one run; the text is untrusted and is redacted and scanned when it is admitted,
as a webhook's alerts are.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.intake.slack_alerts import alertmanager, generic, grafana, pagerduty
from bot.intake.slack_alerts.message import AlertMessage
from bot.models import Alert

Parser = Callable[[AlertMessage], list[Alert] | None]
PARSERS: tuple[Parser, ...] = (grafana.parse, alertmanager.parse, pagerduty.parse, generic.parse)


def parse_message(message: AlertMessage) -> list[Alert]:
    """The message's alerts (empty when it says nothing)."""
    for parse in PARSERS:
        alerts = parse(message)
        if alerts:
            return alerts
    return []
