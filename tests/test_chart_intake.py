"""The chart's intake replicas (`intake`): a second Deployment of the bot's own pods with
INCIDENT_BOT_WORKERS=0 that the webhooks go to, while the bot's Deployment keeps Slack and
the drives (the product form of `bench/slack_ack.py --split`). The intake pods take no
Slack events (INCIDENT_BOT_SLACK_EVENTS=false) and hold no Kubernetes credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from bot.server import create_app
from bot.settings import Settings
from tests.chart_render import FULLNAME, NAMESPACE, VALUE_SETS, notes, render, schema_refusal

INTAKE = f"{FULLNAME}-intake"
SPLIT = VALUE_SETS["intake-split"]
ON: dict[str, Any] = {"intake": {"enabled": True}}
INTAKE_ONLY = [
    {"name": "INCIDENT_BOT_WORKERS", "value": "0"},
    {"name": "INCIDENT_BOT_RESUME_WORKERS", "value": "0"},
    {"name": "INCIDENT_BOT_SLACK_EVENTS", "value": "false"},
]
# What makes a pod's Kubernetes credentials: its account, token and the actions' mounts.
CREDENTIALS = {"serviceAccountName", "automountServiceAccountToken", "volumes"}
ACTIONS_VOLUMES = {"actions-kubeconfig", "actions-token", "read-token"}


def webhook_paths() -> list[str]:
    """Every path the bot takes webhooks at (POST /webhooks/...), from its own router."""
    settings = Settings.model_validate({"INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS": "true"})
    return sorted(
        route.resource.canonical
        for route in create_app(settings).router.routes()
        if route.method == "POST"
        and route.resource
        and route.resource.canonical.startswith("/webhooks/")
    )


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    template: dict[str, Any] = of_kind(docs, "Deployment")[name]["spec"]["template"]
    return template


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [main] = pod(docs, name)["spec"]["containers"]
    result: dict[str, Any] = main
    return result


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def environment(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The container's plain environment as the kubelet builds it: its ConfigMap's data
    (`envFrom`), then the `env` entries with a value, which win."""
    [config_map] = [
        e["configMapRef"]["name"] for e in container(docs, name)["envFrom"] if "configMapRef" in e
    ]
    env = dict(of_kind(docs, "ConfigMap")[config_map]["data"])
    env |= {e["name"]: e["value"] for e in container(docs, name).get("env", []) if "value" in e}
    return env


