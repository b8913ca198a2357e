"""Files in a run's thread: uploaded once per run and name, whichever replica gets there.

Slack's external upload flow (`files_upload_v2`: `files.getUploadURLExternal`, a POST of
the bytes to the URL it hands out, `files.completeUploadExternal` into the thread). The
upload is claimed in the run's message references (`refs.py`) under `file:<name>`, like a
message; once done, `file:<name>.ts` holds the Slack file id.
"""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.refs import MessageRefs


def ref_name(name: str) -> str:
    """The reference under which file `name` of a run is claimed and recorded."""
    return f"file:{name}"


async def upload_once(
    refs: MessageRefs,
    client: AsyncWebClient,
    *,
    run_id: str,
    name: str,
    owner: str,
    channel: str,
    thread_ts: str,
    filename: str,
    content: bytes,
    title: str,
    comment: str | None = None,
) -> bool:
    """Upload `content` as a file into the run's thread once per (run, name); False when it
    was already uploaded or another replica claimed it."""
    key = ref_name(name)
    if not (await refs.claim(run_id, key, owner)).mine:
        return False
    try:
        answer = await client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            filename=filename,
            content=content,
            title=title,
            initial_comment=comment,
        )
    except BaseException:
        await refs.release(run_id, key)
        raise
    file = answer.get("file") or {}
    await refs.posted(run_id, key, str(file.get("id") or ""))
    return True
