"""Every command in the README's and docs/' ```sh blocks is run here, or by a named test.

Quick offline `incident-bot` commands run for real, in this process (`bot.cli.main`),
against the session's Redis (under a key prefix of its own) and a fresh sandbox per
command, with RUN_ID and the other placeholders filled in. Commands that serve or need a
long setup are mapped in `RUN_ELSEWHERE` to the test (or Makefile target, or script)
that runs them, which must exist and contain the invocation. A command that is neither
fails with its file and line. Adding a documented command is one line in `EXPECT` or
`RUN_ELSEWHERE`.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.cli import main
from bot.deps import open_deps
from bot.intake.alertmanager import parse_document
from bot.models import Alert, Run, RunStatus
from bot.runs import follow, start_run
from bot.settings import Settings
from tools.sandbox import run_sandbox

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "docs/*.md")
ALERT = ROOT / "tests" / "fixtures" / "alertmanager" / "firing-single.json"

# Documented prefix -> (exit code, text the output must contain), for commands run here.
EXPECT: dict[str, tuple[int, str]] = {
    "incident-bot demo": (0, "[resolved]"),
    "incident-bot triage": (0, "[resolved]"),
    "incident-bot runs list": (0, '"status": "resolved"'),
    "incident-bot runs show": (0, '"event": "verified"'),
    "incident-bot runs report": (0, "kubernetes.rollback"),
    "incident-bot runs approve": (0, "approve by docs-test recorded"),
    "incident-bot runs reject": (0, "[rejected]"),
    "incident-bot runs resume": (0, "Resuming"),
    "incident-bot runs similar": (0, '"alertname": "HighErrorRate"'),
    "incident-bot runs replay": (0, '"identical": true'),
    "incident-bot tools list": (0, "kubernetes.pods"),
    "incident-bot tools run": (0, '"status":"ok"'),
    "incident-bot policy check": (0, ": ok (default.yaml)"),
    "incident-bot policy explain": (0, "allowed:   yes"),
}

# Documented prefix -> (file, test function or Makefile target or None, text it must contain).
# fmt: off
RUN_ELSEWHERE: dict[str, tuple[str, str | None, str]] = {
    "make demo": ("tests/test_cli.py", "test_demo_runs_offline_on_embedded_defaults_and_the_run_outlives_it", '"demo"'),  # noqa: E501
    "make test": (".ci/run", None, "make test"),
    "make lint": ("Makefile", "test", "lint"),
    "make soak": ("Makefile", "soak", "tests/test_kill9_soak.py"),
    "make bench": ("Makefile", "bench", "bench/webhook.py"),
    "make lock": ("Makefile", "lock", "--output-file requirements/runtime.txt"),
    # No Docker engine here: the Dockerfile's installs are checked, and the image's command
    # runs in its environment under bwrap with `/` read-only (as `docker run --read-only`).
    "docker build": ("tests/test_dockerfile.py", "test_the_image_installs_only_the_lock", "IMAGE_LOCKS"),  # noqa: E501
    "docker run": ("tests/test_dockerfile.py", "test_the_demo_runs_with_a_read_only_root_and_the_image_environment", "incident-bot demo --yes"),  # noqa: E501
    # Run in-process through bot.cli.main, with /readyz and the gauge; a pause left on
    # here would stop the commands after it.
    "incident-bot pause": ("tests/test_pause.py", "test_the_commands_pause_and_resume_and_readyz_and_the_gauge_show_it", '"pause"'),  # noqa: E501
    "incident-bot resume": ("tests/test_pause.py", "test_the_commands_pause_and_resume_and_readyz_and_the_gauge_show_it", '"resume"'),  # noqa: E501
    "python scripts/sync-chart-policies.py": ("tests/test_doc_commands.py", "test_sync_chart_policies_leaves_a_chart_in_sync_as_it_is", "sync-chart-policies.py"),  # noqa: E501
    "incident-bot mcp": ("tests/test_mcp_server.py", "test_a_named_scope_limits_toolsets_and_namespaces", '"--scope", "shop-reader"'),  # noqa: E501
    "python -m tools.sandbox": ("tests/test_sandbox.py", "test_module_runs_standalone_and_prints_its_url", '"tools.sandbox"'),  # noqa: E501
    "incident-bot serve --sandbox": ("tests/test_server.py", "test_serve_with_the_sandbox_needs_no_token", '"--sandbox"'),  # noqa: E501
    "incident-bot serve": ("tests/test_server.py", "test_serve_listens_until_sigterm_then_exits_cleanly", "_serve_until_sigterm"),  # noqa: E501
    "incident-bot runs retry": ("tests/test_poison_work.py", "test_a_drive_that_always_raises_is_parked_after_3_deliveries_and_retried", '"retry"'),  # noqa: E501
    "incident-bot eval --runbook-only": ("tests/test_eval_cli.py", "test_runbook_planner_passes_every_scenario", '"--runbook-only"'),  # noqa: E501
    "incident-bot eval --model": ("tests/test_eval_cli.py", "test_models_run_side_by_side_with_a_key", '"--model"'),  # noqa: E501
    "incident-bot eval": ("tests/test_eval_cli.py", "test_recorded_transcripts_score_as_recorded", '"eval"'),  # noqa: E501
}
# fmt: on

# Placeholders of the documented synopses -> the value run here (None: dropped).
TOKENS: dict[str, str | None] = {
    "ALERT.json": str(ALERT),
    "ACTION": "kubernetes.rollback",
    "k=v": "namespace=shop",
    "...": None,
    "NAME": "kubernetes.pods",
    "JSON": '{"namespace": "shop"}',
    "U": "docs-test",
    "R": "docs-test",
    "PATHS": str(ROOT / "policies"),
}
# Commands whose RUN_ID must be a fresh run awaiting approval (else: a resolved run).
NEEDS_WAITING_RUN = ("incident-bot runs approve", "incident-bot runs reject")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_BOT_ENV = (
    *("ANTHROPIC_", "INCIDENT_BOT_", "REDIS_", "KUBE"),
    *("PROMETHEUS_", "ALERTMANAGER_", "LOKI_", "SLACK_"),
)
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class DocCommand:
    """One command line of a ```sh block: where it is, its environment and its words."""

    path: str
    line: int
    env: dict[str, str] = field(compare=False)
    text: str  # the words after any VAR=value, comment dropped, as documented

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def sh_commands(document: Path, root: Path) -> list[DocCommand]:
    """The command lines of the document's ```sh blocks (a trailing `\\` continues one)."""
    found: list[DocCommand] = []
    inside, pending, start = False, "", 0
    for number, raw in enumerate(document.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            inside = stripped in ("```sh", "```bash", "```shell", "```console") and not inside
            continue
        if not inside:
            continue
        start = start or number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        words = shlex.split(pending + stripped, comments=True)
        pending, first = "", start
        start = 0
        env = {}
        while words and _ENV.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words:
            found.append(DocCommand(str(document.relative_to(root)), first, env, " ".join(words)))
    return found


def documented_commands() -> list[DocCommand]:
    """Every command of README.md and docs/*.md."""
    documents = [p for pattern in DOCUMENTS for p in sorted(ROOT.glob(pattern))]
    return [c for d in documents for c in sh_commands(d, ROOT)]


def _prefix(table: dict[str, object], command: DocCommand) -> str | None:
    """The longest key of the table that the command starts with, word by word."""
    keys = [k for k in table if (command.text + " ").startswith(k + " ")]
    return max(keys, key=len, default=None)


def runnable_argv(text: str, run_id: str) -> list[str]:
    """The documented synopsis as words to run: `[a|b]` is `a`, placeholders filled."""
    expanded = _OPTIONAL.sub(lambda m: m.group(1).split("|")[0], text)
    argv: list[str] = []
    for word in shlex.split(expanded)[1:]:  # without `incident-bot`
        value = run_id if word == "RUN_ID" else TOKENS.get(word, word)
        if value is not None:
            argv.append(value)
    return argv


def _test_source(path: Path, name: str) -> str | None:
    """The source of the test function `name` in `path`, or None when there is none."""
    text = path.read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return ast.get_source_segment(text, node)
    return None


def _make_target(path: Path, name: str) -> str | None:
    """The rule line and recipe of a Makefile target, or None when there is none."""
    match = re.search(rf"^{re.escape(name)}:.*\n(?:\t.*\n)*", path.read_text(), re.MULTILINE)
    return match.group(0) if match else None


def where_it_runs(runner: tuple[str, str | None, str]) -> str | None:
    """What is wrong with a `RUN_ELSEWHERE` entry, or None when it holds."""
    file, name, needle = runner
    path = ROOT / file
    if not path.is_file():
        return f"{file} does not exist"
    if name is None:
        body: str | None = path.read_text()
    elif path.name == "Makefile":
        body = _make_target(path, name)
    else:
        body = _test_source(path, name)
    if body is None:
        return f"{file} has no {name}"
    return None if needle in body else f"{file}::{name} does not contain {needle!r}"


@contextmanager
def sandbox_thread() -> Iterator[str]:
    """A fresh bad-deploy sandbox served from a thread of its own; yields its URL."""
    started = threading.Event()
    url: list[str] = []
    stop: list[asyncio.Event] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        loops.append(asyncio.get_running_loop())
        async with run_sandbox("bad-deploy") as running:
            url.append(running.url)
            started.set()
            await stop[0].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "the sandbox did not start"
    try:
        yield url[0]
    finally:
        loops[0].call_soon_threadsafe(stop[0].set)
        thread.join(10)


def invoke(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`incident-bot ARGV` in this process: its exit code and everything it printed."""
    capfd.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()
    return code, out + err


def fixture_alert() -> Alert:
    """The first alert of the fixture's Alertmanager webhook body."""
    return parse_document(json.loads(ALERT.read_text()))[0]


async def waiting_run() -> str:
    """A run of the fixture alert driven until its proposal awaits approval."""

    async def stop_there(run: Run) -> bool:
        return False

    async with open_deps(Settings()) as deps:
        run = await start_run(deps, fixture_alert(), trigger="cli")
        ended = await follow(deps.driver(), deps, run.id, stop_there)
    assert ended.status is RunStatus.AWAITING_APPROVAL, ended.status
    return run.id


@pytest.fixture(scope="module")
def world(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis under a key prefix of this module's own, as the only bot
    settings (none of this shell's), in a scratch working directory."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith(_BOT_ENV)]:
            mp.delenv(name)
        mp.setenv("REDIS_URL", redis_server)
        mp.setenv("INCIDENT_BOT_KEY_PREFIX", f"doc-commands-{uuid.uuid4().hex[:8]}:")
        mp.setenv("INCIDENT_BOT_VERIFY_INTERVAL", "0.5")
        mp.chdir(tmp_path_factory.mktemp("doc-cwd"))
        yield redis_server


@contextmanager
def backends(mp: pytest.MonkeyPatch) -> Iterator[None]:
    """Every tool backend served by a fresh sandbox while the block runs."""
    with sandbox_thread() as url:
        for name in ("PROMETHEUS_URL", "ALERTMANAGER_URL", "LOKI_URL", "KUBERNETES_URL"):
            mp.setenv(name, url)
        yield


@pytest.fixture(scope="module")
def resolved_run(world: str) -> str:
    """A resolved run of the fixture alert, after a similar one (same alert and service,
    rejected: quicker than a second rollback and its verification)."""
    for answer in ("--no", "--yes"):
        with pytest.MonkeyPatch.context() as mp, backends(mp):
            with pytest.raises(SystemExit) as ended:
                main(["triage", str(ALERT), answer])
        assert ended.value.code == 0

    async def newest() -> str:
        async with open_deps(Settings()) as deps:
            [run] = await deps.store.list_runs(limit=1)
        return run.id

    return asyncio.run(newest())


COMMANDS = documented_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command(
    command: DocCommand, resolved_run: str, capfd: pytest.CaptureFixture[str]
) -> None:
    elsewhere = _prefix(dict(RUN_ELSEWHERE), command)
    if elsewhere is not None:
        problem = where_it_runs(RUN_ELSEWHERE[elsewhere])
        assert problem is None, f"{command}: mapped to {RUN_ELSEWHERE[elsewhere]}: {problem}"
        return
    expected = _prefix(dict(EXPECT), command)
    assert expected is not None, (
        f"{command}: neither run here (EXPECT) nor mapped to a test (RUN_ELSEWHERE)"
    )
    code, needle = EXPECT[expected]
    with pytest.MonkeyPatch.context() as mp, backends(mp):
        for name, value in command.env.items():
            mp.setenv(name, value)
        run_id = asyncio.run(waiting_run()) if expected in NEEDS_WAITING_RUN else resolved_run
        argv = runnable_argv(command.text, run_id)
        leftover = [w for w in argv if re.fullmatch(r"[A-Z][A-Z_.]*|.*[\[\]|].*", w)]
        assert not leftover, f"{command}: placeholders left unfilled: {leftover} (add to TOKENS)"
        got, output = invoke(argv, capfd)
    assert (got, needle in output) == (code, True), f"{command}: exit {got}, output:\n{output}"


def test_the_documents_have_commands_and_every_mapping_is_used() -> None:
    texts = {c.text for c in COMMANDS}
    assert {"make demo", "make test"} <= texts
    assert any(t.startswith("incident-bot runs show RUN_ID") for t in texts)
    used = {_prefix(dict(RUN_ELSEWHERE), c) for c in COMMANDS} | {
        _prefix(dict(EXPECT), c) for c in COMMANDS
    }
    stale = sorted(set(RUN_ELSEWHERE) - used) + sorted(set(EXPECT) - used)
    assert stale == [], f"entries no documented command uses: {stale}"


def test_extraction_finds_each_command_with_its_line_and_environment(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    doc.write_text(
        "text\n```sh\n# a comment\nA=1 B=two incident-bot serve   # serves\n\n"
        "incident-bot runs show \\\n  RUN_ID --json\n```\n```yaml\nnot: a command\n```\n"
    )
    found = sh_commands(doc, tmp_path)
    assert [(c.path, c.line, c.env, c.text) for c in found] == [
        ("docs/x.md", 4, {"A": "1", "B": "two"}, "incident-bot serve"),
        ("docs/x.md", 6, {}, "incident-bot runs show RUN_ID --json"),
    ]
    unknown = DocCommand("docs/x.md", 9, {}, "incident-bot frobnicate")
    assert _prefix(dict(EXPECT), unknown) is None and _prefix(dict(RUN_ELSEWHERE), unknown) is None
    assert runnable_argv("incident-bot runs report RUN_ID [--format markdown|json]", "r1") == [
        "runs",
        "report",
        "r1",
        "--format",
        "markdown",
    ]
    assert where_it_runs(("tests/test_cli.py", "test_no_such_test", "x")) is not None


def test_sync_chart_policies_leaves_a_chart_in_sync_as_it_is(tmp_path: Path) -> None:
    """`python scripts/sync-chart-policies.py`, run on a copy of the files it reads and
    writes: the chart in the repository is in sync, so its values come out unchanged, and
    a drifted copy is repaired."""
    for part in ("scripts/sync-chart-policies.py", "helm/incident-bot/values.yaml", "policies"):
        source, target = ROOT / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    values = tmp_path / "helm/incident-bot/values.yaml"
    script = [sys.executable, "scripts/sync-chart-policies.py"]
    subprocess.run(script, cwd=tmp_path, check=True, timeout=30)
    assert values.read_text() == (ROOT / "helm/incident-bot/values.yaml").read_text()
    (tmp_path / "policies/default.yaml").write_text("# drifted\n")
    subprocess.run(script, cwd=tmp_path, check=True, timeout=30)
    assert "      # drifted\n" in values.read_text()
