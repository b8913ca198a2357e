"""The simulated pods of the sandbox's deployments and the log lines they write.

Each rollout of a deployment starts a generation of `replicas` pods of its ReplicaSet,
which run until the next rollout; only the last generation exists in the Kubernetes API,
but Loki still has the logs of the earlier ones. Pods behave and log as the scenario's
`pods` profile of their image says.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

from tools.sandbox.scenario import Deployment, ReplicaSet, World
from tools.sandbox.scenario_parts import PodProfile

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_SCAN = 20_000  # log entries looked at per pod and query, newest first


@dataclass(frozen=True, kw_only=True)
class SimPod:
    """One pod of one generation of a deployment."""

    name: str
    namespace: str
    container: str
    image: str
    labels: dict[str, str]
    replica_set: ReplicaSet
    node: str
    started: float
    ended: float | None  # when the next rollout replaced it
    profile: PodProfile


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


def _suffix(*parts: object) -> str:
    return "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in _digest(*parts)[:5])


def pods_of(world: World, dep: Deployment) -> list[SimPod]:
    """Every pod the deployment ever ran, oldest generation first."""
    nodes = [n.name for n in world.scenario.nodes] or ["sandbox-node-1"]
    pods = []
    for generation, (started, image) in enumerate(dep.rollouts):
        ended = dep.rollouts[generation + 1][0] if generation + 1 < len(dep.rollouts) else None
        rs = dep.rolled_sets[generation]
        profiles = world.scenario.pods
        profile = profiles.get(rs.config_map or "", profiles.get(image, PodProfile()))
        for i in range(dep.replicas):
            pods.append(
                SimPod(
                    name=f"{rs.name}-{_suffix(rs.name, generation, i)}",
                    namespace=dep.spec.namespace,
                    container=dep.spec.container,
                    image=image,
                    labels=dict(rs.template["metadata"]["labels"]),
                    replica_set=rs,
                    node=nodes[i % len(nodes)],
                    started=started,
                    ended=ended,
                    profile=profile,
                )
            )
    return pods


def current_pods(world: World) -> list[SimPod]:
    """The pods running now, in every namespace."""
    return [p for dep in world.deployments.values() for p in pods_of(world, dep) if p.ended is None]


def all_pods(world: World) -> list[SimPod]:
    """Every pod that ever ran (for Loki)."""
    return [p for dep in world.deployments.values() for p in pods_of(world, dep)]


def _line(template: str, pod: SimPod, index: int) -> str:
    digest = _digest(pod.name, index)
    number = str(int.from_bytes(digest[:4], "big") % 5000 + 1)
    return template.replace("{id}", digest[8:16].hex()).replace("{n}", number)


def log_entries(
    pod: SimPod, start: float, end: float, now: float, *, previous: bool = False
) -> Iterator[tuple[float, str]]:
    """The pod's log lines written in [start, end], newest first, as (time, line).

    `previous`: the crashed container's log, written in the minute before it started.
    """
    profile = pod.profile
    templates = profile.previous_logs if previous else profile.logs
    if not templates:
        return
    interval = profile.log_interval_seconds
    origin = pod.started - 60 if previous else pod.started
    stop = min(end, now, pod.started if previous else pod.ended or now)
    first = max(0, math.ceil((start - origin) / interval))
    last = math.floor((stop - origin) / interval)
    for index in range(last, max(first, last - MAX_SCAN) - 1, -1):
        yield origin + index * interval, _line(templates[index % len(templates)], pod, index)
