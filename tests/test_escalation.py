"""A run that ends needing someone (`needs_attention`, `failed`, `expired`) says why in its
thread and pages its route's escalation target there, once: asserted on the requests the
local Slack received, through real alerts, clicks and drives on a real Redis."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bot.checkpoints import Checkpointer
from bot.models import Run, RunStatus
from bot.slack.app import SLACK
from bot.store import RunStore
from tests.factories import run as queued_run
from tests.processes import bot_env as process_env
from tests.processes import run_bot
from tests.slack_helpers import (
    APPROVER,
    DEFAULT_CHANNEL,
    SHOP_CHANNEL,
    SlackBot,
    bot_app,
    bot_env,
    proposal_in,
    run_in,
    sandbox_patches,
)
from tests.slack_server import SlackServer
from tools.sandbox import RunningSandbox
from tools.sandbox.scenario_parts import Fault

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

RUNBOOKS = Path(__file__).resolve().parent.parent / "policies" / "runbooks"
ONCALL_GROUP = "S0ONCALL1"
ONCALL_USER = "UONCALL01"
GROUP_PAGE = f"<!subteam^{ONCALL_GROUP}>"
USER_PAGE = f"<@{ONCALL_USER}>"
# Rollbacks in shop need APPROVER; with `rollback: false` no rule allows them, so the
# investigation's proposal is forbidden and the run ends `needs_attention` at once.
ROLLBACK_RULE = f"""
  - action: kubernetes.rollback
    match: {{namespace: shop}}
    approvers: {{users: [{APPROVER}]}}
"""


def _policy_dir(tmp_path: Path, routing: str, *, rollback: bool = True) -> Path:
    directory = tmp_path / "escalation-policy"
    directory.mkdir()
    actions = ROLLBACK_RULE if rollback else " []"
    (directory / "policy.yaml").write_text(f"actions:{actions}\nrouting:\n{routing}")
    shutil.copytree(RUNBOOKS, directory / "runbooks")
    return directory


def _routing(escalate: str | None = None, default_escalate: str | None = None) -> str:
    lines = [f"  default: {DEFAULT_CHANNEL}"]
    if default_escalate is not None:
        lines.append(f'  default_escalate: "{default_escalate}"')
    lines += ["  routes:", "    - match: {namespace: shop}", f"      channel: {SHOP_CHANNEL}"]
    if escalate is not None:
        lines.append(f'      escalate: "{escalate}"')
    return "\n".join(lines) + "\n"


def _sent_with(slack: SlackServer, text: str) -> list[dict[str, object]]:
    """Every message post or edit whose text or blocks carry `text`."""
    return [
        c.args
        for c in slack.calls
        if c.method in ("chat.postMessage", "chat.update") and text in json.dumps(c.args)
    ]


def _outcome_of(slack: SlackServer, run_id: str) -> str:
    """The text of the run's closing thread reply (the one naming why it needs someone)."""
    [message] = [m for m in slack.messages.values() if "This run needs someone" in m.all_text()]
    assert message.thread_ts is not None and message.channel == SHOP_CHANNEL
    assert run_id in next(m for m in slack.roots() if m.ts == message.thread_ts).all_text()
    return message.all_text()


async def _end_again(bot: SlackBot, store: RunStore, run: Run) -> None:
    """End the run a second time through a lease holder's checkpoints (as a retried run
    that ends again would), shown to the Slack threads listener like any drive."""
    threads = bot.client.server.app[SLACK].threads
    owner = f"{bot.deps.owner}/retry"
    checkpoints = Checkpointer(
        store=store, metrics=bot.deps.metrics, owner=owner, listener=threads.on_checkpoint
    )
    await store.acquire_lease(run.id, owner, 30)
    try:
        again = await checkpoints.write(run.model_copy(update={"status": RunStatus.QUEUED}))
        await checkpoints.write(again.model_copy(update={"status": run.status}))
    finally:
        await store.release_lease(run.id, owner)


