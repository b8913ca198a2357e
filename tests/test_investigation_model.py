"""The investigation loop with the real Anthropic SDK against a scripted Messages API.

Every test runs the whole stack: `open_deps` (real Redis, the real `AsyncAnthropic` over
aiohttp), `start_run`, `RunDriver.drive`, the real tools against the bad-deploy sandbox.
The scripted API checks each request the loop sends and fails the test when the loop and
the script disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest

from bot.deps import Deps, open_deps
from bot.models import Alert, Decision, Run, RunStatus, Usage
from bot.runs import record_decision, start_run
from bot.settings import Settings
from bot.store import AuditEvent
from tests.anthropic_server import (
    API_KEY,
    RATIO_QUERY,
    SCRIPTS,
    Exchange,
    ScriptedAnthropic,
    call,
    error,
    hold,
    last_assistant,
    message,
    offers_tools,
    propose_input,
    request_problems,
    rollback_script,
    strip_cache_control,
    text,
    tool_result,
    tool_use,
    usage,
    user_text,
)
from tests.servers import free_port
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox

ALERT = Alert(
    source="alertmanager",
    fingerprint="3f9a1c2b7d4e5f60",
    group_key='{}:{alertname="HighErrorRate"}',
    title="HighErrorRate: checkout 5xx ratio above 5%",
    labels={
        "alertname": "HighErrorRate",
        "namespace": "shop",
        "service": "checkout",
        "severity": "page",
    },
    annotations={"summary": "5xx ratio of shop/checkout is above 5% for 2 minutes"},
)
HISTORY_ARGS = {"namespace": "shop", "deployment": "checkout"}
ROLLBACK_ARGS = {"namespace": "shop", "deployment": "checkout", "to_revision": 1}
# A model the SDK does not warn about (pytest turns warnings into errors).
MODEL = "claude-sonnet-4-6"
FINDINGS = [{"summary": "The 5xx ratio is 12%.", "evidence": "prometheus_query: 0.12"}]


def conclude(
    id: str = "toolu_conclude", findings: Sequence[dict[str, str]] = (), **kw: Any
) -> Exchange:
    """An exchange answering with a `conclude` call; `kw` are its `expect` and `note`.

    Findings must be grounded in the run's tool results (else the model is asked again):
    `FINDINGS` quote the 5xx ratio, for runs that queried it.
    """
    summary = "Nothing to roll back; the findings are for the on-call engineer."
    done = {"summary": summary, "findings": list(findings)}
    return Exchange(tool_use(call(id, "conclude", done)), **kw)


@dataclass(frozen=True, kw_only=True)
class Harness:
    """The bot's deps wired to the scripted API and the sandbox."""

    deps: Deps
    claude: ScriptedAnthropic
    sandbox: RunningSandbox

    async def investigate(self) -> Run:
        """Start a run for `ALERT` and drive it as far as it goes."""
        run = await start_run(self.deps, ALERT)
        return await self.deps.driver().drive(run.id)

    async def approve(self, run: Run) -> Run:
        """Record an approval of the run's proposal and drive the run again."""
        assert run.proposal is not None
        decision = Decision(
            run_id=run.id, proposal_id=run.proposal.id, user="U024BE7LH", verdict="approve"
        )
        assert await record_decision(self.deps, decision)
        return await self.deps.driver().drive(run.id)

    async def audit(self, run: Run, event: str) -> list[AuditEvent]:
        """The run's audit events called `event`."""
        return [e for e in await self.deps.store.read_audit(run.id) if e.event == event]

    async def sandbox_state(self) -> dict[str, Any]:
        """The sandbox's `/sandbox/state`."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.sandbox.url}/sandbox/state") as response,
        ):
            state: dict[str, Any] = await response.json()
            return state


@contextlib.asynccontextmanager
async def harness(
    redis_url: str, script: Sequence[Exchange], **settings: Any
) -> AsyncIterator[Harness]:
    """Sandbox, scripted API and deps; on a clean exit, the whole script must be used."""
    # The error ratio follows the rollback within 0.2 s, so verification passes at once.
    scenario = load_scenario("bad-deploy").model_copy(update={"recovery_seconds": 0.2})
    async with run_sandbox(scenario) as sandbox, ScriptedAnthropic(script) as claude:
        values: dict[str, Any] = {
            "REDIS_URL": redis_url,
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": claude.url,
            "INCIDENT_BOT_MODEL": MODEL,
            "PROMETHEUS_URL": sandbox.url,
            "KUBERNETES_URL": sandbox.url,
            "INCIDENT_BOT_VERIFY_INTERVAL": 0.2,
            "INCIDENT_BOT_VERIFY_TIMEOUT": 10,
            **settings,
        }
        async with open_deps(Settings(**values)) as deps:
            yield Harness(deps=deps, claude=claude, sandbox=sandbox)


# -- tools ---------------------------------------------------------------------------------
async def test_parallel_tool_calls_return_the_sandbox_data(redis_url: str) -> None:
    """Two tool_use blocks in one turn both run; their real results reach the next request."""
    script = [
        Exchange(
            tool_use(
                call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY}),
                call("toolu_history", "kubernetes_rollout_history", HISTORY_ARGS),
            ),
            expect=[
                offers_tools(
                    "prometheus_query",
                    "prometheus_query_range",
                    "kubernetes_get_deployment",
                    "kubernetes_rollout_history",
                    "propose_remediation",
                    "conclude",
                ),
                user_text("HighErrorRate"),
            ],
        ),
        conclude(
            findings=FINDINGS,
            expect=[
                tool_result("toolu_ratio", contains='"value":0.12'),
                tool_result("toolu_history", contains="registry.example/checkout:v2.3.1"),
            ],
        ),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED
        results = h.claude.requests[1].tool_results()
        assert list(results) == ["toolu_ratio", "toolu_history"]  # in the order of the calls
        calls = await h.audit(run, "tool_call")
        assert {(e.data["tool"], e.data["status"]) for e in calls} == {
            ("prometheus_query", "ok"),
            ("kubernetes_rollout_history", "ok"),
        }


async def test_invalid_tool_arguments_come_back_as_errors(redis_url: str) -> None:
    """A missing field and an unknown tool are is_error results; the valid call still runs."""
    script = [
        Exchange(
            tool_use(
                call("toolu_noquery", "prometheus_query", {"minutes": 5}),
                call(
                    "toolu_deploy",
                    "kubernetes_get_deployment",
                    {"namespace": "shop", "name": "checkout"},
                ),
                call("toolu_exec", "kubectl_exec", {"command": "rm -rf /"}),
            )
        ),
        conclude(
            expect=[
                tool_result("toolu_noquery", is_error=True, contains="query: Field required"),
                tool_result("toolu_noquery", is_error=True, contains="minutes: Extra inputs"),
                tool_result("toolu_deploy", contains="v2.4.0"),
                tool_result("toolu_exec", is_error=True, contains="unknown tool 'kubectl_exec'"),
            ]
        ),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED


# -- stop reasons --------------------------------------------------------------------------
async def test_max_tokens_answers_the_cut_call_and_nudges(redis_url: str) -> None:
    """A reply cut at max_tokens: its tool call is answered with an error, plus a nudge."""
    cut = call("toolu_cut", "prometheus_query", {"query": "sum(rate(http_requests_total{"})
    script = [
        Exchange(
            message([{"type": "text", "text": "Let me look at"}, cut], stop_reason="max_tokens")
        ),
        conclude(
            expect=[
                tool_result("toolu_cut", is_error=True, contains="cut off"),
                user_text("output token limit"),
            ]
        ),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED
        assert run.model_calls == 2
        assert await h.audit(run, "tool_call") == []  # the cut call never ran


PAUSED: list[dict[str, Any]] = [
    {
        "type": "thinking",
        "thinking": "Search for known issues with checkout v2.4.0 first.",
        "signature": "RXVnZW5pY3MgaXMgbm90IGEgc2lnbmF0dXJl",
    },
    {
        "type": "server_tool_use",
        "id": "srvtoolu_01A2B3C4",
        "name": "web_search",
        "input": {"query": "checkout v2.4.0 5xx"},
    },
]


async def test_pause_turn_sends_the_content_back_as_is(redis_url: str) -> None:
    """After pause_turn the paused content is the last message, unchanged; the model goes on."""
    script = [
        Exchange(message(PAUSED, stop_reason="pause_turn")),
        Exchange(
            tool_use(call("toolu_history", "kubernetes_rollout_history", HISTORY_ARGS)),
            expect=[last_assistant(PAUSED)],
        ),
        conclude(expect=[tool_result("toolu_history", contains="v2.4.0")]),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED
        assert run.model_calls == 3
        # The continuation joins the paused turn in one assistant message.
        merged = strip_cache_control(h.claude.requests[2].blocks(-2))
        assert [b["type"] for b in merged] == ["thinking", "server_tool_use", "tool_use"]


async def test_refusal_hands_the_run_to_the_runbook_planner(redis_url: str) -> None:
    """A refusal ends the model's part; the runbook planner proposes the rollback."""
    details = {"type": "refusal", "category": None, "explanation": None}
    script = [Exchange(message([], stop_reason="refusal", stop_details=details))]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.engine == "runbook"
        assert run.proposal is not None and run.proposal.action == "kubernetes.rollback"
        [fallback] = await h.audit(run, "planner_fallback")
        assert "refusal" in fallback.data["reason"]
        assert len(h.claude.requests) == 1


