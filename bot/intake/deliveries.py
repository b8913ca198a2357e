"""A webhook delivery's alerts, parsed and redacted once per distinct body.

A storm repeats one body (a group's notification re-sent every `group_interval`, a
sender's retries): its repeats are answered from what the first delivery parsed,
validated and redacted. Entries are keyed by the SHA-256 digest of the raw body (with
its source), and hold only the redacted alerts, so the cache keeps no raw body and no
unredacted secret alive (as `tools.digest_cache`). A body that fails to parse is never
remembered: each delivery of it is refused anew.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bot.models import Alert
from bot.untrusted import RedactedAlert, redacted

# Bounds: bodies remembered, and their raw bytes in all (a body near the size limit
# takes the room of many small ones).
KNOWN_BODIES = 1024
KNOWN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """The alerts of one request; with `opens_run` False they only join an open run, and
    none at all is an event answered `ignored`."""

    alerts: list[Alert]
    opens_run: bool = True


@dataclass(frozen=True, kw_only=True)
class CleanDelivery:
    """A delivery whose alerts are redacted: what may be remembered and stored."""

    alerts: tuple[RedactedAlert, ...]
    opens_run: bool


# A source's parser: raises on a bad body (nothing is remembered then).
Parse = Callable[[bytes], list[Alert] | Delivery]


class DeliveryCache:
    """Deliveries by the digest of their body, the least recently used forgotten first."""

    def __init__(self, *, max_bodies: int = KNOWN_BODIES, max_bytes: int = KNOWN_BYTES) -> None:
        self._max_bodies = max_bodies
        self._max_bytes = max_bytes
        # key -> (the delivery, the length of its body); ordered, so that the least
        # recently used is forgotten in constant time (a plain dict's first key is found
        # by scanning the slots of its earlier deletions).
        self._known: OrderedDict[tuple[str, bytes], tuple[CleanDelivery, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._known)

    def delivery(self, source: str, body: bytes, parse: Parse) -> CleanDelivery:
        """The redacted delivery of `body`, parsed with `parse` unless it was before."""
        key = (source, hashlib.sha256(body).digest())
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)  # now the most recently used
            return known[0]
        known = (_clean(parse(body)), len(body))
        self._known[key] = known
        self._bytes += known[1]
        self._forget_oldest()
        return known[0]

    def _forget_oldest(self) -> None:
        while len(self._known) > self._max_bodies or (
            self._bytes > self._max_bytes and len(self._known) > 1
        ):
            _, (_, size) = self._known.popitem(last=False)
            self._bytes -= size


def _clean(parsed: list[Alert] | Delivery) -> CleanDelivery:
    delivery = parsed if isinstance(parsed, Delivery) else Delivery(alerts=parsed)
    return CleanDelivery(
        alerts=tuple(redacted(a) for a in delivery.alerts), opens_run=delivery.opens_run
    )
