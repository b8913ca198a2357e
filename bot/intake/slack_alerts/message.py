"""A Slack `message` event as an alerting app posts it, and what a person reads in it.

Alerting apps put their text in the message's `text`, in legacy `attachments` (title,
text, `fields`) and in Block Kit `blocks` (also inside attachments). The parsers read
the message through `lines`, `titles`, `fields` and `links`, as plain text: Slack's
link markup (`<url|text>`), entities (`&lt;`) and emphasis (`*`, `` ` ``) removed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# What the parsers read of one message, at most: plenty for an alert, and bounded.
MAX_LINES = 1000
LINE_CHARS = 2000
_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|([^>]*))?>")
_OTHER_MARKUP = re.compile(r"<[#@!]([^|>]*)(?:\|([^>]*))?>")
_EMPHASIS = re.compile(r"[*`]")


def plain(text: str) -> str:
    """Slack mrkdwn as plain text: links as their text (or URL), no emphasis marks."""
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = _OTHER_MARKUP.sub(lambda m: m.group(2) or m.group(1), text)
    return html.unescape(_EMPHASIS.sub("", text))


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AttachmentField(_Part):
    """A `fields` entry of a legacy attachment."""

    title: str = ""
    value: str = ""


class Attachment(_Part):
    """A legacy message attachment (what Alertmanager and Grafana post)."""

    title: str = ""
    title_link: str = ""
    pretext: str = ""
    text: str = ""
    fallback: str = ""
    footer: str = ""
    fields: list[AttachmentField] = Field(default_factory=list)
    blocks: list[dict[str, Any]] = Field(default_factory=list)


class AlertMessage(_Part):
    """A `message` event: where it is, who posted it, and what it says."""

    type: Literal["message"]
    channel: str = Field(min_length=1)
    ts: str = Field(min_length=1)
    subtype: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    thread_ts: str | None = None
    username: str = ""
    text: str = ""
    attachments: list[Attachment] = Field(default_factory=list)
    blocks: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def thread(self) -> str:
        """The thread the message is in, or starts."""
        return self.thread_ts or self.ts

    def titles(self) -> list[str]:
        """Attachment titles and header blocks, plain, in order."""
        found = [plain(a.title) for a in self.attachments if a.title.strip()]
        for blocks in self._all_blocks():
            found += [plain(_text(b)) for b in blocks if b.get("type") == "header"]
        return [t.strip() for t in found if t.strip()]

    def lines(self) -> list[str]:
        """Every line a person reads, plain, in order: the text, then each attachment
        (pretext, title, text, fields as `title: value`, blocks), then the blocks; at
        most `MAX_LINES` of at most `LINE_CHARS`."""
        found = [line for raw in self._texts() for line in plain(raw).splitlines()]
        return [line[:LINE_CHARS] for line in found[:MAX_LINES]]

    def fields(self) -> list[tuple[str, str]]:
        """`(name, value)` pairs: attachment fields, and section fields written
        `*Name:*\\nvalue` in blocks."""
        found = [(f.title, f.value) for a in self.attachments for f in a.fields]
        for blocks in self._all_blocks():
            for block in blocks:
                for item in block.get("fields") or []:
                    name, _, value = plain(_text(item)).partition("\n")
                    if value.strip():
                        found.append((name, value))
        return [
            (plain(n).strip().rstrip(":").strip(), plain(v).strip())
            for n, v in found
            if n.strip() and v.strip()
        ]

    def links(self) -> list[str]:
        """The URLs of the message: attachment title links, then linked text."""
        found = [a.title_link for a in self.attachments if a.title_link.startswith("http")]
        for raw in self._texts():
            found += [html.unescape(m.group(1)) for m in _LINK.finditer(raw)]
        return list(dict.fromkeys(found))

    def _texts(self) -> Iterator[str]:
        yield self.text
        for a in self.attachments:
            yield from (a.pretext, a.title, a.text)
            yield from (f"{f.title}: {f.value}" for f in a.fields)
            yield from _block_texts(a.blocks)
        yield from _block_texts(self.blocks)

    def _all_blocks(self) -> Iterator[list[dict[str, Any]]]:
        yield from (a.blocks for a in self.attachments)
        yield self.blocks


def _text(item: object) -> str:
    """The text of a text object (or of a block's `text`)."""
    if isinstance(item, dict):
        text = item.get("text")
        if isinstance(text, str):
            return text
        return _text(text)
    return ""


def _block_texts(blocks: list[dict[str, Any]]) -> Iterator[str]:
    for block in blocks:
        yield _text(block)
        for item in block.get("fields") or []:
            yield _text(item)
        yield from _element_texts(block.get("elements") or [])


def _element_texts(elements: object) -> Iterator[str]:
    """Texts of context elements and rich text, recursively (not button labels)."""
    if not isinstance(elements, list):
        return
    for element in elements:
        if not isinstance(element, dict) or element.get("type") == "button":
            continue
        if element.get("type") in {"text", "mrkdwn", "plain_text"}:
            yield _text(element)
        elif element.get("type") == "link":
            yield str(element.get("text") or element.get("url") or "")
        yield from _element_texts(element.get("elements"))
