"""The deployment artefacts: the Helm chart, rendered by Helm's own engine
(`helm-python-sdk`) and validated against the Kubernetes 1.30 schemas, and the Dockerfile."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import certifi
import helm_python
import httpx2
import kubernetes_validate
import pytest
import yaml
from lightkube.config.kubeconfig import SERVICE_ACCOUNT

from bot.runbook import load_runbooks
from policies.schema import load_policy
from tests.chart_render import CHART, FULLNAME, NAMESPACE, ROOT, VALUE_SETS, notes, render
from tools.kube_client import http_client, kubernetes_client

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "*"}
ACTIONS_SA = f"{FULLNAME}-actions"
READ_TOKEN = f"{FULLNAME}-read-token"
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
ACTIONS_IN_SHOP_AND_PAYMENTS: dict[str, Any] = {"actions": {"namespaces": ["shop", "payments"]}}
CRDS = {"ServiceMonitor", "PrometheusRule"}  # kubernetes-validate has no schema for them


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def granted(role: dict[str, Any]) -> set[tuple[str, str]]:
    """(resource, verb) pairs a Role/ClusterRole grants; `*` stays `*`."""
    return {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


def bindings_of(docs: list[dict[str, Any]], account: str) -> list[dict[str, Any]]:
    """Every RoleBinding and ClusterRoleBinding with the service account `account` as subject."""
    return [
        b
        for b in find(docs, "RoleBinding") + find(docs, "ClusterRoleBinding")
        if any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s["namespace"] == NAMESPACE
            for s in b["subjects"]
        )
    ]


def role_of(docs: list[dict[str, Any]], binding: dict[str, Any]) -> dict[str, Any]:
    """The rendered Role or ClusterRole a binding refers to (a Role in the binding's namespace)."""
    ref = binding["roleRef"]
    assert ref["apiGroup"] == "rbac.authorization.k8s.io"
    found = [
        r
        for r in find(docs, ref["kind"], ref["name"])
        if ref["kind"] == "ClusterRole"
        or r["metadata"]["namespace"] == binding["metadata"]["namespace"]
    ]
    assert len(found) == 1, f"{binding['metadata']} refers to {len(found)} rendered roles"
    return found[0]


LINTED = {**VALUE_SETS, "namespaces": ACTIONS_IN_SHOP_AND_PAYMENTS}


@pytest.mark.parametrize("values", LINTED.values(), ids=LINTED.keys())
def test_lint_finds_no_error(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_manifest_is_valid_kubernetes_1_30(values: dict[str, Any]) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["kind"] in CRDS:
            check_custom_resource(doc)
        else:
            kubernetes_validate.validate(doc, "1.30", strict=True)
        if doc["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"]["namespace"] in {NAMESPACE, "shop", "payments"}


def check_custom_resource(doc: dict[str, Any]) -> None:
    """The shape prometheus-operator's CRDs require of a ServiceMonitor or PrometheusRule."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    assert all(isinstance(v, str) for v in doc["metadata"]["labels"].values())
    spec = doc["spec"]
    if doc["kind"] == "ServiceMonitor":
        assert set(spec) <= {"selector", "namespaceSelector", "endpoints"}
        assert spec["selector"]["matchLabels"]
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
            assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
        return
    assert set(spec) == {"groups"}
    for group in spec["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
            assert isinstance(rule["expr"], str) and re.fullmatch(r"\d+[smh]", rule["for"])
            for mapping in (rule["labels"], rule["annotations"]):
                assert all(isinstance(v, str) for v in mapping.values())


def test_default_deployment_runs_two_hardened_replicas_with_probes() -> None:
    docs = render()
    deployment = one(docs, "Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(docs)
    main = container(docs)
    assert main["args"] == ["serve"]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert main["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's own /tmp
    assert "emptyDir" in volumes[mounts["/var/lib/incident-bot"]]
    assert main["resources"]["requests"] and main["resources"]["limits"]
    # The pod runs as the actions' account (its projected token is theirs), nothing mounted
    # automatically; the read-only account's token is mounted from its Secret.
    assert spec["serviceAccountName"] == ACTIONS_SA
    assert spec["automountServiceAccountToken"] is False
    # The kubelet waits longer than the bot's own shutdown grace.
    env = one(docs, "ConfigMap", FULLNAME)["data"]
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["terminationGracePeriodSeconds"] > float(env["INCIDENT_BOT_SHUTDOWN_GRACE"])
    assert env["INCIDENT_BOT_DATA_DIR"] == "/var/lib/incident-bot"
    assert main["envFrom"] == [
        {"configMapRef": {"name": FULLNAME}},
        {"secretRef": {"name": FULLNAME}},
    ]
    service = one(docs, "Service", FULLNAME)
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_grace_period_not_above_shutdown_grace_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match="terminationGracePeriodSeconds"):
        render({"shutdownGrace": 30, "terminationGracePeriodSeconds": 30})


def without_generated_password(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifests less what differs between two renders: the random Redis password and
    the checksums of it."""
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == f"{FULLNAME}-redis":
            doc["data"] = {}
        template = doc.get("spec", {}).get("template", {}).get("metadata", {})
        for key in ("checksum/redis", "checksum/secret"):
            template.get("annotations", {}).pop(key, None)
    return docs


def test_read_only_role_never_grants_secrets_or_a_write_verb() -> None:
    docs = render()
    role = one(docs, "ClusterRole", f"{FULLNAME}-read")
    grants = granted(role)
    assert {resource for resource, _ in grants} == {
        "pods",
        "pods/log",
        "events",
        "deployments",
        "replicasets",
        "nodes",
    }
    assert {verb for _, verb in grants} == {"get", "list", "watch"}
    assert not any(resource in {"secrets", "*"} for resource, _ in grants)
    binding = one(docs, "ClusterRoleBinding", f"{FULLNAME}-read")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]


def test_actions_role_gets_and_patches_deployments_and_reads_no_secret() -> None:
    docs = render(ACTIONS_IN_SHOP_AND_PAYMENTS)
    for namespace in ("shop", "payments"):
        (role,) = [
            r for r in find(docs, "Role", ACTIONS_SA) if r["metadata"]["namespace"] == namespace
        ]
        # Exactly what rollback, restart and scale call: read_namespaced_deployment,
        # patch_namespaced_deployment (scale patches spec.replicas), list_namespaced_replica_set.
        assert granted(role) == {
            ("deployments", "get"),
            ("deployments", "patch"),
            ("replicasets", "list"),
        }
        assert {g for rule in role["rules"] for g in rule["apiGroups"]} == {"apps"}
        assert not any(
            "resourceNames" in rule or "nonResourceURLs" in rule for rule in role["rules"]
        )
    # The investigation's account is bound to the read role only.
    assert [b["roleRef"]["name"] for b in bindings_of(docs, FULLNAME)] == [f"{FULLNAME}-read"]


def test_actions_namespaces_bind_the_role_in_those_namespaces_only() -> None:
    docs = render(ACTIONS_IN_SHOP_AND_PAYMENTS)
    bindings = bindings_of(docs, ACTIONS_SA)
    assert len(bindings) == 2
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["payments", "shop"]
    for binding in bindings:
        assert binding["kind"] == "RoleBinding"
        assert binding["metadata"]["name"] == ACTIONS_SA
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": ACTIONS_SA,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": ACTIONS_SA, "namespace": NAMESPACE}
        ]
        role = role_of(docs, binding)
        assert role["kind"] == "Role"
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"]
    # The write role exists only there, and nothing cluster-wide mentions the actions.
    assert sorted(r["metadata"]["namespace"] for r in find(docs, "Role")) == ["payments", "shop"]
    assert find(docs, "ClusterRole", ACTIONS_SA) == []
    assert find(docs, "ClusterRoleBinding", ACTIONS_SA) == []