def test_enabled_adds_an_intake_only_deployment_of_the_same_pods() -> None:
    docs = render(SPLIT)
    deployment = of_kind(docs, "Deployment")[INTAKE]
    assert deployment["spec"]["replicas"] == 3
    intake, main = container(docs, INTAKE), container(docs, FULLNAME)
    env = {e["name"]: e for e in intake["env"]}
    assert env["INCIDENT_BOT_WORKERS"] == {"name": "INCIDENT_BOT_WORKERS", "value": "0"}
    assert env["INCIDENT_BOT_RESUME_WORKERS"]["value"] == "0"
    # `config` asks for 8 workers; the intake's env wins over its ConfigMap, the bot's
    # Deployment keeps them.
    assert of_kind(docs, "ConfigMap")[FULLNAME]["data"]["INCIDENT_BOT_WORKERS"] == "8"
    assert "INCIDENT_BOT_WORKERS" not in {e["name"] for e in main.get("env", [])}
    assert intake["resources"] == SPLIT["intake"]["resources"]
    # The same pod otherwise (image, probes, security, mounts, volumes, scheduling), less
    # the Kubernetes credentials and the ConfigMap (the bot's, less the actions' kubeconfig).
    own = {"env", "resources", "envFrom", "volumeMounts"}
    assert {k: v for k, v in intake.items() if k not in own} == {
        k: v for k, v in main.items() if k not in own
    }
    assert intake["envFrom"] == [{"configMapRef": {"name": INTAKE}}, main["envFrom"][1]]
    assert intake["volumeMounts"] == [
        m for m in main["volumeMounts"] if m["name"] not in ACTIONS_VOLUMES
    ]
    # The bot's env (Redis, extraEnv) and then the intake's own, which win.
    for rendered in (docs, render(VALUE_SETS["everything"] | ON)):
        assert container(rendered, INTAKE)["env"] == [
            *container(rendered, FULLNAME)["env"],
            *INTAKE_ONLY,
        ]
    unlike = {"containers", *CREDENTIALS}
    assert {k: v for k, v in pod(docs, INTAKE)["spec"].items() if k not in unlike} == {
        k: v for k, v in pod(docs, FULLNAME)["spec"].items() if k not in unlike
    }
    # The same checksums, so a configuration change rolls both. (Without a cluster to look
    # the generated Redis password up in, each render of it draws a new one: give one.)
    given = render(SPLIT | {"redis": {"auth": {"password": "pass-word_1"}}})
    assert (
        pod(given, INTAKE)["metadata"]["annotations"]
        == pod(given, FULLNAME)["metadata"]["annotations"]
    )
    assert intake["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod(docs, INTAKE)["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_intake_pods_environment_reads_as_no_workers_no_slack_events_no_kubeconfig(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = (
        "INCIDENT_BOT_WORKERS",
        "INCIDENT_BOT_RESUME_WORKERS",
        "INCIDENT_BOT_SLACK_EVENTS",
        "INCIDENT_BOT_ACTIONS_KUBECONFIG",
        "KUBECONFIG",
    )
    docs = render(VALUE_SETS["actions-socket-mode"] | SPLIT)
    kubeconfig = Path("/etc/incident-bot/actions/kubeconfig")
    for name, read in (
        (INTAKE, (0, 0, False, None, True)),
        (FULLNAME, (8, 2, True, kubeconfig, True)),
    ):
        with monkeypatch.context() as patched:
            for key in keys:
                patched.delenv(key, raising=False)
            for key, value in environment(docs, name).items():
                patched.setenv(key, value)
            s = Settings()
        got = (
            s.workers,
            s.resume_workers,
            s.slack_events,
            s.actions_kubeconfig,
            s.slack_socket_mode,
        )
        assert got == read, name
        assert s.kubeconfig is None, name


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if n != "embedded-single"])
def test_the_intake_pods_hold_no_kubernetes_credentials(name: str) -> None:
    docs = render(
        VALUE_SETS[name] | {"intake": {**VALUE_SETS[name].get("intake", {}), "enabled": True}}
    )
    spec = pod(docs, INTAKE)["spec"]
    # No token mounted, automatically or from a volume; the read-only account, which the
    # bot's pods use when they do not run as the actions' one.
    assert spec["automountServiceAccountToken"] is False
    read_only = VALUE_SETS[name].get("serviceAccount", {}).get("name") or FULLNAME
    assert spec["serviceAccountName"] == read_only
    assert not {v["name"] for v in spec["volumes"]} & ACTIONS_VOLUMES
    assert not any("projected" in v or "secret" in v for v in spec["volumes"])
    [main] = spec["containers"]
    assert not any("serviceaccount" in m["mountPath"] for m in main["volumeMounts"])
    assert not any("actions" in m["mountPath"] for m in main["volumeMounts"])
    env = environment(docs, INTAKE)
    assert "INCIDENT_BOT_ACTIONS_KUBECONFIG" not in env and "KUBECONFIG" not in env
    # The bot's pods keep theirs, as without intake.
    bot = pod(docs, FULLNAME)["spec"]
    without = pod(render(VALUE_SETS[name] | {"intake": {"enabled": False}}), FULLNAME)["spec"]
    assert {k: bot.get(k) for k in CREDENTIALS} == {k: without.get(k) for k in CREDENTIALS}
    if VALUE_SETS[name].get("actions", {}).get("enabled", True):
        assert environment(docs, FULLNAME)["INCIDENT_BOT_ACTIONS_KUBECONFIG"]


def test_the_two_deployments_and_services_select_only_their_own_pods() -> None:
    docs = render(SPLIT)
    deployments, services = of_kind(docs, "Deployment"), of_kind(docs, "Service")
    intake_pods = pod(docs, INTAKE)["metadata"]["labels"]
    bot_pods = pod(docs, FULLNAME)["metadata"]["labels"]
    assert intake_pods["app.kubernetes.io/component"] == "intake"
    for selector in (
        deployments[FULLNAME]["spec"]["selector"]["matchLabels"],
        services[FULLNAME]["spec"]["selector"],
        of_kind(docs, "PodDisruptionBudget")[FULLNAME]["spec"]["selector"]["matchLabels"],
    ):
        assert selects(selector, bot_pods) and not selects(selector, intake_pods)
    for selector in (
        deployments[INTAKE]["spec"]["selector"]["matchLabels"],
        services[INTAKE]["spec"]["selector"],
        of_kind(docs, "PodDisruptionBudget")[INTAKE]["spec"]["selector"]["matchLabels"],
    ):
        assert selects(selector, intake_pods) and not selects(selector, bot_pods)
    assert services[INTAKE]["spec"]["ports"] == services[FULLNAME]["spec"]["ports"]
    assert services[INTAKE]["spec"]["ports"][0]["targetPort"] == "http"


