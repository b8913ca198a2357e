"""A run's first transcript step: its alert, as the investigator reads it.

Intake creates a run with no transcript. The checkpoint that starts its investigation
writes this step (`Investigator._opening`), so the time it tells the model is when the
investigation begins (a run may wait in the queue), and intake spends nothing on it. The
alert was redacted where it entered; the same checkpoint records the flags its text
raises, as the group's later alerts are flagged (`bot.step_reads.alert_news`), before any
model reads it.
"""

from __future__ import annotations

import json

from bot.models import Alert, Step, TextPart, utcnow


def alert_step(alert: Alert) -> Step:
    """The first transcript message: the alert, as the investigator reads it."""
    described = {
        "title": alert.title,
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
        "generator_url": alert.generator_url,
    }
    # Compact JSON: indented, it took the pure-Python encoder and cost the model a token
    # per indentation.
    text = (
        f"Alert from {alert.source}, group {alert.group_key}:\n"
        f"{json.dumps(described)}\n"
        f"Investigate it now (the time is {utcnow():%Y-%m-%dT%H:%M:%SZ})."
    )
    return Step(index=0, role="user", author="alert", content=[TextPart(text=text)])