def test_actions_namespaces_are_deduplicated_and_checked() -> None:
    docs = render({"actions": {"namespaces": ["shop", "shop", "payments"]}})
    assert sorted(b["metadata"]["namespace"] for b in bindings_of(docs, ACTIONS_SA)) == [
        "payments",
        "shop",
    ]
    with pytest.raises(helm_python.HelmError, match="must be a list"):
        render({"actions": {"namespaces": "shop"}})
    with pytest.raises(helm_python.HelmError, match="Shop is not a namespace name"):
        render({"actions": {"namespaces": ["Shop"]}})


def test_no_actions_namespaces_means_no_write_access_at_all() -> None:
    docs = render({"actions": {"namespaces": []}})
    assert without_generated_password(docs) == without_generated_password(render())  # default
    assert bindings_of(docs, ACTIONS_SA) == []
    assert find(docs, "Role") == [] and find(docs, "RoleBinding") == []
    assert find(docs, "ClusterRole", ACTIONS_SA) == []
    for role in find(docs, "ClusterRole"):
        assert {verb for _, verb in granted(role)} & WRITE_VERBS == set()
    assert "bound nowhere" in notes()
    assert "shop, payments" in notes(ACTIONS_IN_SHOP_AND_PAYMENTS)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_no_write_verb_is_granted_cluster_wide(values: dict[str, Any]) -> None:
    docs = render(values)
    for binding in find(docs, "ClusterRoleBinding"):
        role = role_of(docs, binding)
        assert {verb for _, verb in granted(role)} & WRITE_VERBS == set(), binding["metadata"]
    for role in find(docs, "ClusterRole"):  # not even one waiting to be bound
        assert {verb for _, verb in granted(role)} & WRITE_VERBS == set(), role["metadata"]
    # Write verbs exist only in the actions' Roles, bound only to the actions' account.
    for binding in find(docs, "RoleBinding"):
        if {verb for _, verb in granted(role_of(docs, binding))} & WRITE_VERBS:
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": ACTIONS_SA, "namespace": NAMESPACE}
            ]