# -- guards --------------------------------------------------------------------------------
async def test_max_steps_stops_a_looping_model(redis_url: str) -> None:
    """A model that calls the same tool forever gets exactly max_steps calls."""
    same = {"query": RATIO_QUERY}
    script = [
        Exchange(
            tool_use(call(f"toolu_loop{i}", "prometheus_query", same)),
            expect=[tool_result(f"toolu_loop{i - 1}", contains="0.12")] if i else [],
        )
        for i in range(3)
    ]
    async with harness(redis_url, script, INCIDENT_BOT_MAX_STEPS=3) as h:
        run = await h.investigate()
        assert len(h.claude.requests) == 3
        assert run.model_calls == 3
        assert run.engine == "runbook"
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.proposal is not None and run.proposal.arguments == ROLLBACK_ARGS
        [fallback] = await h.audit(run, "planner_fallback")
        assert "step limit" in fallback.data["reason"]
        assert "3" in fallback.data["reason"]


async def test_usage_is_summed_on_the_run(redis_url: str) -> None:
    """Input, output, cache read and cache write tokens of every call add up on the run."""
    script = [
        Exchange(
            tool_use(
                call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY}),
                usage=usage(1200, 80, cache_write=3000),
            )
        ),
        Exchange(
            tool_use(
                call("toolu_history", "kubernetes_rollout_history", HISTORY_ARGS),
                usage=usage(300, 60, cache_read=3000, cache_write=400),
            )
        ),
        Exchange(
            tool_use(
                call("toolu_conclude", "conclude", {"summary": "v2.4.0 is at fault."}),
                usage=usage(250, 90, cache_read=3400),
            )
        ),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED
        assert run.model_calls == 3
        investigation = run.model_usage[MODEL]
        assert investigation.calls == 3
        assert investigation.usage == Usage(
            input_tokens=1750, output_tokens=230, cache_read_tokens=6400, cache_write_tokens=3400
        )
        # The run's totals add the fast model's headline call to the investigation's.
        [headline] = h.claude.fast_requests
        fast = run.model_usage[headline.body["model"]]
        assert fast.calls == 1
        assert run.usage == investigation.usage.plus(fast.usage)
        assert run.cost_dollars == pytest.approx(investigation.cost_dollars + fast.cost_dollars)
        assert investigation.cost_dollars > fast.cost_dollars > 0
        stored = await h.deps.store.load(run.id)
        assert stored.usage == run.usage and stored.model_calls == 3
        calls = [e for e in await h.audit(run, "model_call") if e.data["model"] == MODEL]
        assert [e.data["usage"]["cache_read_tokens"] for e in calls] == [0, 3000, 3400]