def test_the_ingress_sends_the_webhooks_to_the_intake_and_slack_to_the_bot() -> None:
    docs = render(SPLIT)
    [rule] = of_kind(docs, "Ingress")[FULLNAME]["spec"]["rules"]
    backends = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    # Every webhook the bot takes, and only those, besides Slack's.
    assert webhook_paths() == [
        "/webhooks/alertmanager",
        "/webhooks/generic",
        "/webhooks/grafana",
        "/webhooks/pagerduty",
    ]
    assert backends == {
        "/slack/events": {"name": FULLNAME, "port": {"name": "http"}},
        **{path: {"name": INTAKE, "port": {"name": "http"}} for path in webhook_paths()},
    }
    # Without intake they go to the bot's Service.
    values = {k: v for k, v in SPLIT.items() if k != "intake"}
    [rule] = of_kind(render(values), "Ingress")[FULLNAME]["spec"]["rules"]
    assert {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {
        path: FULLNAME for path in ["/slack/events", *webhook_paths()]
    }
    assert {p["pathType"] for p in rule["http"]["paths"]} == {"Exact"}
    # Without ingress.webhooks only Slack's path is published, to the bot.
    only_slack = render(ON | {"ingress": {"enabled": True, "hosts": ["bot.example.com"]}})
    [rule] = of_kind(only_slack, "Ingress")[FULLNAME]["spec"]["rules"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]] == [
        ("/slack/events", FULLNAME)
    ]


def test_alertmanager_is_told_to_post_to_the_intake_service() -> None:
    url = f"http://{INTAKE}.{NAMESPACE}.svc:8080/webhooks/alertmanager"
    assert url in notes(ON)
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:8080/webhooks/alertmanager" in notes()
    # The intake pods open no Socket Mode connection (INCIDENT_BOT_SLACK_EVENTS=false):
    # nothing to warn of.
    for values in (ON, ON | {"slack": {"socketMode": True}}):
        assert "It takes no Slack events" in notes(values)
        assert "WARNING: intake.enabled" not in notes(values)


