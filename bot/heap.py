"""Garbage collection in a long-running server: what start-up built is left out of it.

A full (generation 2) collection walks every object the collector tracks. After start-up
that is several hundred thousand objects (modules, classes and schemas of the Kubernetes
and Anthropic clients, pydantic, aiohttp) that live as long as the process; under load a
full collection comes every few seconds, and walking them all blocks the event loop for
tens of milliseconds: every request in flight waits. `freeze_startup_heap` collects once,
then moves every survivor to the permanent generation (`gc.freeze`), so later collections
walk only what was allocated since. `collect_young_less_often` raises the youngest
generation's threshold: requests in flight hold their objects across awaits, and a
collection every 700 allocations (Python's default) promotes them to the older
generations, which then walk them again although they die within milliseconds.
"""

from __future__ import annotations

import gc

# Net allocations of tracked objects between collections of the youngest generation.
YOUNG_THRESHOLD = 10_000


def freeze_startup_heap() -> int:
    """Collect start-up's garbage, freeze the rest; returns the objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def collect_young_less_often() -> tuple[int, int, int]:
    """Collect the youngest generation every `YOUNG_THRESHOLD` allocations (the older
    generations keep their thresholds); returns the thresholds now set."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_threshold()
