"""Slack's external file upload, as the local Slack (`slack_server.py`) plays it.

`files.getUploadURLExternal` (filename, length) hands out an upload URL on the server
and a file id; the client POSTs the bytes there (no token, as on files.slack.com; the
length must match); `files.completeUploadExternal` (`files` JSON of id and title,
`channel_id`, `thread_ts`, `initial_comment`) shares the uploaded files into the channel
or thread. A file completed without its bytes, or twice, is refused.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


@dataclass
class File:
    """One file as uploaded and, once completed, shared."""

    id: str
    filename: str
    length: int
    alt_txt: str = ""
    data: bytes | None = None
    title: str = ""
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str = ""


class SlackFiles:
    """The files the bot uploaded; see the module docstring."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self.files: dict[str, File] = {}
        self._ids = itertools.count(1)

    def upload_url(self, args: JsonDict) -> JsonDict:
        """`files.getUploadURLExternal`."""
        filename, length = args.get("filename"), str(args.get("length") or "")
        if not filename or not length.isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file = File(
            id=f"F{next(self._ids):08d}",
            filename=str(filename),
            length=int(length),
            alt_txt=str(args.get("alt_txt") or ""),
        )
        self.files[file.id] = file
        return {"ok": True, "upload_url": f"{self._base_url}/upload/{file.id}", "file_id": file.id}

    def receive(self, file_id: str, data: bytes) -> tuple[int, str]:
        """The POST of a file's bytes to its upload URL: (status, body)."""
        file = self.files.get(file_id)
        if file is None:
            return 404, "not found"
        if len(data) != file.length:
            return 400, f"length {len(data)} is not the announced {file.length}"
        file.data = data
        return 200, f"OK - {len(data)}"

    def complete(self, args: JsonDict) -> JsonDict:
        """`files.completeUploadExternal`."""
        try:
            wanted = json.loads(str(args.get("files") or ""))
        except json.JSONDecodeError:
            return {"ok": False, "error": "invalid_arguments"}
        channel, thread = args.get("channel_id"), args.get("thread_ts")
        if not isinstance(wanted, list) or not wanted or (thread and not channel):
            return {"ok": False, "error": "invalid_arguments"}
        found = [self.files.get(str(item.get("id"))) for item in wanted]
        if any(f is None or f.data is None or f.channel is not None for f in found):
            return {"ok": False, "error": "file_not_found"}
        shared = []
        for item, file in zip(wanted, found, strict=True):
            assert file is not None
            file.title = str(item.get("title") or file.filename)
            file.channel = str(channel) if channel else ""
            file.thread_ts = str(thread) if thread else None
            file.initial_comment = str(args.get("initial_comment") or "")
            shared.append({"id": file.id, "name": file.filename, "title": file.title})
        return {"ok": True, "files": shared}

    def in_thread(self, thread_ts: str) -> list[File]:
        """The files shared into the thread of message `thread_ts`, in upload order."""
        return [f for f in self.files.values() if f.thread_ts == thread_ts]
