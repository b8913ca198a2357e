"""Caches keyed by a text's SHA-256 digest, so that they never hold the text itself.

The redactor's and the injection scanner's caches see untrusted text before it is
redacted. Keyed by the text, they would keep thousands of raw secrets alive for the life
of the process (in a core dump, a heap profile); keyed by its digest, they keep only
what was computed from it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class DigestCache(Generic[V]):
    """`compute(*texts)`, remembered for the last `maxsize` arguments it computed (the
    oldest is forgotten first)."""

    def __init__(self, compute: Callable[..., V], *, maxsize: int) -> None:
        self._compute = compute
        self._maxsize = maxsize
        self._values: dict[bytes, V] = {}
        self._lock = threading.Lock()  # redaction also runs in worker threads: for writes

    def __call__(self, *texts: str) -> V:
        """The value for `texts`, computed at their first use."""
        key = _digest(texts)
        try:
            return self._values[key]
        except KeyError:
            pass
        value = self._compute(*texts)
        with self._lock:
            self._values[key] = value
            if len(self._values) > self._maxsize:
                del self._values[next(iter(self._values))]
        return value


def _digest(texts: tuple[str, ...]) -> bytes:
    if len(texts) == 1:
        return hashlib.sha256(texts[0].encode("utf-8", "surrogatepass")).digest()
    digest = hashlib.sha256()
    for text in texts:  # each length-prefixed: ("ab", "c") is not ("a", "bc")
        raw = text.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "big") + raw)
    return digest.digest()
