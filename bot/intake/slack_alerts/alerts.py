"""What the parsers share: the `[FIRING:N]`/`[RESOLVED]` title tag, label names, and
building the `Alert` of one message's alert."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.intake.slack_alerts.message import AlertMessage
from bot.models import Alert

Status = Literal["firing", "resolved"]

TITLE_CHARS = 200
VALUE_CHARS = 500
MAX_LABELS = 30
# `[FIRING:2] HighErrorRate (checkout shop)`, `[FIRING:1, RESOLVED:1] …`, `[RESOLVED] …`
_TAGGED = re.compile(r"\[(FIRING(?::\d+)?(?:,\s*RESOLVED:\d+)?|RESOLVED)\]\s*(.*)", re.I)
_LABEL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_PROMETHEUS_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True, kw_only=True)
class Tagged:
    """A title that carries Alertmanager's status tag: its status and the rest."""

    status: Status
    subject: str


def tagged(title: str) -> Tagged | None:
    """The status tag of `title` (Alertmanager's and Grafana's `__subject`), or None."""
    found = _TAGGED.fullmatch(title.strip())
    if found is None:
        return None
    status: Status = "resolved" if found.group(1).upper() == "RESOLVED" else "firing"
    return Tagged(status=status, subject=found.group(2).strip())


def label_name(name: str, *, exact: bool = False) -> str | None:
    """`Service Name` as a label name (`service_name`), or None when it cannot be one;
    `exact`: a Prometheus label name, kept as written."""
    if exact:
        return name if _PROMETHEUS_LABEL.fullmatch(name) else None
    candidate = re.sub(r"[\s-]+", "_", name.strip().lower())
    return candidate if _LABEL_NAME.fullmatch(candidate) and len(candidate) <= 64 else None


def cut(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def labels_of(pairs: Sequence[tuple[str, str]], *, exact: bool = False) -> dict[str, str]:
    """Label-like `(name, value)` pairs as labels (the first of each name wins)."""
    labels: dict[str, str] = {}
    for name, value in pairs:
        key = label_name(name, exact=exact)
        if key is not None and value.strip() and key not in labels:
            labels[key] = cut(value, VALUE_CHARS)
        if len(labels) == MAX_LABELS:
            break
    return labels


def message_alert(
    message: AlertMessage,
    *,
    family: str,
    group: str,
    status: Status,
    title: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    links: Sequence[str] = (),
    fingerprint: str = "",
) -> Alert:
    """One alert of the message: in the group `slack:<family>:<group>`, named within it
    by `fingerprint` (else by its labels, else by the group)."""
    group_key = f"slack:{family}:{cut(group, 300)}"
    named = fingerprint or ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or group_key
    return Alert(
        source="slack",
        fingerprint=hashlib.sha256(named.encode()).hexdigest()[:16],
        group_key=group_key,
        status=status,
        title=cut(title, TITLE_CHARS) or group_key,
        labels=dict(labels),
        annotations={k: v for k, v in annotations.items() if v},
        starts_at=_posted_at(message) if status == "firing" else None,
        links=list(dict.fromkeys([*links, *message.links()])),
    )


def _posted_at(message: AlertMessage) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(message.ts), UTC)
    except (ValueError, OverflowError):
        return None
