"""Charts in the run's thread through `serve` on the demo scenario: the signal when the
proposal is posted and the recovery after the rollback, each a PNG that decodes, uploaded
once through Slack's external upload flow into the thread, also when another replica
redraws the run; a failing upload is logged with the run id and the run goes on."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from PIL import Image

from bot.charts import HEIGHT_PX, WIDTH_PX
from bot.models import RunStatus
from bot.signals import marks_of
from bot.slack.app import SLACK
from bot.store import RunStore
from tests.slack_files import File
from tests.slack_helpers import (
    APPROVER,
    SHOP_CHANNEL,
    SlackBot,
    bot_app,
    bot_env,
    proposal_in,
    run_in,
)
from tests.slack_server import SlackServer
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

UPLOAD_FLOW = ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]


def _png_size(file: File) -> tuple[int, int]:
    assert file.data is not None
    image = Image.open(io.BytesIO(file.data))
    image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
    assert image.format == "PNG"
    return image.size


def _flow(slack: SlackServer, file: File) -> list[str]:
    """The calls that uploaded `file`, in order."""
    return [
        c.method
        for c in slack.calls
        if c.args.get("filename") == file.filename
        or c.args.get("file_id") == file.id
        or file.id in str(c.args.get("files", ""))
    ]


def _charts_in(slack: SlackServer, thread: str) -> list[File]:
    """The PNGs in the thread (the thread may hold other files, e.g. the report)."""
    return [f for f in slack.files(thread) if f.filename.endswith(".png")]


def _charts(bot: SlackBot, chart: str, outcome: str) -> float:
    value = bot.deps.metrics.registry.get_sample_value(
        "incident_bot_charts_total", {"chart": chart, "outcome": outcome}
    )
    return value or 0.0


async def test_signal_and_recovery_charts_reach_the_thread_once_each(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as first:
        run_id = (await first.alert())["run_id"]
        proposal = await slack.until(lambda: proposal_in(slack))
        thread = proposal.thread_ts or ""
        [signal] = await slack.until(lambda: _charts_in(slack, thread))

    assert _charts(first, "signal", "uploaded") == 1
    assert (signal.channel, signal.thread_ts) == (SHOP_CHANNEL, thread)
    assert [m.ts for m in slack.roots(SHOP_CHANNEL)] == [thread]
    assert _png_size(signal) == (WIDTH_PX, HEIGHT_PX)
    assert signal.filename == "signal.png"
    assert signal.initial_comment.startswith("The signal that fired: `sum(rate(")
    assert _flow(slack, signal) == UPLOAD_FLOW
    [complete] = [
        c for c in slack.named("files.completeUploadExternal") if signal.id in c.args["files"]
    ]
    assert (complete.args["channel_id"], complete.args["thread_ts"]) == (SHOP_CHANNEL, thread)

    # Another replica takes the approval and drives the run to its end; a third redraws it.
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as second:
        status, _ = await second.click(slack, proposal, "approve", user=APPROVER)
        assert status == 200
        run = await run_in(store, run_id, RunStatus.RESOLVED, within=60)
        await slack.until(lambda: len(_charts_in(slack, thread)) == 2)
    async with bot_app(env) as third:
        await third.client.server.app[SLACK].threads.show(run)

    signal_again, recovery = _charts_in(slack, thread)
    assert signal_again is signal
    assert _png_size(recovery) == (WIDTH_PX, HEIGHT_PX)
    assert recovery.initial_comment.startswith("After `kubernetes.rollback`: `sum(rate(")
    assert _flow(slack, recovery) == UPLOAD_FLOW
    pngs = [
        c for c in slack.named("files.getUploadURLExternal") if c.args["filename"].endswith(".png")
    ]
    assert len(pngs) == 2
    assert _charts(second, "recovery", "uploaded") == 1
    assert _charts(second, "signal", "uploaded") == 0
    labels = [m.label for m in await marks_of(run, store)]
    assert any(label.startswith(f"kubernetes.rollback approved by {APPROVER}") for label in labels)
    assert any(label.startswith("action done") for label in labels)


async def test_a_failing_upload_is_logged_and_the_run_goes_on(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.slack.charts")
    slack.fail("files.completeUploadExternal")
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id = (await bot.alert())["run_id"]
        proposal = await slack.until(lambda: proposal_in(slack))
        await slack.until(lambda: slack.named("files.completeUploadExternal"))
        status, _ = await bot.click(slack, proposal, "approve", user=APPROVER)
        assert status == 200
        await run_in(store, run_id, RunStatus.RESOLVED, within=60)
        [recovery] = await slack.until(lambda: _charts_in(slack, proposal.thread_ts or ""))

    assert _charts(bot, "signal", "failed") == 1
    assert _charts(bot, "recovery", "uploaded") == 1
    assert recovery.filename == "recovery.png"
    [failure] = [r for r in caplog.records if "signal chart" in r.getMessage()]
    assert getattr(failure, "run_id", None) == run_id
