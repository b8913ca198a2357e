"""The policy YAML as pydantic models, and `load_policy`.

A policy says which actions the bot may take where, who must approve them, when changes
are frozen, how long a proposal waits, and the budgets, routing, tool scopes and webhook
targets other parts of the bot read. Every file is validated with errors that name the
file, the line and the field (see `policies.loader`).

Action rules are tried in order; the first whose `action` pattern (`fnmatch`, e.g.
`kubernetes.*`) and label matchers (regular expressions, whole match; a missing label
is the empty string) fit decides. No fitting rule means the action is forbidden.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, time, timedelta
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from policies.documents import (
    PolicyConfigError,
    PolicyError,
    Problem,
    field_path,
    node_line,
    validate_text,
)
from policies.mcp import McpServer, unique_servers
from policies.scope import ScopeRule, unique_names
from policies.slack_alerts import SlackAlerts

# A decision recorded by the policy itself, for an auto-approved proposal.
AUTO_APPROVER = "policy:auto"
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ACTION_PATTERN = r"^[A-Za-z0-9_.*?\[\]-]+$"
# Whom a run that needs someone pages: a Slack user (U…, W…), a user group ID (S…) or
# a user group's @handle.
_ESCALATION_TARGET = re.compile(r"[UWS][A-Z0-9]{2,}|@[A-Za-z0-9][A-Za-z0-9._-]*")


def labels_match(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether every matcher's regular expression fully matches its label."""
    return all(
        re.fullmatch(pattern, labels.get(name, "")) is not None
        for name, pattern in matchers.items()
    )


def _compiled(matchers: dict[str, str]) -> dict[str, str]:
    for name, pattern in matchers.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"label {name}: {pattern!r} is not a regular expression ({exc})"
            ) from exc
    return matchers


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Approvers(_Section):
    """Who may approve: Slack user IDs and user groups (IDs like `S0123` or `@handles`).

    Both empty: anyone who can see the proposal may approve it.
    """

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)

    def describe(self) -> str:
        """`users U1, U2 or groups @sre` (or `anyone`)."""
        parts = []
        if self.users:
            parts.append("users " + ", ".join(self.users))
        if self.groups:
            parts.append("groups " + ", ".join(self.groups))
        return " or ".join(parts) or "anyone"


class Limits(_Section):
    """Bounds on an action's arguments (`duration_seconds`, `replicas`)."""

    max_duration_seconds: int | None = Field(default=None, ge=1)
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise ValueError("min_replicas is above max_replicas")
        return self


class AutoApprove(_Section):
    """When no human needs to approve: extra label matchers and a maximum duration."""

    match: dict[str, str] = Field(default_factory=dict)
    max_duration_seconds: int | None = Field(default=None, ge=1)

    _match = field_validator("match")(_compiled)


class ActionRule(_Section):
    """Allow or forbid an action where the labels match, and say who must approve."""

    action: str = Field(pattern=_ACTION_PATTERN)
    match: dict[str, str] = Field(default_factory=dict)
    effect: Literal["allow", "forbid"] = "allow"
    approvals: int = Field(default=1, ge=1, le=10)
    approvers: Approvers = Field(default_factory=Approvers)
    auto_approve: AutoApprove | None = None
    # The action may change something outside the alert's own namespace.
    cross_namespace: bool = False
    limits: Limits = Field(default_factory=Limits)
    reason: str = ""
    _source: str = PrivateAttr(default="")

    _match = field_validator("match")(_compiled)

    @field_validator("auto_approve")
    @classmethod
    def _reversible_only(cls, auto: AutoApprove | None, info: ValidationInfo) -> AutoApprove | None:
        """Auto-approval only for actions that declare themselves bounded and reversible."""
        context = info.context or {}
        reversible: Collection[str] | None = context.get("reversible_actions")
        known: Collection[str] | None = context.get("known_actions")
        pattern = info.data.get("action")
        if auto is None or reversible is None or not isinstance(pattern, str):
            return auto
        covered = [a for a in known or reversible if fnmatchcase(a, pattern)] or [pattern]
        others = sorted(a for a in covered if a not in reversible)
        if others:
            raise ValueError(
                f"auto_approve is only for bounded, reversible actions "
                f"({', '.join(sorted(reversible)) or 'none'}); {pattern!r} covers "
                f"{', '.join(others)}"
            )
        return auto

    @field_validator("action")
    @classmethod
    def _known(cls, action: str, info: ValidationInfo) -> str:
        known: Collection[str] | None = (info.context or {}).get("known_actions")
        if known is None or any(c in action for c in "*?["):
            return action
        if action not in known:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(known))}")
        return action

    def applies(self, action: str, labels: Mapping[str, str]) -> bool:
        """Whether this rule decides `action` for an alert with `labels`."""
        return fnmatchcase(action, self.action) and labels_match(self.match, labels)

    @property
    def source(self) -> str:
        """Where the rule is written (`policy.yaml:12`), when loaded from a file."""
        return self._source

    def describe(self) -> str:
        """`allow kubernetes.* where namespace=shop` (the rule in one line)."""
        where = " ".join(f"{k}={v}" for k, v in self.match.items())
        return f"{self.effect} {self.action}" + (f" where {where}" if where else "")


