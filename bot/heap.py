"""Garbage collection in a long-running server: what start-up built is left out of it.

A full (generation 2) collection walks every object the collector tracks. After start-up
that is several hundred thousand objects (modules, classes and schemas of the Kubernetes
and Anthropic clients, pydantic, aiohttp) that live as long as the process; under load a
full collection comes every few seconds, and walking them all blocks the event loop for
tens of milliseconds: every request in flight waits. `freeze_startup_heap` collects once,
then moves every survivor to the permanent generation (`gc.freeze`), so later collections
walk only what was allocated since.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect start-up's garbage, freeze the rest; returns the objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
