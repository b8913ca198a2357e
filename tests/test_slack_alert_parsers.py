"""Alert messages of each format (`tests/fixtures/slack_alerts/`) become the alerts a
person reads in them, and the policy's `slack_alerts` section says which count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.intake.slack_alerts import alertmanager, generic, grafana, pagerduty, parse_message
from bot.intake.slack_alerts.message import AlertMessage, plain
from policies.documents import PolicyError
from policies.schema import read_policy

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slack_alerts"


def event(name: str) -> dict[str, Any]:
    """A fixture's message event."""
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def message(name: str, **changes: Any) -> AlertMessage:
    return AlertMessage.model_validate(event(name) | changes)


def test_alertmanager_each_alert_paragraph_is_an_alert_of_the_titles_group() -> None:
    alerts = alertmanager.parse(message("alertmanager-firing.json"))

    assert alerts is not None and len(alerts) == 2
    first, second = alerts
    assert {a.group_key for a in alerts} == {
        "slack:alertmanager:HighErrorRate checkout (shop critical)"
    }
    assert first.status == "firing" and first.source == "slack"
    assert first.title == "5xx ratio above 5% on checkout"
    assert first.labels == {
        "alertname": "HighErrorRate",
        "namespace": "shop",
        "pod": "checkout-7d9f4c5b8-x2x9k",
        "service": "checkout",
        "severity": "critical",
    }
    assert first.annotations["description"].startswith("checkout-7d9f answers 12%")
    assert first.links == ["http://alertmanager.example:9093/#/alerts?receiver=slack-alerts"]
    assert second.labels["pod"] == "checkout-7d9f4c5b8-q7m2p"
    assert first.fingerprint != second.fingerprint


def test_alertmanager_resolved_names_the_same_group_and_alerts() -> None:
    firing = alertmanager.parse(message("alertmanager-firing.json"))
    resolved = alertmanager.parse(message("alertmanager-resolved.json"))

    assert firing is not None and resolved is not None
    assert {a.status for a in resolved} == {"resolved"}
    assert [(a.group_key, a.fingerprint) for a in resolved] == [
        (a.group_key, a.fingerprint) for a in firing
    ]


def test_alertmanager_title_alone_is_one_alert_and_untagged_titles_are_not_its() -> None:
    raw = event("alertmanager-firing.json")
    raw["attachments"][0]["text"] = ""
    [alert] = alertmanager.parse(AlertMessage.model_validate(raw)) or []
    assert alert.title == "HighErrorRate checkout (shop critical)"
    assert alert.labels == {}

    raw["attachments"][0]["title"] = "HighErrorRate checkout"
    assert alertmanager.parse(AlertMessage.model_validate(raw)) is None


def test_grafana_reads_value_labels_annotations_and_links() -> None:
    [alert] = grafana.parse(message("grafana-firing.json")) or []

    assert alert.group_key == "slack:grafana:CheckoutLatencyHigh Shop (checkout shop critical)"
    assert alert.status == "firing"
    assert alert.title == "checkout p99 latency above 1.5s"
    assert alert.labels == {
        "alertname": "CheckoutLatencyHigh",
        "grafana_folder": "Shop",
        "namespace": "shop",
        "service": "checkout",
        "severity": "critical",
    }
    assert alert.annotations["value"] == "A=1.84, C=1"
    assert alert.generator_url == "http://grafana.example:3000/alerting/grafana/fe3kq9/view?orgId=1"
    assert "http://grafana.example:3000/d/checkout?orgId=1&viewPanel=2" in alert.links
    assert not any("&amp;" in link for link in alert.links)


def test_grafana_resolved_and_its_header_block_form() -> None:
    [resolved] = grafana.parse(message("grafana-resolved.json")) or []
    [firing] = grafana.parse(message("grafana-firing.json")) or []
    assert resolved.status == "resolved"
    assert (resolved.group_key, resolved.fingerprint) == (firing.group_key, firing.fingerprint)

    attachment = event("grafana-firing.json")["attachments"][0]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": attachment["title"]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": attachment["text"]}},
    ]
    [from_blocks] = grafana.parse(message("grafana-firing.json", attachments=[], blocks=blocks))
    assert from_blocks.labels == firing.labels
    assert from_blocks.group_key == firing.group_key


def test_grafana_does_not_claim_alertmanagers_messages() -> None:
    assert grafana.parse(message("alertmanager-firing.json")) is None
    [alert, _] = parse_message(message("alertmanager-firing.json"))
    assert alert.group_key.startswith("slack:alertmanager:")