def test_the_intake_pods_get_a_disruption_budget_network_policy_and_service_monitor() -> None:
    docs = render(SPLIT)
    assert of_kind(docs, "PodDisruptionBudget")[INTAKE]["spec"]["minAvailable"] == 1
    one_replica = render(ON | {"intake": {"enabled": True, "replicaCount": 1}})
    assert INTAKE not in of_kind(one_replica, "PodDisruptionBudget")
    no_budgets = render(ON | {"podDisruptionBudget": {"enabled": False}})
    assert of_kind(no_budgets, "PodDisruptionBudget") == {}
    intake_pods = pod(docs, INTAKE)["metadata"]["labels"]
    policies = of_kind(docs, "NetworkPolicy")
    mine = policies[INTAKE]
    assert selects(mine["spec"]["podSelector"]["matchLabels"], intake_pods)
    ours = policies[FULLNAME]
    assert mine["spec"]["ingress"] == ours["spec"]["ingress"]
    # They run no tools and no actions: no Kubernetes API, no monitoring stack.
    api_and_monitoring = {
        "networkPolicy": {
            "enabled": True,
            "egress": {
                "apiServerCIDRs": ["10.0.0.1/32"],
                "monitoring": {"namespaceSelectors": [{"matchLabels": {"name": "monitoring"}}]},
            },
        }
    }
    narrowed = of_kind(render(SPLIT | api_and_monitoring), "NetworkPolicy")
    ours_egress = narrowed[FULLNAME]["spec"]["egress"]
    intake_egress = narrowed[INTAKE]["spec"]["egress"]
    assert any({"ipBlock": {"cidr": "10.0.0.1/32"}} in rule["to"] for rule in ours_egress)
    assert any(
        "namespaceSelector" in peer
        for rule in ours_egress
        for peer in rule["to"]
        if "podSelector" not in peer
    )
    assert intake_egress == [
        rule
        for rule in ours_egress
        if {"ipBlock": {"cidr": "10.0.0.1/32"}} not in rule["to"]
        and not any("namespaceSelector" in p and "podSelector" not in p for p in rule["to"])
    ]
    # Valkey admits the intake pods: they store the alerts.
    render_statefulset = render(ON | {"networkPolicy": {"enabled": True}})
    peers = of_kind(render_statefulset, "NetworkPolicy")[f"{FULLNAME}-redis"]["spec"]["ingress"]
    [admitted] = peers
    assert any(
        selects(peer["podSelector"]["matchLabels"], intake_pods) for peer in admitted["from"]
    )
    monitors = of_kind(docs, "ServiceMonitor")
    service = of_kind(docs, "Service")[INTAKE]
    assert selects(
        monitors[INTAKE]["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]
    )
    assert not selects(
        monitors[FULLNAME]["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]
    )
    assert monitors[INTAKE]["spec"]["endpoints"] == monitors[FULLNAME]["spec"]["endpoints"]
    assert monitors[INTAKE]["metadata"]["labels"]["release"] == "kps"
    # Scrape annotations set in podAnnotations are on the intake pods too.
    assert pod(docs, INTAKE)["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def without_intake(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if not d["metadata"]["name"].startswith(INTAKE)]


def stable(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifests less the one thing two renders differ in: the generated Redis
    password, and the checksums of it."""
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == f"{FULLNAME}-redis":
            doc["data"] = {}
        for template in (doc.get("spec", {}).get("template", {}),):
            for key in ("checksum/redis", "checksum/secret"):
                template.get("metadata", {}).get("annotations", {}).pop(key, None)
    return docs


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if not n.startswith("intake-")])
def test_disabled_renders_no_intake_and_nothing_else_changes(name: str) -> None:
    values = VALUE_SETS[name]
    docs = render(values)
    assert without_intake(docs) == docs
    assert not any(
        d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "intake" for d in docs
    )
    # Intake values without `enabled` change nothing.
    idle = {"intake": {"enabled": False, "replicaCount": 5, "resources": {"limits": {}}}}
    assert stable(render(values | idle)) == stable(docs)


def test_enabling_changes_only_the_webhook_routes_and_who_reaches_valkey() -> None:
    values: dict[str, Any] = {k: v for k, v in SPLIT.items() if k != "intake"}
    off, on = stable(render(values)), without_intake(stable(render(values | ON)))
    assert len(on) == len(off)
    changed = [
        (d["kind"], d["metadata"]["name"]) for d, old in zip(on, off, strict=True) if d != old
    ]
    assert changed == [("Ingress", FULLNAME), ("NetworkPolicy", f"{FULLNAME}-redis")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"intake": {"enabled": "yes"}}, "at '/intake/enabled': got string, want boolean"),
        (
            {"intake": {"replicaCount": "two"}},
            "at '/intake/replicaCount': got string, want integer",
        ),
        ({"intake": {"replicaCount": 0}}, "at '/intake/replicaCount'"),
        ({"intake": {"replicas": 2}}, "additional properties 'replicas' not allowed"),
        ({"intake": {"resources": {"request": {}}}}, "at '/intake/resources'"),
        ({"intake": True}, "at '/intake': got boolean, want object"),
    ],
    ids=["enabled", "replicaCount", "zero replicas", "unknown key", "resources", "not a map"],
)
def test_the_schema_refuses_wrong_intake_values_saying_where(
    values: dict[str, Any], message: str
) -> None:
    assert message in schema_refusal(values)


def test_the_embedded_store_is_refused_with_intake() -> None:
    embedded = VALUE_SETS["embedded-single"] | ON
    with pytest.raises(helm_python.HelmError, match=r"intake\.enabled needs a Redis"):
        render(embedded)


def test_a_full_name_too_long_for_the_intake_suffix_is_refused() -> None:
    assert INTAKE in of_kind(render(ON), "Deployment")
    fits = render(ON | {"fullnameOverride": "b" * 56})
    assert f"{'b' * 56}-intake" in of_kind(fits, "Deployment")
    with pytest.raises(helm_python.HelmError, match="at most 56 characters"):
        render(ON | {"fullnameOverride": "b" * 57})


def test_autoscaling_owns_the_intake_replica_count() -> None:
    assert of_kind(render(SPLIT), "HorizontalPodAutoscaler") == {}
    autoscaled = render(
        SPLIT | {"intake": {"enabled": True, "autoscaling": {"enabled": True, "maxReplicas": 9}}}
    )
    hpa = of_kind(autoscaled, "HorizontalPodAutoscaler")[INTAKE]
    kubernetes_validate.validate(hpa, "1.30", strict=True)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": INTAKE,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 9)
    [cpu] = hpa["spec"]["metrics"]
    assert cpu["resource"]["name"] == "cpu"
    assert cpu["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    # The HPA sets the replicas, not the Deployment; the bot's Deployment keeps its own.
    assert "replicas" not in of_kind(autoscaled, "Deployment")[INTAKE]["spec"]
    assert of_kind(autoscaled, "Deployment")[FULLNAME]["spec"]["replicas"] == 2
    assert container(autoscaled, INTAKE)["resources"]["requests"]["cpu"]  # what 70% is of
    # The disruption budget follows minReplicas.
    single = {"enabled": True, "minReplicas": 1, "maxReplicas": 4}
    one_minimum = render(ON | {"intake": {"enabled": True, "autoscaling": single}})
    assert INTAKE not in of_kind(one_minimum, "PodDisruptionBudget")
    assert INTAKE in of_kind(autoscaled, "PodDisruptionBudget")
    upside_down = {"enabled": True, "minReplicas": 5, "maxReplicas": 3}
    with pytest.raises(helm_python.HelmError, match=r"maxReplicas \(3\) must be at least"):
        render(ON | {"intake": {"enabled": True, "autoscaling": upside_down}})
    with pytest.raises(helm_python.HelmError, match="at '/intake/autoscaling/enabled'"):
        render({"intake": {"autoscaling": {"enabled": "true"}}})
