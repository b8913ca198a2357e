"""The error tree of incident-bot.

    IncidentBotError
    ├── StoreError                 Redis said no, or holds something we cannot read
    │   ├── RunNotFound            no run with that id
    │   ├── RunExists              a run with that id was already created
    │   ├── StaleWrite             the run's version or lease moved on: this writer must stop
    │   ├── LeaseHeld              another worker holds the run's lease
    │   └── AdmissionContended     an alert group kept changing while an alert was admitted
    ├── InvalidAlert               an alert body we cannot turn into an `Alert`
    ├── ProposalError              a decision or action that does not fit the run's state
    ├── NotRetryable               `runs retry` of a run whose work was not dead-lettered
    ├── NotReplayable              `runs replay` of a run whose investigation has not ended
    └── ConfigError                settings or policy files that cannot work

Policy files have their own `policies.documents.PolicyConfigError` (and `PolicyError`,
listing every problem with its file and line): the pure policy layer imports nothing of
the bot's. The CLI reports both as it reports `ConfigError`.

Tool failures are not exceptions: they become a `ToolResult` with status `error`,
which the model reads and can act on.
"""

from __future__ import annotations


class IncidentBotError(Exception):
    """Base of every error raised on purpose by incident-bot."""


class StoreError(IncidentBotError):
    """Redis refused an operation or holds data we cannot read."""


class RunNotFound(StoreError):
    """No run with that id exists (or it has expired)."""


class RunExists(StoreError):
    """A run with that id was already created (a retried creation)."""


class StaleWrite(StoreError):
    """The run's version or lease changed under this writer; it must stop writing."""


class LeaseHeld(StoreError):
    """Another worker holds the run's lease."""


class AdmissionContended(StoreError):
    """An alert group's run kept changing while a delivery was admitted; retry it."""


class InvalidAlert(IncidentBotError):
    """An alert body that cannot be read as an Alert."""


class ProposalError(IncidentBotError):
    """A decision or action that does not fit the run's current state."""


class NotRetryable(IncidentBotError):
    """A retry asked of a run that was not parked (not `needs_attention`, or no
    dead-lettered queue entry)."""


class NotReplayable(IncidentBotError):
    """A replay asked of a run whose investigation has not ended (still running, or
    stopped midway)."""


class ConfigError(IncidentBotError):
    """Settings, runbooks or policies that cannot work."""