# -- proposals -----------------------------------------------------------------------------
async def test_proposal_approved_rolls_back_and_resolves(redis_url: str) -> None:
    """propose_remediation -> awaiting_approval; approve -> the rollback runs once -> resolved."""
    async with harness(redis_url, rollback_script()) as h:
        run = await h.investigate()
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.engine == "model"
        assert run.proposal is not None
        assert run.proposal.action == "kubernetes.rollback"
        assert run.proposal.arguments == ROLLBACK_ARGS
        assert run.proposal.verify is not None and run.proposal.verify.threshold == 0.05
        assert (await h.sandbox_state())["deployments"]["shop/checkout"]["patches"] == 0

        done = await h.approve(run)

        assert done.status is RunStatus.RESOLVED, done.outcome
        checkout = (await h.sandbox_state())["deployments"]["shop/checkout"]
        assert checkout["patches"] == 1
        assert checkout["image"] == "registry.example/checkout:v2.3.1"
        assert [e.event for e in await h.audit(done, "action_succeeded")] == ["action_succeeded"]
        assert len(h.claude.requests) == 2  # no model call after the proposal


INVALID_PROPOSALS = {
    "unknown action": (
        propose_input(action="kubernetes.delete_namespace"),
        "unknown action 'kubernetes.delete_namespace'",
    ),
    "bad action arguments": (
        propose_input(arguments={**ROLLBACK_ARGS, "to_revision": 0}),
        "to_revision: Input should be greater than or equal to 1",
    ),
    "missing field": (
        {k: v for k, v in propose_input().items() if k != "rationale"},
        "rationale: Field required",
    ),
}


