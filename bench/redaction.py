"""Redaction time per 100 KB of realistic tool output, against same-run baselines.

Builds ~100 KB of Kubernetes-flavoured logs (logfmt and JSON lines, events, PromQL, digests,
UUIDs, a Go stack trace, one secret every ~40 lines) and reports the median time of
`redact` on it, the same for the text as a JSON string and for `redact_value` on a
`kubectl get pods -o json`-shaped value, next to two baselines measured on the same text
in the same process: one `str.replace` pass and one compiled-regex `sub`. Also the first
call's time, which builds the detectors.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.redaction import redact, redact_value

RUNS = 30
SIZE = 100_000


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _line(rng: random.Random, i: int) -> str:
    ts = f"2024-06-11T08:{i // 60 % 60:02d}:{i % 60:02d}.{rng.randint(0, 999):03d}Z"
    pod = f"checkout-7d9f8b6c5-{_hex(rng, 5)}"
    match i % 8:
        case 0:
            request = f"request_id={_uuid(rng)} trace_id={_hex(rng, 32)}"
            return f'{ts} level=info msg="GET /v1/orders/{i} 200" {request} latency_ms={i % 900}'
        case 1:
            fields = {"ts": ts, "level": "error", "msg": "upstream timeout", "pod": pod}
            return json.dumps({**fields, "upstream": "payments:8443", "span_id": _hex(rng, 16)})
        case 2:
            image = f"ghcr.io/org/checkout@sha256:{_hex(rng, 64)}"
            return f'{ts} Normal Pulled pod/{pod} image "{image}"'
        case 3:
            return f'{ts} query sum(rate(http_requests_total{{code=~"5..",pod="{pod}"}}[5m]))'
        case 4:
            version = rng.randint(1, 10**8)
            return f"{ts} argocd synced revision {_hex(rng, 40)} resourceVersion={version}"
        case 5:
            frame = (
                f"main.(*Server).handle(0xc000{_hex(rng, 6)})\n\t/app/server.go:{i % 400} +0x1d4"
            )
            return f"goroutine {i} [running]:\n{frame}"
        case 6:
            return f"{ts} Warning BackOff pod/{pod} Back-off restarting failed container checkout"
        case _ if i % 40 == 7:
            url = f"postgres://orders:Pw{_hex(rng, 10)}!@pg:5432/orders"
            return f"{ts} ERROR db connect {url} password=Pw{_hex(rng, 8)}"
        case _:
            return f"{ts} DEBUG cache_key=user:{i}:cart hits={i % 50} node=ip-10-0-{i % 250}-7"


def log_text(size: int = SIZE) -> str:
    rng = random.Random(7)
    lines: list[str] = []
    total, i = 0, 0
    while total < size:
        line = _line(rng, i)
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines)[:size]


def _pod(rng: random.Random) -> Any:
    env = [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "DB_PASSWORD", "value": f"Pw{_hex(rng, 10)}!"},
    ]
    container = {
        "name": "checkout",
        "image": f"ghcr.io/org/checkout@sha256:{_hex(rng, 64)}",
        "env": env,
    }
    status = {
        "phase": "Running",
        "podIP": f"10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
        "containerStatuses": [{"restartCount": 0, "containerID": f"containerd://{_hex(rng, 64)}"}],
    }
    metadata = {
        "name": f"checkout-7d9f8b6c5-{_hex(rng, 5)}",
        "uid": _uuid(rng),
        "resourceVersion": str(rng.randint(1, 10**8)),
        "labels": {"app": "checkout", "pod-template-hash": "7d9f8b6c5"},
    }
    return {"metadata": metadata, "spec": {"containers": [container]}, "status": status}


def pods_value(size: int = SIZE) -> Any:
    rng = random.Random(11)
    items: list[Any] = []
    while len(json.dumps({"items": items})) < size:
        items.append(_pod(rng))
    return {"apiVersion": "v1", "kind": "List", "items": items}


def _median_ms(fn: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    text = log_text()
    as_json = json.dumps(text)
    pods = pods_value()
    per_100kb = SIZE / len(text)

    started = time.perf_counter()
    first = redact(text)
    cold = (time.perf_counter() - started) * 1e3

    one_regex = re.compile(r"password=\S+")
    baseline_replace = _median_ms(lambda: text.replace("password=", "[REDACTED]"))
    baseline_regex = _median_ms(lambda: one_regex.sub("[REDACTED]", text))
    plain = _median_ms(lambda: redact(text)) * per_100kb
    escaped = _median_ms(lambda: redact(as_json)) * SIZE / len(as_json)
    pods_size = len(json.dumps(pods))
    value = _median_ms(lambda: redact_value(pods)) * SIZE / pods_size

    print(f"text: {len(text)} chars, {text.count(chr(10)) + 1} lines; redactions {first.counts}")
    print(f"first call (builds detectors): {cold:.1f} ms")
    print(f"baseline str.replace:          {baseline_replace * per_100kb:.3f} ms / 100 KB")
    print(f"baseline one regex sub:        {baseline_regex * per_100kb:.3f} ms / 100 KB")
    print(f"redact(log text):              {plain:.2f} ms / 100 KB")
    print(f"redact(same text as JSON):     {escaped:.2f} ms / 100 KB")
    print(f"redact_value(pods list):       {value:.2f} ms / 100 KB of JSON ({pods_size} chars)")
    print(f"ratio redact / one regex sub:  {plain / (baseline_regex * per_100kb):.1f}x")
    print(f"ratio redact / str.replace:    {plain / (baseline_replace * per_100kb):.1f}x")


if __name__ == "__main__":
    main()