def test_pagerduty_incident_number_is_the_group_and_resolved_resolves_it() -> None:
    [triggered] = pagerduty.parse(message("pagerduty-triggered.json")) or []
    [resolved] = pagerduty.parse(message("pagerduty-resolved.json")) or []

    assert triggered.group_key == resolved.group_key == "slack:pagerduty:#4821"
    assert triggered.fingerprint == resolved.fingerprint
    assert (triggered.status, resolved.status) == ("firing", "resolved")
    assert triggered.title == "Payments API error budget burn"
    assert triggered.labels == {
        "service": "payments-api",
        "urgency": "High",
        "pagerduty_incident": "4821",
    }
    assert triggered.links[0] == "https://acme.pagerduty.com/incidents/Q0RIAJCSJHKXZ1"


def test_pagerduty_acknowledged_is_still_firing_and_other_messages_are_not_its() -> None:
    raw = event("pagerduty-triggered.json")
    fields = raw["attachments"][0]["blocks"][1]["fields"]
    fields[0]["text"] = "*Status:*\nAcknowledged"
    [acknowledged] = pagerduty.parse(AlertMessage.model_validate(raw)) or []
    assert acknowledged.status == "firing"

    assert pagerduty.parse(message("generic.json")) is None
    assert pagerduty.parse(message("alertmanager-firing.json")) is None


def test_generic_title_text_and_fields_become_an_alert() -> None:
    [alert] = generic.parse(message("generic.json")) or []

    assert alert.group_key == "slack:generic:Disk almost full on orders-db-0"
    assert alert.title == "Disk almost full on orders-db-0"
    assert alert.labels == {"namespace": "shop", "service": "orders-db", "severity": "warning"}
    assert alert.annotations["description"].startswith("/var/lib/postgresql on orders-db-0")
    assert parse_message(message("generic.json")) == [alert]


DISK = "Disk almost full on orders-db-0"


@pytest.mark.parametrize(
    ("text", "status"),
    [(f"[RESOLVED] {DISK}", "resolved"), (f"Resolved: {DISK}", "resolved"), (DISK, "firing")],
)
def test_generic_reads_a_plain_text_message(text: str, status: str) -> None:
    [alert] = parse_message(
        message("generic.json", attachments=[], text=f"{text}\nnamespace: shop")
    )
    assert (alert.status, alert.title, alert.labels) == (status, DISK, {"namespace": "shop"})
    assert alert.group_key == f"slack:generic:{DISK}"


def test_a_message_that_says_nothing_is_no_alert() -> None:
    assert parse_message(message("generic.json", attachments=[], text="  ")) == []


def test_slack_markup_is_read_as_plain_text() -> None:
    assert plain("*<https://x.example/a?b=1&amp;c=2|the page>* `ok` &lt;3 <!here>") == (
        "the page ok <3 here"
    )


def test_the_policy_lists_channels_and_senders_with_file_and_line_errors() -> None:
    policy = read_policy(
        [
            (
                "alerts.yaml",
                "slack_alerts:\n"
                "  channels: [C0ALERTS01]\n"
                "  senders: [{bot_id: B0ALERTMGR}, {app_id: A0PAGERDTY}]\n",
            )
        ]
    )
    watched = policy.slack_alerts
    assert watched.watches("C0ALERTS01", "B0ALERTMGR", None)
    assert watched.watches("C0ALERTS01", "B0SOMEBOT1", "A0PAGERDTY")
    assert not watched.watches("C0ALERTS01", "B0SOMEBOT1", "A0SOMEAPP1")
    assert not watched.watches("C0OTHER001", "B0ALERTMGR", None)
    assert not watched.watches("C0ALERTS01", None, "A0PAGERDTY")  # a person's message

    with pytest.raises(PolicyError) as raised:
        read_policy(
            [
                (
                    "alerts.yaml",
                    "slack_alerts:\n"
                    "  channels: ['#alerts']\n"
                    "  senders:\n"
                    "    - {bot_id: B0ALERTMGR, app_id: A0PAGERDTY}\n",
                )
            ]
        )
    text = str(raised.value)
    assert "alerts.yaml:2" in text and "not a channel ID" in text
    assert "alerts.yaml:4" in text and "exactly one of bot_id" in text


def test_channels_without_senders_or_senders_without_channels_are_refused() -> None:
    for section in ("channels: [C0ALERTS01]", "senders: [{bot_id: B0ALERTMGR}]"):
        with pytest.raises(PolicyError, match="needs both channels and senders"):
            read_policy([("alerts.yaml", f"slack_alerts:\n  {section}\n")])
