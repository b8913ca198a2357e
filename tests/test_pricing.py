"""Model prices: the default table, the operator's INCIDENT_BOT_MODEL_PRICES over it."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from bot.models import Usage
from bot.pricing import DEFAULT_PRICES, ModelPrice, Prices
from bot.settings import Settings

MILLION = Usage(
    input_tokens=1_000_000,
    output_tokens=1_000_000,
    cache_write_tokens=1_000_000,
    cache_read_tokens=1_000_000,
)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-sonnet-4-6", "sonnet"),
        ("claude-opus-4-6", "opus"),
        ("claude-haiku-4-5", "haiku"),
        ("claude-3-5-haiku-20241022", "haiku"),
    ],
)
def test_the_default_table_prices_each_family(model: str, family: str) -> None:
    price = DEFAULT_PRICES[family]
    expected = price.input + price.output + price.cache_write + price.cache_read
    assert Prices().cost(model, MILLION) == pytest.approx(expected)


def test_the_defaults_keep_the_families_apart() -> None:
    prices = Prices()
    usage = Usage(input_tokens=10_000, output_tokens=1_000)
    haiku, sonnet, opus = (
        prices.cost(m, usage) for m in ("claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6")
    )
    assert 0 < haiku < sonnet < opus
    assert sonnet == pytest.approx((10_000 * 3 + 1_000 * 15) / 1_000_000)


def test_the_setting_overrides_and_the_longest_prefix_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "INCIDENT_BOT_MODEL_PRICES",
        '{"claude-opus-4": {"input": 5, "output": 25}, '
        '"claude-opus-4-6": {"input": 4, "output": 20, "cache_write": 5, "cache_read": 0.4}, '
        '"my-gateway-model": {"input": 2, "output": 8}}',
    )
    prices = Prices(Settings().model_prices)
    assert prices.price("claude-opus-4-6-20261101") == ModelPrice(
        input=4, output=20, cache_write=5, cache_read=0.4
    )
    # Cache prices default to 1.25 and 0.1 times the input price.
    assert prices.price("claude-opus-4-5") == ModelPrice(
        input=5, output=25, cache_write=6.25, cache_read=0.5
    )
    assert prices.cost("my-gateway-model", Usage(input_tokens=1_000_000)) == pytest.approx(2.0)
    # The families the operator did not name keep their default prices.
    assert prices.price("claude-sonnet-4-6") == DEFAULT_PRICES["sonnet"]


def test_an_unknown_model_is_priced_as_sonnet_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prices = Prices()
    with caplog.at_level(logging.WARNING, logger="bot.pricing"):
        first = prices.cost("claude-mythos-5", MILLION)
        again = prices.cost("claude-mythos-5", MILLION)
    sonnet = DEFAULT_PRICES["sonnet"].cost(MILLION)
    assert first == again == pytest.approx(sonnet)
    warnings = [r for r in caplog.records if "claude-mythos-5" in r.getMessage()]
    assert len(warnings) == 1
    assert "INCIDENT_BOT_MODEL_PRICES" in warnings[0].getMessage()


def test_a_malformed_price_is_refused_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENT_BOT_MODEL_PRICES", '{"claude-opus-4-6": {"input": -1}}')
    with pytest.raises(ValidationError):
        Settings()