@pytest.mark.parametrize("case", INVALID_PROPOSALS, ids=list(INVALID_PROPOSALS))
async def test_invalid_proposal_gets_another_turn(redis_url: str, case: str) -> None:
    """An invalid propose_remediation is an is_error result; the model tries again."""
    proposal, problem = INVALID_PROPOSALS[case]
    script = [
        Exchange(tool_use(call("toolu_bad", "propose_remediation", proposal))),
        Exchange(
            # No tool ran: a finding would not be grounded.
            tool_use(call("toolu_good", "propose_remediation", propose_input(findings=[]))),
            expect=[tool_result("toolu_bad", is_error=True, contains=problem)],
        ),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.proposal is not None and run.proposal.arguments == ROLLBACK_ARGS


async def test_invalid_proposal_leaves_no_call_unanswered(redis_url: str) -> None:
    """A tool call next to an invalid proposal is answered too (not run)."""
    script = [
        Exchange(
            tool_use(
                call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY}),
                call("toolu_bad", "propose_remediation", propose_input(risk="none")),
            )
        ),
        conclude(
            expect=[
                tool_result("toolu_bad", is_error=True, contains="risk"),
                tool_result("toolu_ratio", is_error=True, contains="not run"),
            ]
        ),
    ]
    async with harness(redis_url, script) as h:
        assert (await h.investigate()).status is RunStatus.CONCLUDED


# -- the model unavailable -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "kind", "text_"),
    [(529, "overloaded_error", "Overloaded"), (500, "api_error", "Internal server error")],
)
async def test_model_unavailable_falls_back_to_the_runbook(
    redis_url: str, status: int, kind: str, text_: str
) -> None:
    """Errors on every attempt: after the SDK's retry, the planner finishes the run."""
    script = [Exchange(error(status, kind, text_), note=f"attempt {i + 1}") for i in range(2)]
    async with harness(redis_url, script, INCIDENT_BOT_MODEL_MAX_RETRIES=1) as h:
        run = await h.investigate()
        retries = [r.headers.get("x-stainless-retry-count") for r in h.claude.requests]
        assert retries == ["0", "1"]
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.engine == "runbook"
        assert run.proposal is not None
        assert run.proposal.action == "kubernetes.rollback"
        assert run.proposal.arguments == ROLLBACK_ARGS
        [fallback] = await h.audit(run, "planner_fallback")
        assert "model unavailable" in fallback.data["reason"]
        assert str(status) in fallback.data["reason"]
        assert run.engine_reason == fallback.data["reason"]


