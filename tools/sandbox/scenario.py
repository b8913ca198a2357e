"""Scenario files of the sandbox and the simulated world they start.

A scenario is a small YAML file; bundled ones live in `tools/sandbox/scenarios/`. Times are
seconds relative to the moment the sandbox starts (negative: in the past), so a range query
over the last 30 minutes always shows the same story:

    name: bad-deploy
    description: a deploy of checkout v2.4.0 raised its 5xx ratio
    recovery_seconds: 3        # a signal moves linearly to its new value over this long
                               # after the followed deployment changes image
    latency_seconds: 0         # how long every API answer takes (a slow cluster)
    deployments:
      - namespace: shop
        name: checkout
        labels: {app: checkout} # the selector and the pod template's labels
        replicas: 3
        container: checkout
        revisions:              # oldest first; the last one is running at the start
          - {revision: 1, image: registry.example/checkout:v2.3.1, at: -172800,
             change_cause: deploy v2.3.1 (#4790)}
          - {revision: 2, image: registry.example/checkout:v2.4.0, at: -240,
             change_cause: deploy v2.4.0 (#4812),
             env: {PAYMENTS_TIMEOUT: 50ms},   # the container's environment (default none)
             config_map: checkout-config-v7,  # mounted as envFrom (default none)
             limits: {memory: 512Mi}}         # the container's resource limits (default none)
        stuck: false            # true: revision 2's rollout exceeded its progress deadline
    signals:                    # the first signal whose every `match` regex is found in a
                                # PromQL query answers it with one series; no match: empty
                                # (a trailing `> 0.05` keeps the series only when true)
      - match: ['http_requests_total', 'code=~"5']
        labels: {namespace: shop, service: checkout}
        follows: shop/checkout  # the value depends on the image this deployment runs
        values: {"registry.example/checkout:v2.3.1": 0.002,
                 "registry.example/checkout:v2.4.0": 0.12}
        value: null             # with `follows`: the value for any other image (null: no series)
      - match: http_requests_total
        labels: {namespace: shop, service: checkout}
        value: 250              # without `follows`: a constant
      - match: container_memory_working_set_bytes
        labels: {namespace: shop, pod: checkout-0}
        series:                 # instead of `value`: a shape over time, linear between points
          - {at: -1800, value: 0.2}       # (seconds relative to the start; flat before the
          - {at: -300, value: 0.9}        #  first point and after the last)

Pods, logs, nodes, events, alerts, silences, RBAC and faults: see `scenario_parts`;
ConfigMaps: `kubernetes_config`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.sandbox.scenario_parts import (
    AlertSpec,
    ConfigMapSpec,
    EventSpec,
    Fault,
    NodeSpec,
    PodProfile,
    Point,
    SilenceSpec,
    interpolate,
)

JsonDict = dict[str, Any]

_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# A query ending in a comparison with a number (an alert's expression: `… > 0.05`).
_COMPARISON = re.compile(r"(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
HASH_LABEL = "pod-template-hash"


class Revision(BaseModel):
    """One revision (ReplicaSet) of a deployment."""

    model_config = ConfigDict(extra="forbid")
    revision: int = Field(ge=1)
    image: str
    at: float = Field(le=0, description="seconds relative to the sandbox start")
    change_cause: str = ""
    env: dict[str, str] = Field(default_factory=dict)
    config_map: str | None = None
    limits: dict[str, str] = Field(default_factory=dict)  # e.g. {memory: 256Mi, cpu: 500m}


class DeploymentSpec(BaseModel):
    """A deployment with one container and its revisions, oldest first."""

    model_config = ConfigDict(extra="forbid")
    namespace: str
    name: str
    labels: dict[str, str]
    replicas: int = Field(ge=0)
    container: str
    revisions: list[Revision] = Field(min_length=1)
    stuck: bool = Field(
        default=False,
        description="the last revision never becomes available: its rollout exceeds the "
        "progress deadline while the previous revision's pods keep serving",
    )

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

    @model_validator(mode="after")
    def _ordered(self) -> DeploymentSpec:
        times = [r.at for r in self.revisions]
        numbers = [r.revision for r in self.revisions]
        if times != sorted(times) or numbers != sorted(set(numbers)):
            raise ValueError(f"revisions of {self.key} must be ordered by time and number")
        return self


class Signal(BaseModel):
    """A metric series returned for every PromQL query that matches all `match` regexes."""

    model_config = ConfigDict(extra="forbid")
    match: list[str] = Field(min_length=1)
    labels: dict[str, str]
    follows: str | None = None
    values: dict[str, float] = Field(default_factory=dict)
    value: float | None = None
    series: list[Point] | None = Field(default=None, min_length=1)

    @field_validator("match", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("match")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            re.compile(pattern)
        return patterns

    @model_validator(mode="after")
    def _valued(self) -> Signal:
        if self.series is not None:
            if self.follows is not None or self.value is not None:
                raise ValueError("a signal with `series` takes neither `value` nor `follows`")
            times = [p.at for p in self.series]
            if times != sorted(set(times)):
                raise ValueError("the points of `series` must have increasing `at`")
        elif self.follows is None and self.value is None:
            raise ValueError("a signal needs `value`, `series`, or `follows` with `values`")
        return self

    def matches(self, query: str) -> bool:
        """Whether this signal answers `query`."""
        return all(re.search(pattern, query) for pattern in self.match)


class Scenario(BaseModel):
    """A scenario file: the deployments and metric signals of a simulated incident."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    recovery_seconds: float = Field(default=3.0, ge=0)
    latency_seconds: float = Field(default=0.0, ge=0)
    deployments: list[DeploymentSpec]
    signals: list[Signal] = Field(default_factory=list)
    pods: dict[str, PodProfile] = Field(default_factory=dict)
    nodes: list[NodeSpec] = Field(default_factory=list)
    events: list[EventSpec] = Field(default_factory=list)
    alerts: list[AlertSpec] = Field(default_factory=list)
    silences: list[SilenceSpec] = Field(default_factory=list)
    config_maps: list[ConfigMapSpec] = Field(default_factory=list)
    readable_namespaces: list[str] | None = None
    faults: list[Fault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _follows_known(self) -> Scenario:
        known = {d.key for d in self.deployments}
        for signal in self.signals:
            if signal.follows is not None and signal.follows not in known:
                raise ValueError(f"signal follows unknown deployment {signal.follows}")
        maps = {(c.namespace, c.name) for c in self.config_maps}
        for d in self.deployments:
            for r in d.revisions:
                if r.config_map is not None and (d.namespace, r.config_map) not in maps:
                    raise ValueError(
                        f"revision {r.revision} of {d.key} names unknown ConfigMap {r.config_map}"
                    )
        return self


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A bundled scenario by name (`bad-deploy`) or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        bundled = importlib.resources.files("tools.sandbox") / "scenarios" / f"{name_or_path}.yaml"
        if not bundled.is_file():
            raise FileNotFoundError(f"no bundled sandbox scenario named {name_or_path!r}")
        text = bundled.read_text(encoding="utf-8")
    return Scenario.model_validate(yaml.safe_load(text))


def template_hash(template: JsonDict) -> str:
    """A stable `pod-template-hash` for a pod template, in Kubernetes's alphabet."""
    digest = hashlib.sha256(repr(normalized(template)).encode()).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:10])


