"""Model prices: a documented default table that `INCIDENT_BOT_MODEL_PRICES` overrides.

Prices are dollars per million tokens of input, output, cache write and cache read. A
table key matches a model whose name starts with it or contains it after a dash
(`haiku` matches `claude-haiku-4-5` and `claude-3-5-haiku-20241022`); the longest key
that matches wins, so an operator's `claude-opus-4-6` beats the `opus` family. A model
no key matches is priced as `sonnet`, and a log warning says so once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.models import Usage

log = logging.getLogger(__name__)

FALLBACK_FAMILY = "sonnet"


class ModelPrice(BaseModel):
    """Dollars per million tokens; cache write and read default to 1.25 and 0.1 times input."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(ge=0)
    cache_read: float = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _cache_prices(cls, data: object) -> object:
        # Anthropic's 5-minute cache write and cache read multipliers of the input price.
        if isinstance(data, dict) and isinstance(data.get("input"), int | float):
            given = data["input"]
            return {"cache_write": given * 1.25, "cache_read": given * 0.1, **data}
        return data

    def cost(self, usage: Usage) -> float:
        """The price of `usage` in dollars."""
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_write_tokens * self.cache_write
            + usage.cache_read_tokens * self.cache_read
        ) / 1_000_000


# The families' list prices (estimates: operators set their own in INCIDENT_BOT_MODEL_PRICES).
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "opus": ModelPrice(input=15.0, output=75.0, cache_write=18.75, cache_read=1.50),
    "sonnet": ModelPrice(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30),
    "haiku": ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10),
}


class Prices:
    """The default table with the operator's entries on top; one per process."""

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self._table = {**DEFAULT_PRICES, **(overrides or {})}
        self._warned: set[str] = set()

    def price(self, model: str) -> ModelPrice:
        """The price of `model`: its longest matching key, else the fallback family's."""
        key = matching_key(self._table, model)
        if key is not None:
            return self._table[key]
        if model not in self._warned:
            self._warned.add(model)
            log.warning(
                "no price for model %s: priced as %s (set INCIDENT_BOT_MODEL_PRICES)",
                model,
                FALLBACK_FAMILY,
                extra={"model": model},
            )
        return self._table[FALLBACK_FAMILY]

    def cost(self, model: str, usage: Usage) -> float:
        """Estimated dollars of `usage` on `model`."""
        return self.price(model).cost(usage)


def matching_key(table: Mapping[str, ModelPrice], model: str) -> str | None:
    """The longest key of `table` that `model` starts with or contains after a dash."""
    matches = [k for k in table if model.startswith(k) or f"-{k}" in model]
    return max(matches, key=len) if matches else None