# -- the transcript ------------------------------------------------------------------------
async def test_transcript_shape_through_a_long_run(redis_url: str) -> None:
    """Every request alternates roles, answers each tool_use next, and extends the last."""
    script = [
        Exchange(
            tool_use(
                call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY}),
                call("toolu_history", "kubernetes_rollout_history", HISTORY_ARGS),
                text="Two things at once.",
            )
        ),
        Exchange(tool_use(call("toolu_bad", "prometheus_query_range", {"minutes": 30}))),
        Exchange(
            message(
                [call("toolu_cut", "kubernetes_get_deployment", {"namespace": "sh"})],
                stop_reason="max_tokens",
            )
        ),
        Exchange(message(PAUSED, stop_reason="pause_turn")),
        Exchange(text("The rollout at revision 2 explains it.")),
        Exchange(tool_use(call("toolu_propose", "propose_remediation", propose_input()))),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.AWAITING_APPROVAL
    requests = h.claude.requests
    assert len(requests) == 6
    for request in requests:
        assert request_problems(request.body) == [], request.describe()
        assert request.body["tools"] == requests[0].body["tools"]  # a stable cache prefix
        last = request.messages[-1]["content"][-1]
        assert last.get("cache_control") == {"type": "ephemeral"}
    for before, after in itertools.pairwise(requests):
        old, new = before.messages, after.messages
        assert len(new) >= len(old)
        for i, msg in enumerate(old):
            sent_before = strip_cache_control(msg["content"])
            sent_now = strip_cache_control(new[i]["content"])
            if i < len(old) - 1:
                assert sent_now == sent_before, f"message {i} changed"
            else:  # the newest message may have grown (a continued turn)
                assert sent_now[: len(sent_before)] == sent_before
    # alert, 3 tool turns with their answers, paused + continued turn, the nudge to finish
    assert [m["role"] for m in requests[-1].messages] == ["user", "assistant"] * 4 + ["user"]
    assert user_text("propose_remediation or conclude")(requests[-1]) is None


