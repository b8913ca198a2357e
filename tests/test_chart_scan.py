"""checkov (an IaC scanner, in its own venv: scripts/install-checkov.sh) over the chart
rendered with every value set, and over the Dockerfile: every finding is fixed, or skipped
below with the reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.chart_render import ROOT, VALUE_SETS, rendered_files

CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
pytestmark = pytest.mark.skipif(
    not CHECKOV.exists(),
    reason="checkov is not installed in .tools/checkov: run scripts/install-checkov.sh",
)

# Findings accepted on purpose: check id -> why.
KUBERNETES_SKIPS = {
    "CKV_K8S_11": "No CPU limits, on purpose: a limit throttles the bot (and Valkey) under a "
    "burst of alerts, when it matters most; CPU requests are set, memory limits are set.",
    "CKV_K8S_15": "imagePullPolicy IfNotPresent: images are pinned (tag, or image.digest and "
    "redis.image.digest); Always would make every pod start depend on the registry.",
    "CKV_K8S_35": "The bot reads its settings, REDIS_URL included, from the environment "
    "(pydantic settings; REDIS_URL is the convention), and valkey-server takes --requirepass "
    "from $(REDIS_PASSWORD); the values come from Secrets, never from the manifests.",
    "CKV_K8S_38": "With actions disabled or an existing kubeconfig Secret the pod runs as the "
    "read-only account, and the investigation reads the cluster with its (projected, expiring) "
    "token; otherwise the chart mounts no token automatically.",
    "CKV_K8S_43": "Tags by default so that a first install needs no digest lookup; production "
    "sets image.digest and redis.image.digest (the `everything` value set does).",
    "CKV2_K8S_6": "networkPolicy.enabled is opt-in (the ingress controller's and monitoring "
    "namespaces differ per cluster); the value sets that turn it on must pass this check.",
}
DOCKERFILE_SKIPS = {
    "CKV_DOCKER_7": "FROM ${PYTHON_IMAGE}: checkov cannot read an ARG; its default is "
    "python:3.11-slim-bookworm, a versioned tag (test_helm_chart checks it).",
}
WITH_NETWORK_POLICY = {
    name for name, values in VALUE_SETS.items() if values.get("networkPolicy", {}).get("enabled")
}


def checkov(*args: str) -> list[dict[str, Any]]:
    """Run checkov once; its failed checks across every report."""
    done = subprocess.run(
        [str(CHECKOV), *args, "--compact", "--quiet", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: findings
    reports = json.loads(done.stdout)
    failed: list[dict[str, Any]] = []
    for report in reports if isinstance(reports, list) else [reports]:
        if "results" in report:
            assert report["summary"]["parsing_errors"] == 0, report["summary"]
            failed += report["results"]["failed_checks"]
    return failed


def describe(finding: dict[str, Any]) -> str:
    where = f"{finding['file_path']} {finding['resource']}"
    return f"{finding['check_id']} {finding['check_name']}: {where}"


def test_the_rendered_chart_has_no_unjustified_finding(tmp_path: Path) -> None:
    for name, values in VALUE_SETS.items():
        for path, text in rendered_files(values).items():
            if not path.endswith("NOTES.txt"):
                out = tmp_path / name / Path(path).name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text)
    failed = checkov("-d", str(tmp_path), "--framework", "kubernetes")
    unjustified = [describe(f) for f in failed if f["check_id"] not in KUBERNETES_SKIPS]
    assert unjustified == []
    # With the NetworkPolicy on, every pod is covered by one.
    uncovered = [
        describe(f)
        for f in failed
        if f["check_id"] == "CKV2_K8S_6" and f["file_path"].split("/")[1] in WITH_NETWORK_POLICY
    ]
    assert WITH_NETWORK_POLICY and uncovered == []


def test_the_dockerfile_has_no_unjustified_finding() -> None:
    failed = checkov("-f", str(ROOT / "Dockerfile"), "--framework", "dockerfile")
    assert [describe(f) for f in failed if f["check_id"] not in DOCKERFILE_SKIPS] == []
