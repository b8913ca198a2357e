"""An alert is redacted in two parts (its group key, then the other fields), exactly as
its whole JSON document would be: the same text replaced, the same counts."""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any

import pytest

from bot.models import Alert
from bot.untrusted import NOT_TEXT, redact_alert
from tools.redaction import redact_value

AWS = "AKIAQ7V2ZX4LMN8PRS3T"  # shaped like an AWS access key id
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PLAIN = Alert(
    source="alertmanager",
    fingerprint="fp-1",
    group_key='{}:{alertname="HighErrorRate"}',
    title="High error rate on checkout",
    labels={"alertname": "HighErrorRate", "service": "checkout", "severity": "page"},
    annotations={"summary": "5xx above 5%", "runbook_url": "https://runbooks/checkout"},
    starts_at=datetime.fromisoformat("2026-12-02T03:00:00+00:00"),
    generator_url="http://prometheus/graph?g0.expr=x",
    links=["https://runbooks/checkout"],
    group_labels={"alertname": "HighErrorRate"},
)
LEAKY = [
    {"title": f"deploy failed: AWS_ACCESS_KEY_ID={AWS}"},
    {"group_key": f'{{}}:{{token="{GITHUB}"}}', "fingerprint": AWS},
    {"labels": {"service": "checkout", "password": "hunter2-but-longer", GITHUB: "key"}},
    {"annotations": {"description": f"curl -H 'Authorization: token {GITHUB}'"}},
    {"generator_url": f"http://prometheus/graph?key={AWS}", "links": [f"https://x/?t={GITHUB}"]},
    {"group_labels": {"alertname": AWS}},
    {
        "title": AWS,
        "labels": {"db_password": "s3cr3t-value"},
        "annotations": {"summary": AWS},
        "group_labels": {"k": GITHUB},
    },
]


def _as_document(alert: Alert) -> Any:
    return redact_value(alert.model_dump(mode="json"))


@pytest.mark.parametrize("leak", [{}, *LEAKY])
def test_an_alert_is_redacted_as_its_whole_document_is(leak: dict[str, Any]) -> None:
    alert = PLAIN.model_copy(update=leak)
    expected, expected_counts = _as_document(alert)
    cleaned, counts = redact_alert(alert)
    assert cleaned.model_dump(mode="json") == expected
    assert counts == expected_counts
    assert bool(counts) == bool(leak)
    for secret in (AWS, GITHUB, "hunter2-but-longer", "s3cr3t-value"):
        assert secret not in cleaned.model_dump_json()
    if not leak:
        assert cleaned is alert


def test_the_same_fields_redacted_again_give_the_same_alert() -> None:
    """The fields beside the group key are remembered by their digest: a second alert
    with the same leaky labels but a new group key gets the same replacements, and
    counts them again."""
    first = PLAIN.model_copy(update=LEAKY[2])
    second = first.model_copy(update={"group_key": "another group"})
    assert redact_alert(second)[1] == redact_alert(first)[1] != {}
    assert redact_alert(second)[0].labels == redact_alert(first)[0].labels


def test_the_fields_left_unredacted_cannot_hold_a_senders_text() -> None:
    """Each of `NOT_TEXT` is a literal or a time; every other field is redacted."""
    for name in NOT_TEXT:
        annotation = Alert.model_fields[name].annotation
        literal = typing.get_origin(annotation) is typing.Literal
        kinds = set() if literal else set(typing.get_args(annotation) or (annotation,))
        assert kinds <= {datetime, type(None)}, (name, kinds)
