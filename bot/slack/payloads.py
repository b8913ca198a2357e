"""What a Slack request must hold before a listener reads it, as pydantic models.

Bolt picks a listener by the request's type and then reads fields of the body (the
first action's `action_id`, a view's `callback_id`, the event's `type`); our listeners
read a few more (who clicked, the button's value, the event's channel). A body without
them would raise inside Bolt (which reads them for every middleware and listener) and
answer 500; `problem` names the missing or wrong field instead, and the app answers 400
before Bolt sees the request (`bot.slack.app.SlackApp`). Types Bolt does not handle pass
(Bolt answers 404). Only the fields read are checked: Slack adds fields freely.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Id = Annotated[str, Field(min_length=1, max_length=255)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class User(_Part):
    """Who clicked or submitted."""

    id: Id


class Action(_Part):
    """One element of a `block_actions` payload (our buttons carry a value)."""

    action_id: Id
    value: str = ""


class Channel(_Part):
    """Where a message or command is."""

    id: Id


class BlockActions(_Part):
    """A click on a button of a message."""

    type: Literal["block_actions"]
    user: User
    actions: list[Action] = Field(min_length=1)
    trigger_id: Id
    channel: Channel | None = None


class InputValue(_Part):
    """The value of one input of a submitted modal."""

    value: str | None = None


class ViewState(_Part):
    """The inputs of a submitted modal: block id → action id → value."""

    values: dict[str, dict[str, InputValue]] = Field(default_factory=dict)


class View(_Part):
    """A submitted modal, as the bot opened it plus what was typed."""

    type: Id
    callback_id: str
    private_metadata: str = ""
    state: ViewState = Field(default_factory=ViewState)


class ViewSubmission(_Part):
    """A modal was submitted."""

    type: Literal["view_submission"]
    user: User
    view: View
    trigger_id: Id | None = None


class SlashCommand(_Part):
    """A slash command (form fields)."""

    command: Id
    user_id: Id
    channel_id: Id
    trigger_id: Id
    text: str = ""


class Event(_Part):
    """The event inside an event callback."""

    type: Id


class EventCallback(_Part):
    """An Events API delivery."""

    type: Literal["event_callback"]
    event_id: Id
    event: Event


class Mention(_Part):
    """An `app_mention` event."""

    type: Literal["app_mention"]
    channel: Id
    ts: Id
    user: str = ""
    text: str = ""
    thread_ts: str | None = None


class _Callback(_Part):
    callback_id: str


class ViewClosed(_Part):
    """A modal was closed (Bolt reads its `callback_id`)."""

    type: Literal["view_closed"]
    view: _Callback


class AttachmentActions(_Part):
    """A click in a legacy attachment (Bolt reads its first action)."""

    type: Literal["interactive_message"]
    callback_id: str
    actions: list[dict[str, Any]] = Field(min_length=1)


class WorkflowStepEdit(_Part):
    """A legacy workflow step edit (Bolt reads its `workflow_step`)."""

    type: Literal["workflow_step_edit"]
    callback_id: str
    workflow_step: dict[str, Any]


_BY_TYPE: dict[str, type[_Part]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
    "event_callback": EventCallback,
    # Not ours, but Bolt reads into them before any listener is chosen.
    "view_closed": ViewClosed,
    "interactive_message": AttachmentActions,
    "workflow_step_edit": WorkflowStepEdit,
}
_EVENTS: dict[str, type[_Part]] = {"app_mention": Mention}


def problem(body: dict[str, Any]) -> str | None:
    """What is missing or wrong in a request body the bot would act on, or None."""
    kind = body.get("type")
    model = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if model is None and kind is None and "command" in body:  # how Bolt tells a command
        model, kind = SlashCommand, "slash command"
    if model is None:
        return None
    found = _invalid(model, body, str(kind))
    if found is None and model is EventCallback:
        event = body["event"]
        event_model = _EVENTS.get(event["type"])
        if event_model is not None:
            found = _invalid(event_model, event, f"{event['type']} event", at="event.")
    return found


def _invalid(model: type[_Part], body: dict[str, Any], what: str, at: str = "") -> str | None:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = at + (".".join(str(p) for p in first["loc"]) or "body")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"malformed {what}: {where}: {first['msg']}{more}"
    return None
