"""`webhook.call`: POST to a URL the operator listed, signed, once per proposal.

The hook for a team's own runbook automation. The body is JSON (`run_id`, `proposal_id`,
`webhook`, `payload`); the request carries

    Idempotency-Key: <proposal id>        the receiver runs each key once
    X-Incident-Bot-Timestamp: <unix seconds>
    X-Incident-Bot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>

The bot never retries the POST blindly. When the process died before the answer was
recorded, the receiver is asked whether it ran the key, if the policy gives the webhook a
`status_url`: `GET <status_url>` with the same `Idempotency-Key`, timestamp and signature
headers (the signature covers `"<timestamp>." + key`) answers 200 when the key ran, 404
when it never arrived (the POST is then sent again, under the same key), and anything else
leaves it `unknown`. Without a `status_url` the run ends `needs_attention`, and the
receiver's log, keyed by the proposal id, says whether it ran. The URLs must be
https unless the policy marks it `insecure: true`; a redirect is not followed (it would
send the signed body somewhere the policy does not list); and of the answer only the
status and a short, redacted snippet are kept, since it ends up in Slack and the audit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from policies.target import Target
from tools.actions.base import Action, ActionContext, ActionError, Effect, WebhookEndpoint
from tools.redaction import redact_text

SIGNATURE_HEADER = "X-Incident-Bot-Signature"
TIMESTAMP_HEADER = "X-Incident-Bot-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Of the receiver's answer: read at most this much, and report at most SNIPPET_CHARS of it.
_ANSWER_READ_BYTES = 4096
SNIPPET_CHARS = 200


class WebhookInput(BaseModel):
    """Arguments of `webhook.call`."""

    model_config = ConfigDict(extra="forbid")
    webhook: str = Field(
        min_length=1, description="The name of a webhook the policy lists.", examples=["flush"]
    )
    payload: dict[str, JsonValue] = Field(
        default_factory=dict, description="JSON the receiver gets under `payload`."
    )


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_valid(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver checks (in constant time)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _endpoint(ctx: ActionContext, name: str) -> WebhookEndpoint:
    endpoint = ctx.webhooks.get(name)
    if endpoint is None:
        listed = ", ".join(sorted(ctx.webhooks)) or "none"
        raise ActionError(f"webhook {name!r} is not listed in the policy (listed: {listed})")
    return endpoint


def _require_https(endpoint: WebhookEndpoint, url: str | None = None) -> None:
    """Refuse a URL (the webhook's own by default) that is not https, unless it is http
    and the policy allowed that."""
    url = url or endpoint.url
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and endpoint.insecure):
        return
    raise ActionError(
        f"webhook {endpoint.name}: {redact_text(url)} is not https; only a webhook "
        "the policy marks `insecure: true` may use plain http"
    )


async def _snippet(response: aiohttp.ClientResponse) -> str:
    """The start of the answer, redacted before it is cut (so no half secret survives)."""
    raw = b""
    while len(raw) < _ANSWER_READ_BYTES:
        chunk = await response.content.read(_ANSWER_READ_BYTES - len(raw))
        if not chunk:
            break
        raw += chunk
    return redact_text(raw.decode("utf-8", errors="replace"))[:SNIPPET_CHARS]


async def dry_run(ctx: ActionContext, args: WebhookInput) -> str:
    """`webhook flush: not called -> POST https://… once with {…}`."""
    endpoint = _endpoint(ctx, args.webhook)
    _require_https(endpoint)
    signed = "HMAC-SHA256 signed" if endpoint.secret else "NO signing secret configured"
    return (
        f"webhook {endpoint.name}: not called -> POST {endpoint.url} once with payload "
        f"{json.dumps(args.payload, sort_keys=True)} ({signed}, Idempotency-Key = proposal id)"
    )


async def execute(ctx: ActionContext, args: WebhookInput, proposal_id: str) -> str:
    """POST the signed payload; a non-2xx answer (a redirect too) is a failure."""
    endpoint = _endpoint(ctx, args.webhook)
    _require_https(endpoint)
    if not endpoint.secret:
        raise ActionError(
            f"webhook {endpoint.name} has no signing secret "
            "(INCIDENT_BOT_ACTIONS_WEBHOOK_SECRET or the webhook's secret_env)"
        )
    body = json.dumps(
        {
            "run_id": ctx.run_id,
            "proposal_id": proposal_id,
            "webhook": endpoint.name,
            "payload": args.payload,
        },
        sort_keys=True,
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: proposal_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
    }
    timeout = aiohttp.ClientTimeout(total=ctx.timeout_seconds)
    where = f"webhook {endpoint.name}: POST {redact_text(endpoint.url)}"
    try:
        async with ctx.http.post(
            endpoint.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        ) as response:
            status = response.status
            location = response.headers.get("Location")
            answer = await _snippet(response)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ActionError(f"{where} failed: {redact_text(repr(exc))}") from exc
    if 300 <= status < 400:
        raise ActionError(
            f"{where} answered {status}, a redirect to {redact_text(location or '(no Location)')}"
            " that is not followed: list the final URL in the policy instead"
        )
    if not 200 <= status < 300:
        raise ActionError(f"{where} answered {status}: {answer}")
    return f"{where} answered {status} {answer}"


async def observe(ctx: ActionContext, args: WebhookInput) -> str:
    """What can be known without the receiver: where to look."""
    endpoint = _endpoint(ctx, args.webhook)
    if endpoint.status_url:
        return (
            f"webhook {endpoint.name} ({endpoint.url}): its status URL did not say whether "
            f"Idempotency-Key {ctx.proposal_id} ran; its receiver's log shows it"
        )
    return (
        f"webhook {endpoint.name} ({endpoint.url}) cannot be observed from here; its "
        f"receiver's log shows whether Idempotency-Key {ctx.proposal_id} ran"
    )


async def observe_effect(ctx: ActionContext, args: WebhookInput, proposal_id: str) -> Effect:
    """What the receiver's `status_url` says of the key: 200 `applied`, 404 `not_applied`;
    `unknown` without a status URL or secret, or for any other answer."""
    endpoint = ctx.webhooks.get(args.webhook)
    if endpoint is None or not endpoint.status_url or not endpoint.secret:
        return "unknown"
    try:
        _require_https(endpoint, endpoint.status_url)
    except ActionError:
        return "unknown"
    timestamp = str(int(time.time()))
    headers = {
        IDEMPOTENCY_HEADER: proposal_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, proposal_id.encode()),
    }
    timeout = aiohttp.ClientTimeout(total=ctx.timeout_seconds)
    try:
        async with ctx.http.get(
            endpoint.status_url, headers=headers, timeout=timeout, allow_redirects=False
        ) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        return "unknown"
    if status == 200:
        return "applied"
    return "not_applied" if status == 404 else "unknown"


def target(args: WebhookInput) -> Target:
    """The listed webhook it calls (not namespaced: the policy lists its URL)."""
    return Target(kind="webhook", name=args.webhook)


WEBHOOK = Action(
    name="webhook.call",
    description=(
        "POST a payload to one of the team's own automation webhooks listed in the policy "
        "(signed with HMAC-SHA256, idempotency key = the proposal)."
    ),
    input_model=WebhookInput,
    dry_run=dry_run,
    execute=execute,
    observe=observe,
    observe_effect=observe_effect,
    target=target,
    # Receivers run each Idempotency-Key once, so sending the POST again is safe; it is
    # sent again only when the receiver said it never got the key (`not_applied`).
    idempotent_by_proposal=True,
)
