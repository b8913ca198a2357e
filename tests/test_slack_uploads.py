"""`upload_once` puts a file into a run's thread through Slack's external upload flow,
once per run and name, whichever replica asks and however often; a failed upload is
released so that the next attempt may try again."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.refs import MessageRefs
from bot.slack.uploads import ref_name, upload_once
from bot.store import RunStore
from tests.slack_server import BOT_TOKEN, SlackServer

pytest_plugins = ("tests.slack_fixtures",)

THREAD = "1700000000.000001"


async def _upload(refs: MessageRefs, slack: SlackServer, owner: str, data: bytes) -> bool:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    return await upload_once(
        refs,
        client,
        run_id="run-1",
        name="chart",
        owner=owner,
        channel="C0SHOP001",
        thread_ts=THREAD,
        filename="chart.png",
        content=data,
        title="The signal",
        comment="The signal that fired",
    )


async def test_a_file_reaches_the_thread_once_across_replicas(
    store: RunStore, slack: SlackServer
) -> None:
    refs = MessageRefs(store.redis, prefix="incident-bot:", retention_seconds=60)
    data = bytes(range(256)) * 40

    answers = await asyncio.gather(*(_upload(refs, slack, f"r{i}", data) for i in range(3)))
    again = await _upload(refs, slack, "r0", data)

    assert sorted(answers) == [False, False, True] and again is False
    [file] = slack.files(THREAD)
    assert (file.data, file.channel, file.title) == (data, "C0SHOP001", "The signal")
    assert file.initial_comment == "The signal that fired"
    methods = [c.method for c in slack.calls]
    assert methods == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert (await refs.load("run-1"))[f"{ref_name('chart')}.ts"] == file.id


async def test_a_failed_upload_is_released_for_the_next_attempt(
    store: RunStore, slack: SlackServer
) -> None:
    refs = MessageRefs(store.redis, prefix="incident-bot:", retention_seconds=60)
    slack.fail("files.completeUploadExternal")

    with pytest.raises(SlackApiError):
        await _upload(refs, slack, "r0", b"png")
    assert slack.files(THREAD) == []

    assert await _upload(refs, slack, "r1", b"png") is True
    assert [f.data for f in slack.files(THREAD)] == [b"png"]
