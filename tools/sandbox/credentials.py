"""Bearer tokens for the sandbox's Kubernetes API: a read-only one and a writing one.

With `credentials(read=..., write=...)` in the app's middlewares, a Kubernetes request
without one of the two tokens gets 401, and a write (anything but GET/HEAD) made with the
read token gets 403, as an API server enforcing the bot's two service accounts would.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from tools.sandbox.kubernetes_api import status_error

_KUBERNETES = ("/apis/", "/api/v1/namespaces/", "/api/v1/nodes")
READER = "system:serviceaccount:incident-bot:incident-bot-reader"


def credentials(*, read: str, write: str) -> Middleware:
    """The middleware that checks Kubernetes requests' bearer tokens."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(_KUBERNETES):
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in {read, write}:
            return status_error(401, "Unauthorized", "Unauthorized")
        if request.method not in {"GET", "HEAD"} and token != write:
            return status_error(
                403,
                "Forbidden",
                f'User "{READER}" cannot {request.method.lower()} {request.path}: '
                "the read-only service account may not write",
            )
        return await handler(request)

    return check
