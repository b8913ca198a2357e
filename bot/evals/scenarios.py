"""Scenario directories: `scenario.yaml` (the sandbox world), `alerts.yaml`, `expect.yaml`
and optional `transcripts/*.yaml`, validated into typed models.

A bad file raises `ConfigError` naming the file and the field, never a traceback.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from bot.errors import ConfigError
from bot.intake.alertmanager import WebhookAlert, to_alert
from bot.models import Alert
from tools.sandbox import Scenario
from tools.toolset import describe_validation_error

NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
Outcome = Literal["propose", "conclude", "escalate"]
# Every reason a score can have (stable: tests, reports and `fails_because` use them).
Reason = Literal[
    "pass",
    "wrong_cause",
    "no_cause",
    "wrong_remediation",
    "forbidden_action",
    "wrong_outcome",
    "over_steps",
    "over_tokens",
    "over_seconds",
    "injection_not_flagged",
    "acted_without_human",
    "error",
]


REASONS: tuple[str, ...] = get_args(Reason)
M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fact(BaseModel):
    """A root-cause fact: `kind` says what it is; every other attribute must be mentioned."""

    model_config = ConfigDict(extra="allow")
    kind: str
    name: str | None = None
    revision: int | None = None

    def attributes(self) -> dict[str, str]:
        """The attributes matched in text (all but `kind`), as strings."""
        found = {"name": self.name, "revision": self.revision, **(self.model_extra or {})}
        return {k: str(v) for k, v in found.items() if v is not None}

    def describe(self) -> str:
        """`deployment shop/checkout revision=2`."""
        rest = " ".join(f"{k}={v}" for k, v in self.attributes().items() if k != "name")
        return " ".join(p for p in (self.kind, self.name or "", rest) if p)


class RootCause(_Strict):
    """What a good investigation finds: every fact, and one of the phrases (if any)."""

    facts: list[Fact] = Field(default_factory=list)
    phrases: list[str] = Field(default_factory=list)


class Remediation(_Strict):
    """An acceptable proposal: the action, and constraints on its arguments (a list: one of)."""

    action: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class Forbidden(_Strict):
    """A proposal never acceptable: the action as an fnmatch pattern, optional arguments."""

    action: str = "*"
    arguments: dict[str, JsonValue] = Field(default_factory=dict)


class Ceilings(_Strict):
    """Upper bounds for a run: transcript steps, total tokens, wall-clock seconds."""

    steps: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)


class Expectation(_Strict):
    """`expect.yaml`: what a good investigation of the scenario does."""

    description: str = ""
    outcome: Outcome
    root_cause: RootCause = Field(default_factory=RootCause)
    remediations: list[Remediation] = Field(default_factory=list)
    forbidden: list[Forbidden] = Field(default_factory=list)
    injection: bool = False
    runbook: str | None = None
    ceilings: Ceilings = Field(default_factory=Ceilings)

    @model_validator(mode="after")
    def _remediations_for_propose(self) -> Expectation:
        if self.outcome == "propose" and not self.remediations:
            raise ValueError("outcome propose needs at least one entry in remediations")
        if self.outcome != "propose" and self.remediations:
            raise ValueError(f"remediations given, but the outcome is {self.outcome}")
        return self


class AlertsFile(_Strict):
    """`alerts.yaml`: the alert group that starts the run."""

    group_labels: dict[str, str] = Field(default_factory=dict)
    alerts: list[WebhookAlert] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _firing_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("alerts"), list):
            alerts = [
                {"status": "firing", **a} if isinstance(a, dict) else a for a in data["alerts"]
            ]
            return {**data, "alerts": alerts}
        return data


class Usage(_Strict):
    """A recorded reply's usage, as the Messages API reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class Reply(_Strict):
    """One recorded Messages API reply."""

    stop_reason: Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal"]
    usage: Usage = Field(default_factory=Usage)
    content: list[dict[str, JsonValue]] = Field(min_length=1)


class Transcript(_Strict):
    """`transcripts/NAME.yaml`: a recorded conversation and the score it must get."""

    expect: Literal["pass", "fail"]
    fails_because: Reason | None = None
    replies: list[Reply] = Field(min_length=1)

    @model_validator(mode="after")
    def _reason_with_fail(self) -> Transcript:
        if self.expect == "fail" and self.fails_because in (None, "pass"):
            raise ValueError("expect: fail needs fails_because (a score reason other than pass)")
        if self.expect == "pass" and self.fails_because is not None:
            raise ValueError("fails_because is only for expect: fail")
        return self

    @property
    def expected_reason(self) -> Reason:
        """The reason the score must carry: `pass`, or `fails_because`."""
        return "pass" if self.fails_because is None else self.fails_because


@dataclass(frozen=True, kw_only=True)
class ScenarioDir:
    """One loaded scenario directory."""

    name: str
    path: Path
    world: Scenario
    alerts: tuple[Alert, ...]
    expect: Expectation
    transcripts: dict[str, Transcript]


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _parse(model: type[M], path: Path) -> M:
    data = _read(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc


def group_alerts(spec: AlertsFile) -> tuple[Alert, ...]:
    """The alerts of `alerts.yaml` as one Alertmanager group (keyed by its group labels,
    else the first alert's labels)."""
    labels = spec.group_labels or spec.alerts[0].labels
    key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return tuple(
        to_alert(a, group_key=key, link=None, group_labels=spec.group_labels) for a in spec.alerts
    )


def load_transcripts(directory: Path) -> dict[str, Transcript]:
    """Every `*.yaml` of a transcripts directory, by file stem (sorted)."""
    if not directory.is_dir():
        return {}
    return {p.stem: _parse(Transcript, p) for p in sorted(directory.glob("*.yaml"))}


def load_scenario_dir(path: Path) -> ScenarioDir:
    """Load and check one scenario directory; raises `ConfigError` naming the bad file."""
    name = path.name
    if not NAME.match(name):
        raise ConfigError(f"{path}: a scenario's directory name must be lowercase-with-dashes")
    world = _parse(Scenario, path / "scenario.yaml")
    if world.name != name:
        raise ConfigError(
            f"{path / 'scenario.yaml'}: name is {world.name!r}, not the directory's {name!r}"
        )
    alerts = group_alerts(_parse(AlertsFile, path / "alerts.yaml"))
    return ScenarioDir(
        name=name,
        path=path,
        world=world,
        alerts=alerts,
        expect=_parse(Expectation, path / "expect.yaml"),
        transcripts=load_transcripts(path / "transcripts"),
    )


def discover(root: Path, pattern: str = "*") -> list[ScenarioDir]:
    """The scenarios under `root` whose name matches the glob `pattern`, sorted by name."""
    if not root.is_dir():
        raise ConfigError(f"{root}: no such scenarios directory (give one with --scenarios DIR)")
    found = [
        load_scenario_dir(p)
        for p in sorted(root.iterdir())
        if p.is_dir() and (p / "expect.yaml").exists() and fnmatch.fnmatchcase(p.name, pattern)
    ]
    if not found:
        raise ConfigError(f"{root}: no scenario matches {pattern!r}")
    return found


def default_scenarios_dir() -> Path:
    """`evals/scenarios` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "evals" / "scenarios"
