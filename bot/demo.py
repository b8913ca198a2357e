"""`incident-bot demo`: the whole flow offline, against the bundled sandbox scenario."""

from __future__ import annotations

from urllib.parse import quote_plus

from bot.models import Alert, utcnow

DEMO_SCENARIO = "bad-deploy"

_EXPRESSION = (
    'sum(rate(http_requests_total{namespace="shop",service="checkout",code=~"5.."}[5m]))'
    ' / sum(rate(http_requests_total{namespace="shop",service="checkout"}[5m])) > 0.05'
)


def demo_alert(prometheus_url: str) -> Alert:
    """The alert the bad-deploy scenario fires: checkout's 5xx ratio above 5%."""
    labels = {
        "alertname": "HighErrorRate",
        "namespace": "shop",
        "service": "checkout",
        "severity": "critical",
    }
    return Alert(
        source="cli",
        fingerprint="demo-checkout-high-error-rate",
        group_key='{}:{alertname="HighErrorRate", service="checkout"}',
        title="5xx ratio above 5% for checkout",
        labels=labels,
        annotations={
            "summary": "5xx ratio above 5% for checkout",
            "runbook_url": "https://runbooks.example/high-error-rate",
        },
        starts_at=utcnow(),
        generator_url=f"{prometheus_url}/graph?g0.expr={quote_plus(_EXPRESSION)}&g0.tab=1",
    )