@pytest.mark.parametrize("name", ["hang-then-rollback", "hang-after-tools"])
async def test_a_run_resumes_after_its_model_call_is_lost(redis_url: str, name: str) -> None:
    """The crash scripts: a driver dies mid-call; the next one resumes from the checkpoint."""
    script = SCRIPTS[name]()
    hung = next(i for i, e in enumerate(script) if e.note == "hang")
    async with harness(redis_url, script) as h:
        run = await start_run(h.deps, ALERT)
        first = asyncio.create_task(h.deps.driver().drive(run.id))
        await h.claude.received(hung + 1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        resumed = await h.deps.driver().drive(run.id)
        assert resumed.status is RunStatus.AWAITING_APPROVAL
        assert resumed.proposal is not None and resumed.proposal.arguments == ROLLBACK_ARGS
        # The lost call was never checkpointed: the resumed run asks the same question again.
        lost, again = h.claude.requests[hung], h.claude.requests[hung + 1]
        assert strip_cache_control(lost.messages[-1]["content"]) == strip_cache_control(
            again.messages[-1]["content"]
        )


# Real replies the API is known to send; sending them back as they are is a 400.
AWKWARD_REPLIES = {
    "empty end_turn": message([], stop_reason="end_turn"),
    "empty max_tokens": message([], stop_reason="max_tokens"),
    "pause_turn ending in thinking": message(PAUSED[:1], stop_reason="pause_turn"),
}


@pytest.mark.parametrize("case", AWKWARD_REPLIES, ids=list(AWKWARD_REPLIES))
async def test_awkward_replies_keep_the_transcript_valid(redis_url: str, case: str) -> None:
    """An empty reply, or a paused one ending in thinking, still makes a valid next request."""
    async with harness(redis_url, [Exchange(AWKWARD_REPLIES[case]), conclude()]) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED
        assert run.engine == "model"


# -- the scripted server itself ------------------------------------------------------------
@contextlib.asynccontextmanager
async def sdk(url: str, api_key: str = API_KEY) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The real SDK client as the bot builds it, without retries."""
    async with anthropic.AsyncAnthropic(
        api_key=api_key, base_url=url, max_retries=0, http_client=anthropic.DefaultAioHttpClient()
    ) as client:
        yield client


async def ask(client: anthropic.AsyncAnthropic, prompt: str = "hi") -> anthropic.types.Message:
    """One small request."""
    return await client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": prompt}],
    )


async def test_server_replies_parse_as_sdk_types() -> None:
    """Responses carry what the SDK parses: content blocks, stop reason, cache usage."""
    script = [
        Exchange(
            tool_use(
                call("toolu_1", "prometheus_query", {"query": "up"}),
                usage=usage(10, 5, cache_read=7, cache_write=3),
            )
        )
    ]
    async with ScriptedAnthropic(script) as claude, sdk(claude.url) as client:
        reply = await ask(client)
    assert reply.model == MODEL
    assert reply.stop_reason == "tool_use"
    [block] = reply.content
    assert isinstance(block, anthropic.types.ToolUseBlock)
    assert (block.id, block.name, block.input) == ("toolu_1", "prometheus_query", {"query": "up"})
    assert reply.usage.cache_read_input_tokens == 7
    assert reply.usage.cache_creation_input_tokens == 3


async def test_server_fails_loudly_on_an_unscripted_request() -> None:
    """One request too many: HTTP 400 to the client, and an error when the block ends."""
    with pytest.raises(AssertionError, match="unexpected request"):
        async with ScriptedAnthropic([Exchange(text("hello"))]) as claude, sdk(claude.url) as c:
            await ask(c)
            with pytest.raises(anthropic.BadRequestError, match="unexpected request"):
                await ask(c)


async def test_server_fails_loudly_on_a_failed_expectation() -> None:
    """A failed `expect` is a 400 naming the problem, recorded for the test's end."""
    script = [Exchange(text("hello"), expect=[user_text("HighErrorRate")], note="the alert")]
    claude = ScriptedAnthropic(script)
    async with claude, sdk(claude.url) as client:
        with pytest.raises(anthropic.BadRequestError, match="the alert: no text containing"):
            await ask(client, "something else")
        with pytest.raises(AssertionError, match="something else"):
            claude.assert_done()
        claude.failures.clear()  # seen; let the block end cleanly


async def test_server_checks_the_api_key() -> None:
    """A wrong x-api-key gets 401 and is recorded."""
    claude = ScriptedAnthropic([Exchange(text("hello"))])
    async with claude, sdk(claude.url, api_key="wrong") as client:
        with pytest.raises(anthropic.AuthenticationError):
            await ask(client)
        assert "x-api-key" in claude.failures[0]
        claude.failures.clear()
        claude.script.clear()


async def test_server_holds_a_reply_until_released() -> None:
    """A held reply waits for its event; `received` tells the test the request is there."""
    released = asyncio.Event()
    async with ScriptedAnthropic([Exchange(hold(text("late"), released))]) as claude:
        async with sdk(claude.url) as client:
            pending = asyncio.create_task(ask(client))
            await claude.received(1)
            assert not pending.done()
            released.set()
            reply = await pending
    assert isinstance(reply.content[0], anthropic.types.TextBlock)
    assert reply.content[0].text == "late"


async def test_server_runs_as_a_process(repo_root: Path) -> None:
    """`python -m tests.anthropic_server` serves a named script and reports its state."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.anthropic_server",
        "--script",
        "overloaded",
        "--port",
        str(port),
        cwd=repo_root,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = await process.stdout.readline()
        assert line.decode().strip() == f"listening on http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{port}/v1/messages",
                json={
                    "model": "m",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "x"}],
                },
                headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
            ) as response:
                assert response.status == 529
                assert (await response.json())["error"]["type"] == "overloaded_error"
            async with http.get(f"http://127.0.0.1:{port}/_script/state") as response:
                state = await response.json()
        assert (state["scripted"], state["used"], state["failures"]) == (3, 1, [])
        assert state["requests"][0]["model"] == "m"
    finally:
        process.terminate()
        await process.wait()
