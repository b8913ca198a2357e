"""A scoped run, end to end: the real loop and SDK against the scripted Messages API and the
sandbox. Out-of-scope tools are never offered; crafted calls naming one, or another
namespace, are refused as errors and the sandbox receives no request for them."""

from __future__ import annotations

from pathlib import Path

from bot.models import RunStatus
from tests.anthropic_server import (
    Check,
    Exchange,
    ScriptRequest,
    call,
    offers_tools,
    tool_result,
    tool_use,
)
from tests.test_investigation_model import conclude, harness

SCOPES = """\
scopes:
  - match: {alertname: HighErrorRate}
    toolsets: [prometheus, kubernetes]
"""


def offers_none_of(*names: str) -> Check:
    """The request's `tools` include none of `names`."""

    def check(request: ScriptRequest) -> str | None:
        offered = [n for n in names if n in request.tool_names]
        return f"out-of-scope tools offered: {offered}" if offered else None

    return check


async def test_scoped_run_is_never_offered_and_never_sends_out_of_scope_calls(
    redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "scopes.yaml").write_text(SCOPES)
    script = [
        Exchange(
            tool_use(
                call("toolu_logs", "logs_query", {"query": '{app="checkout"}'}),
                call("toolu_system", "kubernetes_pods", {"namespace": "kube-system"}),
                call("toolu_events", "kubernetes_events", {"namespace": "payments"}),
                call("toolu_pods", "kubernetes_pods", {"namespace": "shop"}),
            ),
            expect=[
                offers_tools("prometheus_query", "prometheus_alerts", "kubernetes_pods"),
                offers_none_of("logs_query", "alertmanager_alerts", "alertmanager_silences"),
            ],
        ),
        conclude(
            expect=[
                tool_result("toolu_logs", is_error=True, contains="outside this run's scope"),
                tool_result(
                    "toolu_system", is_error=True, contains="namespace 'kube-system' is outside"
                ),
                tool_result(
                    "toolu_events", is_error=True, contains="namespace 'payments' is outside"
                ),
                tool_result("toolu_pods", contains="checkout-"),
            ]
        ),
    ]
    async with harness(
        redis_url,
        script,
        INCIDENT_BOT_POLICY_DIR=str(tmp_path),
        LOKI_URL="http://127.0.0.1:9",  # configured, so only the scope can stop the call
    ) as h:
        h.sandbox.requests.entries.clear()
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED
        sent = h.sandbox.requests.entries
        assert not [e for e in sent if "kube-system" in e or "payments" in e or "loki" in e]
        assert any("/namespaces/shop/pods" in e for e in sent)
        system = h.claude.requests[0].body["system"]
        assert "toolsets: kubernetes, prometheus; namespaces: shop" in system[-1]["text"]
        calls = {e.data["tool"]: e.data["status"] for e in await h.audit(run, "tool_call")}
        assert calls["logs_query"] == "error" and calls["kubernetes_events"] == "error"
