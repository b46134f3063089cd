"""Costs are exact integers of pico-dollars; formatting never goes through a float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from slipstream.catalog import Prices
from slipstream.ledger.pricing import cost_picousd, format_price, format_usd, picousd_to_decimal


def test_simple_cost() -> None:
    prices = Prices(input=Decimal("0.15"), output=Decimal("0.60"))
    # 1000 * 0.15 / 1e6 + 500 * 0.60 / 1e6 = 0.00015 + 0.0003 USD
    assert cost_picousd(prices, 1000, 0, 500) == 450_000_000
    assert format_usd(450_000_000) == "0.00045"


def test_cached_tokens_are_part_of_prompt_and_billed_at_cached_price() -> None:
    prices = Prices(input=Decimal("2"), cached_input=Decimal("0.5"), output=Decimal("8"))
    cost = cost_picousd(prices, prompt_tokens=1000, cached_tokens=400, completion_tokens=10)
    expected = (600 * Decimal(2) + 400 * Decimal("0.5") + 10 * Decimal(8)) * 10**6
    assert cost == int(expected) == 1_480_000_000


def test_cached_price_defaults_to_input_price() -> None:
    prices = Prices(input=Decimal("3"), output=Decimal("15"))
    assert cost_picousd(prices, 100, 100, 0) == cost_picousd(prices, 100, 0, 0)


def test_floats_would_get_this_wrong() -> None:
    prices = Prices(input=Decimal("0.1"), output=Decimal("0.2"))
    total = sum(cost_picousd(prices, 1, 0, 1) for _ in range(10))
    assert total == 3_000_000  # exactly 0.000003 USD
    assert format_usd(total) == "0.000003"


def test_large_volumes_stay_exact() -> None:
    prices = Prices(input=Decimal("1.23456789"), output=Decimal("9.87654321"))
    cost = cost_picousd(prices, 10**9, 0, 10**9)
    assert cost == (Decimal("1.23456789") + Decimal("9.87654321")) * 10**9 * 10**6
    assert format_usd(cost) == "11111.1111"


def test_sub_picodollar_prices_round_half_up_once() -> None:
    prices = Prices(input=Decimal("0.0000005"), output=Decimal(0))
    assert cost_picousd(prices, 1, 0, 0) == 1  # 0.5 pico-dollars rounds up
    assert cost_picousd(prices, 3, 0, 0) == 2  # 1.5 → 2, not 3 × round(0.5)


def test_cached_more_than_prompt_is_clamped_and_negatives_refused() -> None:
    prices = Prices(input=Decimal(1), cached_input=Decimal(0), output=Decimal(1))
    assert cost_picousd(prices, 10, 50, 0) == 0
    with pytest.raises(ValueError):
        cost_picousd(prices, -1, 0, 0)


@pytest.mark.parametrize(
    ("pico", "text"),
    [
        (0, "0.00"),
        (1, "0.000000000001"),
        (10**12, "1.00"),
        (1_500_000_000_000, "1.50"),
        (123_456_789_012_345, "123.456789012345"),
        (-2 * 10**12, "-2.00"),
    ],
)
def test_format_usd(pico: int, text: str) -> None:
    assert format_usd(pico) == text
    assert Decimal(text) == picousd_to_decimal(pico)


@pytest.mark.parametrize(
    ("price", "text"),
    [(Decimal("0.010"), "0.01"), (Decimal("15"), "15"), (Decimal("1E+2"), "100"), (Decimal("1E-7"), "0.0000001")],
)
def test_format_price(price: Decimal, text: str) -> None:
    assert format_price(price) == text
