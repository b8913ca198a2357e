"""The Slack app manifest asks for exactly what the bot uses: every Web API method the
Slack code calls has its scope, and no scope is there that nothing uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

SLACK = Path(__file__).resolve().parent.parent / "bot" / "slack"

# Web API method (as slack_sdk names it) -> the bot scopes it needs.
SCOPES_OF = {
    "chat_postMessage": {"chat:write"},
    "chat_update": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "chat_getPermalink": set(),  # Slack lists no scope for it
    "usergroups_list": {"usergroups:read"},
    "usergroups_users_list": {"usergroups:read"},
    "conversations_replies": {"channels:history", "groups:history"},
    "files_upload_v2": {"files:write"},
    "views_open": set(),  # interactivity: needs a trigger id, not a scope
}
# What Slack sends the bot: the scopes of its events, command and interactivity
# (`message.channels` and `message.groups`: alert messages in watched channels).
RECEIVING = {"app_mentions:read", "commands", "channels:history", "groups:history"}


def test_the_manifest_asks_for_exactly_the_scopes_events_and_command_in_use() -> None:
    manifest = yaml.safe_load((SLACK / "manifest.yaml").read_text())
    source = "\n".join(p.read_text() for p in SLACK.glob("*.py"))
    called = set(
        re.findall(r"\.(chat_\w+|usergroups_\w+|conversations_\w+|views_\w+|files_\w+)\(", source)
    )

    assert called <= set(SCOPES_OF), f"scopes unknown for {called - set(SCOPES_OF)}"
    needed = set().union(*(SCOPES_OF[m] for m in called)) | RECEIVING
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert "user" not in manifest["oauth_config"]["scopes"]

    settings = manifest["settings"]
    assert settings["event_subscriptions"]["bot_events"] == [
        "app_mention",
        "message.channels",
        "message.groups",
    ]
    assert settings["interactivity"]["is_enabled"] is True
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/incident"
    urls = [
        command["url"],
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    ]
    assert all(url.endswith("/slack/events") for url in urls)
