"""The parts of a scenario beyond deployments and metrics: what pods of an image look like
and log, nodes, extra events, Alertmanager's alerts and silences, RBAC and injected faults.

    pods:                         # by image, or by the ConfigMap a revision reads (which
                                  # wins); images not listed run cleanly and log nothing
      registry.example/checkout:v2.4.0:
        restarts: 2
        last_termination: {reason: Error, exit_code: 1, message: "panic: ..."}
        log_interval_seconds: 2   # one line every 2 s per pod, cycling through `logs`
        logs: ['level=error msg="upstream timeout" upstream=payments:8443 id={id} ms={n}']
        previous_logs: ["panic: ..."]   # the crashed container's log
        events: [{type: Warning, reason: Unhealthy, message: "Readiness probe failed"}]
    nodes: [{name: node-1, pressure: [DiskPressure]}]
    events: [{kind: Deployment, name: checkout, namespace: shop, reason: ..., at: -240}]
    alerts: [{labels: {alertname: HighErrorRate}, annotations: {}, at: -120}]
    silences: [{matchers: ['service="search"'], starts: -7200, ends: -3600}]
    readable_namespaces: [shop]   # RBAC of the bot's service account (omit: all)
    faults: [{path: "/api/v1/namespaces/shop/pods$", status: 429, times: 1, retry_after: 0}]

In log lines `{id}` becomes a hex id and `{n}` a number, both varying from line to line.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Termination(_Part):
    """How a pod's previous container ended."""

    reason: str
    exit_code: int
    message: str = ""


class PodEvent(_Part):
    """An event every pod of an image has."""

    type: Literal["Normal", "Warning"] = "Warning"
    reason: str
    message: str
    count: int = 1


class PodProfile(_Part):
    """How the pods of one image behave."""

    ready: bool = True
    restarts: int = Field(default=0, ge=0)
    waiting_reason: str | None = None  # e.g. CrashLoopBackOff: the container is not running
    last_termination: Termination | None = None
    log_interval_seconds: float = Field(default=2.0, gt=0)
    logs: list[str] = Field(default_factory=list)
    previous_logs: list[str] = Field(default_factory=list)
    events: list[PodEvent] = Field(default_factory=list)


class NodeSpec(_Part):
    """One node; `pressure` names the conditions that are True."""

    name: str
    ready: bool = True
    pressure: list[Literal["MemoryPressure", "DiskPressure", "PIDPressure"]] = Field(
        default_factory=list
    )
    unschedulable: bool = False
    cpu: str = "4"
    memory: str = "16Gi"


class EventSpec(_Part):
    """An event about one object."""

    namespace: str
    kind: str
    name: str
    type: Literal["Normal", "Warning"] = "Normal"
    reason: str
    message: str
    at: float = Field(le=0, description="seconds relative to the sandbox start")
    count: int = 1


class AlertSpec(_Part):
    """An alert Alertmanager holds."""

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    at: float = Field(default=0, le=0)
    silenced_by: list[str] = Field(default_factory=list)


class SilenceSpec(_Part):
    """A silence in Alertmanager; its state follows from `starts` and `ends`."""

    id: str | None = None
    matchers: list[str]
    created_by: str = "oncall@example.com"
    comment: str = ""
    starts: float
    ends: float


class Fault(_Part):
    """Answer requests whose path matches `path` (a regex) with `status`, `times` times
    (None: always), before the real answer."""

    path: str
    method: str = "GET"
    status: int
    times: int | None = 1
    retry_after: float | None = None
    message: str = "injected by the sandbox scenario"


class ConfigMapSpec(_Part):
    """A ConfigMap (served by `tools.sandbox.kubernetes_config`)."""

    namespace: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    data: dict[str, str] = Field(default_factory=dict)
    at: float = Field(default=-86400, le=0, description="seconds relative to the sandbox start")


class Point(_Part):
    """One point of a time-shaped signal."""

    at: float = Field(description="seconds relative to the sandbox start")
    value: float


def interpolate(points: list[Point], offset: float) -> float:
    """The value at `offset` seconds from the start: linear between points, flat outside."""
    if offset <= points[0].at:
        return points[0].value
    for before, after in itertools.pairwise(points):
        if offset <= after.at:
            share = (offset - before.at) / (after.at - before.at)
            return before.value + (after.value - before.value) * share
    return points[-1].value