def normalized(value: Any) -> Any:
    """`value` without None, empty maps and empty lists, for comparing templates."""
    if isinstance(value, dict):
        kept = {k: normalized(v) for k, v in sorted(value.items())}
        return {k: v for k, v in kept.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def without_hash(template: JsonDict) -> JsonDict:
    """A copy of a pod template without the `pod-template-hash` label."""
    labels = dict(template.get("metadata", {}).get("labels", {}))
    labels.pop(HASH_LABEL, None)
    return {**template, "metadata": {**template.get("metadata", {}), "labels": labels}}


def stable_uid(*parts: str) -> str:
    """A deterministic uid for a simulated object."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


@dataclass
class ReplicaSet:
    """A simulated ReplicaSet: one pod template and the revision it currently holds."""

    name: str
    revision: int
    template: JsonDict  # with the pod-template-hash label
    created: float
    change_cause: str = ""
    history: list[int] = field(default_factory=list)  # revisions it held before

    @property
    def images(self) -> list[str]:
        """The images of the template's containers."""
        return [str(c["image"]) for c in self.template["spec"]["containers"]]

    @property
    def config_map(self) -> str | None:
        """The ConfigMap the first container reads (`envFrom`), if any."""
        refs = self.template["spec"]["containers"][0].get("envFrom", [])
        return str(refs[0]["configMapRef"]["name"]) if refs else None


@dataclass
class Deployment:
    """A simulated Deployment; mutable because PATCH changes it."""

    spec: DeploymentSpec
    uid: str
    created: float
    replicas: int
    replica_sets: list[ReplicaSet]
    current: ReplicaSet
    changed: float  # when the current template was rolled out
    generation: int
    annotations: dict[str, str] = field(default_factory=dict)  # set by clients, not managed
    patches: int = 0
    rollouts: list[tuple[float, str]] = field(default_factory=list)  # (time, first image)
    rolled_sets: list[ReplicaSet] = field(default_factory=list)  # the ReplicaSet of each rollout

    @property
    def stuck(self) -> bool:
        """Whether the rollout of the spec's last revision is stuck (and not rolled away)."""
        return self.spec.stuck and self.current is self.replica_sets[-1] and self.patches == 0

    def image_change_at(self, at: float) -> tuple[str | None, str, float]:
        """(previous image, image, when it changed) of the rollout in force at `at`."""
        previous: str | None = None
        image, since = self.rollouts[0][1], self.rollouts[0][0]
        for when, rolled in self.rollouts[1:]:
            if when > at:
                break
            previous, image, since = image, rolled, when
        return previous, image, since


def _pod_template(spec: DeploymentSpec, revision: Revision) -> JsonDict:
    container: JsonDict = {"name": spec.container, "image": revision.image}
    if revision.env:
        container["env"] = [{"name": k, "value": v} for k, v in revision.env.items()]
    if revision.limits:
        container["resources"] = {"limits": dict(revision.limits)}
    if revision.config_map:
        container["envFrom"] = [{"configMapRef": {"name": revision.config_map}}]
    template: JsonDict = {
        "metadata": {"labels": dict(spec.labels)},
        "spec": {"containers": [container]},
    }
    template["metadata"]["labels"][HASH_LABEL] = template_hash(template)
    return template


def _deployment(spec: DeploymentSpec, started: float) -> Deployment:
    sets = []
    for r in spec.revisions:
        template = _pod_template(spec, r)
        sets.append(
            ReplicaSet(
                name=f"{spec.name}-{template['metadata']['labels'][HASH_LABEL]}",
                revision=r.revision,
                template=template,
                created=started + r.at,
                change_cause=r.change_cause,
            )
        )
    return Deployment(
        spec=spec,
        uid=stable_uid("deployment", spec.key),
        created=sets[0].created,
        replicas=spec.replicas,
        replica_sets=sets,
        current=sets[-1],
        changed=sets[-1].created,
        generation=len(sets),
        rollouts=[(started + r.at, r.image) for r in spec.revisions],
        rolled_sets=list(sets),
    )


@dataclass
class World:
    """The mutable simulated state started from a scenario; times are epoch seconds."""

    scenario: Scenario
    started: float
    deployments: dict[str, Deployment]
    clock: Callable[[], float] = time.time
    resource_version: int = 1
    created_silences: list[SilenceSpec] = field(default_factory=list)  # by POST /api/v2/silences

    @classmethod
    def start(cls, scenario: Scenario, clock: Callable[[], float] = time.time) -> World:
        """The world at the sandbox's start: every deployment at its last revision."""
        started = clock()
        deployments = {d.key: _deployment(d, started) for d in scenario.deployments}
        return cls(scenario=scenario, started=started, deployments=deployments, clock=clock)

    def answer(self, query: str, at: float) -> tuple[dict[str, str], float] | None:
        """The labels and value of the series `query` returns at `at`, None for no series."""
        for signal in self.scenario.signals:
            if signal.matches(query):
                value = self.signal_value(signal, at)
                if value is None or not compares(query, value):
                    return None
                return signal.labels, value
        return None

    def signal_value(self, signal: Signal, at: float) -> float | None:
        """A signal's value at `at`, ramping linearly after an image change."""
        if signal.series is not None:
            return interpolate(signal.series, at - self.started)
        if signal.follows is None:
            return signal.value
        previous, image, since = self.deployments[signal.follows].image_change_at(at)
        target = signal.values.get(image, signal.value)
        if previous is None or target is None:
            return target
        before = signal.values.get(previous, signal.value)
        ramp = self.scenario.recovery_seconds
        if before is None or ramp <= 0 or at - since >= ramp:
            return target
        return before + (target - before) * (at - since) / ramp

    def roll_out(self, deployment: Deployment, template: JsonDict, change_cause: str = "") -> bool:
        """Make `template` the deployment's pod template, as the deployment controller would.

        An existing ReplicaSet with an equal template is reused and takes the next revision
        (like `kubectl rollout undo`); otherwise a new one is created. Returns False when
        the template is the current one already.
        """
        wanted = normalized(without_hash(template))
        if wanted == normalized(without_hash(deployment.current.template)):
            return False
        now = self.clock()
        revision = max(rs.revision for rs in deployment.replica_sets) + 1
        reused = [
            rs for rs in deployment.replica_sets if normalized(without_hash(rs.template)) == wanted
        ]
        if reused:
            target = reused[0]
            target.history.append(target.revision)
            target.revision = revision
        else:
            hashed = without_hash(template)
            pod_hash = template_hash(hashed)
            hashed["metadata"]["labels"][HASH_LABEL] = pod_hash
            target = ReplicaSet(
                name=f"{deployment.spec.name}-{pod_hash}",
                revision=revision,
                template=hashed,
                created=now,
                change_cause=change_cause,
            )
            deployment.replica_sets.append(target)
        deployment.current = target
        deployment.changed = now
        deployment.generation += 1
        deployment.rollouts.append((now, target.images[0]))
        deployment.rolled_sets.append(target)
        return True


WORLD = web.AppKey("world", World)


def compares(query: str, value: float) -> bool:
    """Whether a series of `value` survives the query's trailing comparison, as in
    Prometheus (`… > 0.05` returns only the series above 0.05); True without one."""
    found = _COMPARISON.search(query)
    if found is None:
        return True
    op, threshold = found.group(1), float(found.group(2))
    results = {
        ">": value > threshold,
        "<": value < threshold,
        ">=": value >= threshold,
        "<=": value <= threshold,
        "==": value == threshold,
        "!=": value != threshold,
    }
    return results[op]