def service_account_token_secrets(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Secret name -> the service account whose long-lived token it holds."""
    return {
        d["metadata"]["name"]: d["metadata"]["annotations"]["kubernetes.io/service-account.name"]
        for d in find(docs, "Secret")
        if d.get("type") == SA_TOKEN_TYPE
    }


def test_actions_token_is_projected_and_expires() -> None:
    docs = render()
    spec = pod_spec(docs)
    assert spec["serviceAccountName"] == ACTIONS_SA
    assert spec["automountServiceAccountToken"] is False
    assert one(docs, "ServiceAccount", ACTIONS_SA)["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["actions-token"]["readOnly"] is True
    assert mounts["actions-token"]["mountPath"] == "/var/run/secrets/incident-bot/actions"
    token, ca, namespace = volumes["actions-token"]["projected"]["sources"]
    # A token of the pod's own account - the actions' - that the kubelet renews; the API
    # server's own audience unless one is set.
    assert token == {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}
    assert ca == {
        "configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    }
    assert namespace == {
        "downwardAPI": {
            "items": [
                {
                    "path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                }
            ]
        }
    }
    docs = render({"actions": {"token": {"expirationSeconds": 900, "audience": "bot-api"}}})
    (token, *_) = {v["name"]: v for v in pod_spec(docs)["volumes"]}["actions-token"]["projected"][
        "sources"
    ]
    assert token == {
        "serviceAccountToken": {"path": "token", "expirationSeconds": 900, "audience": "bot-api"}
    }


@pytest.mark.parametrize("seconds", [599, 0, -1, 1000.5, "3600", None])
def test_actions_token_lifetime_is_checked(seconds: Any) -> None:
    with pytest.raises(helm_python.HelmError, match="at least 600"):
        render({"actions": {"token": {"expirationSeconds": seconds}}})


def test_actions_and_read_accounts_must_differ() -> None:
    with pytest.raises(helm_python.HelmError, match="must differ"):
        render({"actions": {"serviceAccount": {"name": FULLNAME}}})


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_no_long_lived_token_for_the_actions(values: dict[str, Any]) -> None:
    docs = render(values)
    assert ACTIONS_SA not in service_account_token_secrets(docs).values()
    assert find(docs, "Secret", f"{FULLNAME}-actions-token") == []
    # The only mounted Secrets are the read-only token and the operator's own kubeconfig.
    secrets = {v["secret"]["secretName"] for v in pod_spec(docs)["volumes"] if "secret" in v}
    assert secrets <= {READ_TOKEN, "bot-actions-kubeconfig"}


def test_read_only_token_is_a_secret_at_the_in_cluster_path() -> None:
    docs = render(ACTIONS_IN_SHOP_AND_PAYMENTS)
    # One long-lived token, the read-only account's.
    assert service_account_token_secrets(docs) == {READ_TOKEN: FULLNAME}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["read-token"]["readOnly"] is True
    directory = mounts["read-token"]["mountPath"]
    assert directory == "/var/run/secrets/kubernetes.io/serviceaccount"
    secret = volumes["read-token"]["secret"]
    assert secret["secretName"] == READ_TOKEN
    paths = {item["key"]: f"{directory}/{item['path']}" for item in secret["items"]}
    # Where the tools' in-cluster config (KUBECONFIG is unset) reads the token, CA and
    # namespace: the service-account directory of lightkube's `from_service_account`.
    assert directory == SERVICE_ACCOUNT
    assert paths["token"] == f"{SERVICE_ACCOUNT}/token"
    assert paths["ca.crt"] == f"{SERVICE_ACCOUNT}/ca.crt"
    assert paths["namespace"] == f"{SERVICE_ACCOUNT}/namespace"
    env = one(docs, "ConfigMap", FULLNAME)["data"]
    assert "KUBECONFIG" not in env and "KUBERNETES_URL" not in env
    # Nothing else is mounted there, and the actions' token is mounted elsewhere.
    at_in_cluster_path = [m for m in mounts.values() if m["mountPath"].startswith(directory)]
    assert at_in_cluster_path == [mounts["read-token"]]
    # The read-only account keeps its ClusterRole and its binding, and only it is bound so.
    binding = one(docs, "ClusterRoleBinding", f"{FULLNAME}-read")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    assert [b["metadata"]["name"] for b in bindings_of(docs, FULLNAME)] == [f"{FULLNAME}-read"]
    assert [b["kind"] for b in bindings_of(docs, ACTIONS_SA)] == ["RoleBinding", "RoleBinding"]


async def test_actions_kubeconfig_reads_the_projected_token_as_the_kubelet_renews_it(
    tmp_path: Path,
) -> None:
    docs = render()
    env = one(docs, "ConfigMap", FULLNAME)["data"]
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    kubeconfig_dir = mounts["actions-kubeconfig"]
    assert env["INCIDENT_BOT_ACTIONS_KUBECONFIG"] == f"{kubeconfig_dir}/kubeconfig"
    assert volumes["actions-kubeconfig"]["configMap"]["name"] == f"{FULLNAME}-actions-kubeconfig"
    token_dir = mounts["actions-token"]

    # The kubeconfig loads with the client the bot uses: the projected token and CA files
    # become its credentials, and a renewed token is used from the next request on.
    text = one(docs, "ConfigMap", f"{FULLNAME}-actions-kubeconfig")["data"]["kubeconfig"]
    assert f"tokenFile: {token_dir}/token" in text
    assert f"certificate-authority: {token_dir}/ca.crt" in text
    (tmp_path / "token").write_text("actions-token-value")
    # Any valid PEM bundle: the client builds its TLS context from it.
    shutil.copyfile(certifi.where(), tmp_path / "ca.crt")
    local = tmp_path / "kubeconfig"
    local.write_text(text.replace(token_dir, str(tmp_path)))
    async with kubernetes_client(None, local) as client:
        config = client.config
        assert config.cluster.server == "https://kubernetes.default.svc"
        assert config.cluster.certificate_auth == str(tmp_path / "ca.crt")
        auth = http_client(client).auth
        assert authorization(auth) == "Bearer actions-token-value"
        (tmp_path / "token").write_text("renewed-actions-token")
        assert authorization(auth) == "Bearer renewed-actions-token"


def authorization(auth: httpx2.Auth) -> str | None:
    """The Authorization header `auth` puts on the next request."""
    request = httpx2.Request("GET", "https://kubernetes.default.svc/version")
    return next(auth.sync_auth_flow(request)).headers.get("Authorization")


def test_existing_kubeconfig_secret_replaces_the_chart_made_actions_credentials() -> None:
    docs = render({"actions": {"existingKubeconfigSecret": "mine"}})
    assert find(docs, "ServiceAccount", f"{FULLNAME}-actions") == []
    assert find(docs, "ClusterRole", f"{FULLNAME}-actions") == []
    assert find(docs, "Role") == [] and find(docs, "RoleBinding") == []
    docs = render({"actions": {"existingKubeconfigSecret": "mine", "namespaces": ["shop"]}})
    assert find(docs, "Role") == [] and find(docs, "RoleBinding") == []
    spec = pod_spec(docs)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["actions-kubeconfig"]["secret"]["secretName"] == "mine"
    assert "actions-token" not in volumes
    # The pod runs as the read-only account with its own projected token: no token Secret.
    assert spec["serviceAccountName"] == FULLNAME
    assert spec["automountServiceAccountToken"] is True
    assert "read-token" not in volumes
    assert service_account_token_secrets(docs) == {}


def test_without_actions_the_pod_runs_as_the_read_only_account() -> None:
    docs = render({"actions": {"enabled": False}})
    spec = pod_spec(docs)
    assert spec["serviceAccountName"] == FULLNAME
    assert spec["automountServiceAccountToken"] is True
    assert service_account_token_secrets(docs) == {}
    assert find(docs, "ServiceAccount", ACTIONS_SA) == []
    mounts = [m["name"] for m in container(docs)["volumeMounts"]]
    assert not {"actions-kubeconfig", "actions-token", "read-token"} & set(mounts)
    assert pod_spec(render(VALUE_SETS["minimal"]))["serviceAccountName"] == "existing"


def test_chart_secret_holds_only_the_keys_that_are_set() -> None:
    docs = render({"secrets": {"SLACK_BOT_TOKEN": "xoxb-1", "ANTHROPIC_API_KEY": ""}})
    secret = one(docs, "Secret", FULLNAME)
    assert sorted(secret["data"]) == ["SLACK_BOT_TOKEN"]
    # REDIS_URL comes from `redis`, never from `secrets`.
    with pytest.raises(helm_python.HelmError, match=r"set redis\.mode: external and redis\.url"):
        render({"secrets": {"REDIS_URL": "redis://r:6379/0"}})


def test_existing_secret_replaces_the_chart_secret() -> None:
    docs = render({"existingSecret": "bot-env"})
    names = [s["metadata"]["name"] for s in find(docs, "Secret")]
    assert sorted(names) == sorted([READ_TOKEN, f"{FULLNAME}-redis"])  # + Redis's password
    assert {"secretRef": {"name": "bot-env"}} in container(docs)["envFrom"]


def test_policy_configmap_is_a_valid_policy_directory(tmp_path: Path) -> None:
    docs = render()
    data = one(docs, "ConfigMap", f"{FULLNAME}-policy")["data"]
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "policy")
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "policy")
    env = one(docs, "ConfigMap", FULLNAME)["data"]
    assert mount["mountPath"] == env["INCIDENT_BOT_POLICY_DIR"] == "/etc/incident-bot/policies"
    # Lay the directory out as the kubelet does, then load it as the bot does.
    for item in volume["configMap"]["items"]:
        path = tmp_path / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[item["key"]])
    # Same content as the shipped policy (rules remember their file, hence the dumps).
    assert load_policy(tmp_path).model_dump() == load_policy(None).model_dump()
    assert load_runbooks(tmp_path / "runbooks") == load_runbooks(None)


def test_chart_defaults_are_the_shipped_policy_files() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    policy_dir = ROOT / "policies"
    assert values["policy"]["files"] == {"default.yaml": (policy_dir / "default.yaml").read_text()}
    assert values["policy"]["runbooks"] == {
        p.name: p.read_text() for p in sorted((policy_dir / "runbooks").glob("*.yaml"))
    }


def test_service_monitor_only_when_enabled() -> None:
    assert find(render(), "ServiceMonitor") == []
    docs = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "p"}}}})
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "p"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    service = one(docs, "Service", FULLNAME)
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_pod_disruption_budget_only_with_more_than_one_replica() -> None:
    pdb = one(render(), "PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["minAvailable"] == 1
    assert find(render({"replicaCount": 1}), "PodDisruptionBudget") == []
