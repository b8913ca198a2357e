"""Structured logging: one JSON object a line, with the run id when there is one."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from tools.redaction import redact_value

# Attributes every LogRecord has; anything else was passed in `extra=` and is logged.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON: time, level, logger, message and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Messages and exceptions may quote untrusted text: no secret reaches the log.
        cleaned, _ = redact_value(json.loads(json.dumps(entry, default=str)))
        return json.dumps(cleaned)


# Libraries that trace every request at DEBUG (httpcore2, the transport of the Kubernetes
# and model clients: each step of each call, response headers included): never below INFO,
# whatever the bot's level. No library logs a Kubernetes answer's body (pod logs, events).
QUIET = ("httpcore2",)


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Send JSON logs to `stream` (stderr) at `level`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
