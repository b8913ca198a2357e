"""Policy directories for tests: a policy file and one runbook proposing a given action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Answered by the sandbox's bad-deploy scenario (250 requests/s).
TRAFFIC = 'sum(rate(http_requests_total{service="checkout"}[5m]))'


def runbook(alertname: str, action: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A runbook for `alertname` that checks traffic, then proposes `action`; its check
    passes at once (traffic > 0), so it cannot show recovery: the bot drops it (the test
    alerts have no expression to verify with instead) and an executed action ends the run
    `needs_attention`, unverified."""
    return {
        "name": f"propose-{action.replace('.', '-')}",
        "match": {"alertname": alertname},
        "steps": [{"id": "traffic", "tool": "prometheus.query", "args": {"query": TRAFFIC}}],
        "findings": [
            {
                "id": "serving",
                "when": [{"value": "steps.traffic.status", "op": "==", "threshold": "ok"}],
                "summary": "{{ labels.service }} is serving traffic",
            }
        ],
        "proposal": {
            "when": ["serving"],
            "action": action,
            "arguments": arguments,
            "target": "{{ labels.namespace }}/{{ labels.service }}",
            "rationale": "the test says so",
            "risk": "low",
            "expected_effect": "the alert clears",
            "verify": {"query": TRAFFIC, "op": ">", "threshold": 0},
        },
    }


def policy_dir(
    root: Path, *, policy: str | None, alertname: str, action: str, arguments: dict[str, Any]
) -> Path:
    """`root/policy` with `policy.yaml` (None: none, so the shipped default applies) and a
    runbook proposing `action` with `arguments` for alerts called `alertname`."""
    directory = root / "policy"
    (directory / "runbooks").mkdir(parents=True, exist_ok=True)
    if policy is not None:
        (directory / "policy.yaml").write_text(policy)
    (directory / "runbooks" / "test.yaml").write_text(
        yaml.safe_dump(runbook(alertname, action, arguments))
    )
    return directory