async def test_a_run_that_needs_attention_pages_its_routes_group_once(
    redis_url: str, slack: SlackServer, store: RunStore, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    slack.usergroups[ONCALL_GROUP] = ("oncall", [ONCALL_USER])
    policy = _policy_dir(tmp_path, _routing(escalate="@oncall"), rollback=False)
    env = bot_env(redis_url, slack, policy, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id = (await bot.alert())["run_id"]
        run = await run_in(store, run_id, RunStatus.NEEDS_ATTENTION)
        await slack.until(lambda: _sent_with(slack, GROUP_PAGE))
        text = _outcome_of(slack, run_id)
        assert "could not finish it on its own" in text
        assert "was not offered for approval" in text  # the run's outcome: why
        assert "Nobody was paged" not in text

        # Redrawn by this replica and by another one, and ended a second time: no new page.
        threads = bot.client.server.app[SLACK].threads
        await threads.show(run)
        await threads.update_proposal(run)
        async with bot_app(env) as second:
            await second.client.server.app[SLACK].threads.show(run)
        await _end_again(bot, store, await store.load(run_id))
        await run_in(store, run_id, RunStatus.NEEDS_ATTENTION)
        assert len(_sent_with(slack, GROUP_PAGE)) == 1

        # The state a replica killed between posting the outcome and recording its ts
        # leaves: the outcome's claim is stale and it has no ts. The next replica posts the
        # outcome again (it cannot know that it reached Slack) but does not page again.
        refs = f"incident-bot:slack:{{{run_id}}}"
        await store.redis.hdel(refs, "final.ts")
        await store.redis.hset(refs, "final.claim", f"killed-replica|{time.time() - 600:.3f}")
        async with bot_app(env) as third:
            await third.client.server.app[SLACK].threads.show(run)
        outcomes = [m for m in slack.messages.values() if "This run needs someone" in m.all_text()]
        assert len(outcomes) == 2
    assert len(_sent_with(slack, GROUP_PAGE)) == 1
    assert len(slack.named("usergroups.list")) == 1  # the handle, looked up once
    assert await sandbox_patches(sandbox) == 0


async def test_a_failed_action_pages_the_routes_user_and_says_it_failed(
    redis_url: str, slack: SlackServer, store: RunStore, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    policy = _policy_dir(tmp_path, _routing(escalate=ONCALL_USER))
    env = bot_env(redis_url, slack, policy, sandbox)
    refused = Fault(
        path=r"/namespaces/shop/deployments/checkout$",
        method="PATCH",
        status=422,
        times=None,
        message="admission webhook denied the request",
    )
    sandbox.world.scenario = sandbox.world.scenario.model_copy(update={"faults": [refused]})
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id = (await bot.alert())["run_id"]
        proposal = await slack.until(lambda: proposal_in(slack))
        await run_in(store, run_id, RunStatus.AWAITING_APPROVAL)
        status, _ = await bot.click(slack, proposal, "approve", user=APPROVER)
        assert status == 200
        run = await run_in(store, run_id, RunStatus.FAILED, within=60)
        await slack.until(lambda: _sent_with(slack, USER_PAGE))
        text = _outcome_of(slack, run_id)
        await bot.client.server.app[SLACK].threads.show(run)
    assert "the approved action failed" in text
    assert "admission webhook denied the request" in text
    assert len(_sent_with(slack, USER_PAGE)) == 1


async def test_an_expired_proposal_pages_the_default_escalation_when_its_route_names_none(
    redis_url: str, slack: SlackServer, store: RunStore, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    policy = _policy_dir(tmp_path, _routing(default_escalate=ONCALL_GROUP))
    env = bot_env(redis_url, slack, policy, sandbox)
    # No time to decide: the drive that makes the proposal finds it past its timeout.
    async with bot_app(env, INCIDENT_BOT_WORKERS="1", INCIDENT_BOT_APPROVAL_TIMEOUT="0") as bot:
        run_id = (await bot.alert())["run_id"]
        await run_in(store, run_id, RunStatus.EXPIRED)
        await slack.until(lambda: _sent_with(slack, GROUP_PAGE))
        text = _outcome_of(slack, run_id)
    assert "nobody decided on its proposal in time; nothing was changed" in text
    assert "no decision within 0s" in text
    assert len(_sent_with(slack, GROUP_PAGE)) == 1
    assert await sandbox_patches(sandbox) == 0


async def test_a_route_without_escalation_pages_nobody_and_still_says_why(
    redis_url: str, slack: SlackServer, store: RunStore, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    slack.usergroups[ONCALL_GROUP] = ("oncall", [ONCALL_USER])
    policy = _policy_dir(tmp_path, _routing(), rollback=False)
    env = bot_env(redis_url, slack, policy, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id = (await bot.alert())["run_id"]
        await run_in(store, run_id, RunStatus.NEEDS_ATTENTION)
        await slack.until(
            lambda: [m for m in slack.messages.values() if "Nobody was paged" in m.all_text()]
        )
        text = _outcome_of(slack, run_id)
    assert "was not offered for approval" in text
    assert _sent_with(slack, "<!subteam^") == [] and _sent_with(slack, "<!here") == []
    assert _sent_with(slack, USER_PAGE) == []
    assert slack.named("usergroups.list") == []


async def test_a_handle_slack_does_not_know_is_named_with_a_note_that_nobody_was_paged(
    redis_url: str, slack: SlackServer, store: RunStore, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    policy = _policy_dir(tmp_path, _routing(escalate="@no-such-group"), rollback=False)
    env = bot_env(redis_url, slack, policy, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id = (await bot.alert())["run_id"]
        await run_in(store, run_id, RunStatus.NEEDS_ATTENTION)
        await slack.until(lambda: _sent_with(slack, "This run needs someone"))
        text = _outcome_of(slack, run_id)
    assert "`@no-such-group` (Slack knows no such user group, so nobody was paged)" in text
    assert _sent_with(slack, "<!subteam^") == []


async def test_a_page_whose_post_failed_is_sent_with_the_next_try(
    redis_url: str, slack: SlackServer, tmp_path: Path
) -> None:
    policy = _policy_dir(tmp_path, _routing(escalate=ONCALL_USER))
    async with bot_app(bot_env(redis_url, slack, policy, None)) as bot:
        threads = bot.client.server.app[SLACK].threads
        run = queued_run()
        await threads.show(run)  # the root message
        ended = run.model_copy(
            update={"status": RunStatus.NEEDS_ATTENTION, "outcome": "the deadline passed"}
        )
        slack.fail("chat.postMessage", "internal_error")
        await threads.on_checkpoint(ended, ())  # the outcome's post fails, and is logged
        assert [c.args for c in slack.named("chat.postMessage")][-1]["thread_ts"]
        assert not [m for m in slack.messages.values() if USER_PAGE in m.all_text()]
        await threads.show(ended)  # the next try (a later show of the run) pages
    [paged] = [m for m in slack.messages.values() if USER_PAGE in m.all_text()]
    assert "the deadline passed" in paged.all_text()


async def test_policy_check_names_the_file_and_line_of_a_bad_escalation_target(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "routing.yaml").write_text(
        "routing:\n"
        "  default_escalate: oncall\n"
        "  routes:\n"
        "    - match: {namespace: shop}\n"
        f"      channel: {SHOP_CHANNEL}\n"
        '      escalate: "<@U0123>"\n'
    )
    code, out, err = await run_bot(
        "policy", "check", str(directory), env=process_env(), cwd=tmp_path
    )
    assert code == 1, (out, err)
    file = directory / "routing.yaml"
    assert f"{file}:2: routing.default_escalate: must be a Slack user ID" in out
    assert f"{file}:6: routing.routes[0].escalate: must be a Slack user ID" in out
    assert "(got '<@U0123>')" in out and "Traceback" not in err
