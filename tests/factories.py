"""Small builders of valid models for tests."""

from __future__ import annotations

from datetime import timedelta

from bot.models import Alert, Run, Step, TextPart, utcnow


def alert(**labels: str) -> Alert:
    """A firing alert with the given labels (HighErrorRate on shop/checkout by default)."""
    merged = {"alertname": "HighErrorRate", "namespace": "shop", "service": "checkout"} | labels
    return Alert(
        source="cli",
        fingerprint="fp-" + "-".join(sorted(merged.values())),
        group_key=f"group:{merged['alertname']}:{merged['service']}",
        title=f"{merged['alertname']} on {merged['service']}",
        labels=merged,
    )


def run(**labels: str) -> Run:
    """A queued run for `alert(**labels)` with a 15-minute deadline."""
    return Run(alert=alert(**labels), deadline=utcnow() + timedelta(minutes=15))


def text_step(index: int, size: int = 2048) -> Step:
    """A user step carrying about `size` bytes of text."""
    return Step(index=index, role="user", author="tools", content=[TextPart(text="x" * size)])