class Weekly(_Section):
    """A window that repeats every week: days, and a start and end time of day."""

    days: list[Day] = Field(min_length=1)
    start: time
    end: time
    timezone: str = "UTC"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        if isinstance(value, int):  # YAML 1.1 reads an unquoted 16:00 as 960
            raise ValueError("write the time in quotes, e.g. '16:00'")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name

    def contains(self, now: datetime) -> bool:
        """Whether `now` is inside the window (an end before the start crosses midnight)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        day, clock = DAYS[local.weekday()], local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return day in self.days and self.start <= clock < self.end
        yesterday = DAYS[(local - timedelta(days=1)).weekday()]
        return (day in self.days and clock >= self.start) or (
            yesterday in self.days and clock < self.end
        )


class Freeze(_Section):
    """A change freeze: a fixed window (`start`, `end`) or a `weekly` one.

    Inside it the matching actions need `override_approvals` (no auto-approval), or are
    forbidden when the freeze allows no override.
    """

    name: str = Field(min_length=1)
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    weekly: Weekly | None = None
    match: dict[str, str] = Field(default_factory=dict)
    actions: list[str] = Field(default_factory=lambda: ["*"])
    override_approvals: int | None = Field(default=None, ge=1, le=10)
    override_approvers: Approvers | None = None
    reason: str = ""

    _match = field_validator("match")(_compiled)

    @model_validator(mode="after")
    def _window(self) -> Freeze:
        fixed = self.start is not None or self.end is not None
        if fixed == (self.weekly is not None):
            raise ValueError("a freeze needs either start and end, or weekly")
        if fixed and (self.start is None or self.end is None or self.start >= self.end):
            raise ValueError("a freeze needs start before end")
        return self

    def applies(self, action: str, labels: Mapping[str, str]) -> bool:
        """Whether the freeze covers this action for these labels (at any time)."""
        return any(fnmatchcase(action, p) for p in self.actions) and labels_match(
            self.match, labels
        )

    def active(self, now: datetime) -> bool:
        """Whether `now` is inside the freeze."""
        if self.weekly is not None:
            return self.weekly.contains(now)
        assert self.start is not None and self.end is not None  # noqa: S101 - validated
        return self.start <= now < self.end

    def describe(self) -> str:
        """`black-friday (2026-11-27 00:00 UTC to 2026-11-30 00:00 UTC)`."""
        if self.weekly is not None:
            w = self.weekly
            window = f"{','.join(w.days)} {w.start:%H:%M}-{w.end:%H:%M} {w.timezone}"
        else:
            window = f"{self.start:%Y-%m-%d %H:%M %Z} to {self.end:%Y-%m-%d %H:%M %Z}"
        return f"{self.name} ({window})"


class Budget(_Section):
    """Limits of model use; None: no limit."""

    steps: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)
    dollars: float | None = Field(default=None, ge=0)
    minutes: float | None = Field(default=None, gt=0)


class Budgets(_Section):
    """Budgets per run and per day (all runs of the bot)."""

    per_run: Budget = Field(default_factory=Budget)
    per_day: Budget = Field(default_factory=Budget)


def _escalation_target(target: str | None) -> str | None:
    if target is not None and _ESCALATION_TARGET.fullmatch(target) is None:
        raise ValueError(
            "must be a Slack user ID (U… or W…), a user group ID (S…) or a user group "
            "handle such as '@oncall' (quoted in YAML)"
        )
    return target


class Route(_Section):
    """Alerts whose labels match go to `channel` (a Slack channel ID or #name); a run of
    theirs that ends needing someone mentions `escalate` in its thread."""

    match: dict[str, str] = Field(default_factory=dict)
    channel: str = Field(min_length=1)
    escalate: str | None = None

    _match = field_validator("match")(_compiled)
    _escalate = field_validator("escalate")(_escalation_target)


class Routing(_Section):
    """Where a run is posted: the first matching route, else `default`; whom it pages when
    it ends needing someone: that route's `escalate`, else `default_escalate`."""

    default: str | None = None
    default_escalate: str | None = None
    routes: list[Route] = Field(default_factory=list)

    _escalate = field_validator("default_escalate")(_escalation_target)


class Webhook(_Section):
    """A URL `webhook.call` may POST to; the signing secret is read from `secret_env`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    url: str = Field(pattern=r"^https?://\S+$")
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    description: str = ""
    # Plain http only when the operator says so: the signed body and the answer travel
    # unencrypted and anyone on the path can read or replay them.
    insecure: bool = False
    # Where the receiver answers (signed GET, Idempotency-Key header) 200 when it ran a
    # key and 404 when it never got it: lets a call interrupted by a crash be reconciled.
    status_url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    @model_validator(mode="after")
    def _https_unless_insecure(self) -> Webhook:
        for field, url in (("url", self.url), ("status_url", self.status_url or "")):
            if url.startswith("http://") and not self.insecure:
                raise ValueError(
                    f"{field} {url} is plain http: use https, or add `insecure: true` to "
                    "this webhook to accept an unencrypted one"
                )
        return self


class Policy(_Section):
    """A whole policy (one file, or the merge of a directory's files)."""

    approval_timeout_seconds: float = Field(default=3600.0, ge=0)
    actions: list[ActionRule] = Field(default_factory=list)
    freezes: list[Freeze] = Field(default_factory=list)
    budgets: Budgets = Field(default_factory=Budgets)
    routing: Routing = Field(default_factory=Routing)
    scopes: list[ScopeRule] = Field(default_factory=list)
    webhooks: list[Webhook] = Field(default_factory=list)
    # Slack user IDs and user groups who may cancel or change any run (`/incident cancel`)
    # besides the approvers of its actions. Both empty: nobody beyond those approvers.
    operators: Approvers = Field(default_factory=Approvers)
    # Channels watched for alert messages, and the alerting apps whose messages are alerts.
    slack_alerts: SlackAlerts = Field(default_factory=SlackAlerts)
    # MCP servers whose allow-listed read-only tools are offered like built-in ones.
    mcp_servers: list[McpServer] = Field(default_factory=list)

    @field_validator("webhooks")
    @classmethod
    def _unique(cls, hooks: list[Webhook]) -> list[Webhook]:
        names = [h.name for h in hooks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"webhook names must be unique: {', '.join(twice)}")
        return hooks

    _unique_servers = field_validator("mcp_servers")(unique_servers)
    _unique_scopes = field_validator("scopes")(unique_names)

    def webhook(self, name: str) -> Webhook | None:
        """The listed webhook called `name`."""
        return next((h for h in self.webhooks if h.name == name), None)


def load_policy(
    directory: Path | None = None,
    *,
    known_actions: Collection[str] | None = None,
    reversible_actions: Collection[str] | None = None,
) -> Policy:
    """The policy of `directory` (its top-level `*.yaml` files, merged in name order), or
    the shipped `policies/default.yaml` when `directory` is None or holds no policy file.

    `known_actions`, when given, makes a rule naming any other action an error;
    `reversible_actions`, when given, makes `auto_approve` on any other action one. Raises
    `PolicyError` listing every problem of every file with its file, line and field.
    """
    if directory is not None and not directory.is_dir():
        raise PolicyConfigError(f"the policy directory {directory} does not exist")
    paths = policy_files(directory) if directory is not None else []
    if paths:
        files = [(str(path), path.read_text(encoding="utf-8")) for path in paths]
    else:
        shipped = resources.files("policies") / "default.yaml"
        files = [("policies/default.yaml", shipped.read_text(encoding="utf-8"))]
    return read_policy(files, known_actions=known_actions, reversible_actions=reversible_actions)


def policy_files(directory: Path) -> list[Path]:
    """The policy files of a directory: its top-level `*.yaml` and `*.yml`, by name."""
    return sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())


def read_policy(
    files: Sequence[tuple[str, str]],
    *,
    known_actions: Collection[str] | None = None,
    reversible_actions: Collection[str] | None = None,
) -> Policy:
    """Validate `(name, text)` files and merge them: lists are joined in order, and any
    other setting may be made by one file only."""
    problems: list[Problem] = []
    parts: list[tuple[str, Policy, yaml.Node | None]] = []
    for name, text in files:
        policy, found, root = validate_text(
            Policy,
            text,
            file=name,
            context={"known_actions": known_actions, "reversible_actions": reversible_actions},
        )
        problems += found
        if policy is not None:
            for i, rule in enumerate(policy.actions):
                rule._source = f"{name}:{node_line(root, ('actions', i))}"
            parts.append((name, policy, root))
    if problems:
        raise PolicyError(problems)
    merged: dict[str, object] = {}
    owner: dict[str, str] = {}
    for name, policy, root in parts:
        for field in sorted(policy.model_fields_set):
            value = getattr(policy, field)
            if isinstance(value, list):
                cast(list[object], merged.setdefault(field, [])).extend(value)
            elif field in owner:
                line = node_line(root, (field,), key=True)
                message = f"already set in {owner[field]}"
                problems.append(Problem(file=name, line=line, field=field, message=message))
            else:
                merged[field], owner[field] = value, name
    try:
        merged_policy = Policy.model_validate(merged)
    except ValidationError as exc:
        names = ", ".join(n for n, _ in files)
        problems += [
            Problem(file=names, line=1, field=field_path(e["loc"]), message=e["msg"])
            for e in exc.errors()
        ]
    if problems:
        raise PolicyError(problems)
    return merged_policy
