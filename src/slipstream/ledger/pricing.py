"""Token counts × prices → integer pico-dollars, exactly; money is never a float.

Prices are US dollars per 1M tokens, so one token at price ``p`` costs ``p × 10**6`` pico-dollars.
The sum is rounded once (half up) to a whole pico-dollar, which only matters for prices with more
than six decimal places.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

from slipstream.catalog import Prices

PICO_PER_USD = 10**12
_PICO_PER_TOKEN_PER_PRICE = Decimal(PICO_PER_USD) / Decimal(10**6)
_PICO = Decimal(1).scaleb(-12)


def cost_picousd(prices: Prices, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> int:
    """The cost of one request; ``cached_tokens`` are part of ``prompt_tokens``, billed at the cached price.

    A provider reporting more cached than prompt tokens is trusted for the prompt count only.
    """
    if prompt_tokens < 0 or cached_tokens < 0 or completion_tokens < 0:
        raise ValueError("token counts cannot be negative")
    cached = min(cached_tokens, prompt_tokens)
    with localcontext() as ctx:
        ctx.prec = 60
        usd_per_m = (
            (prompt_tokens - cached) * prices.input
            + cached * prices.effective_cached_input
            + completion_tokens * prices.output
        )
        pico = (usd_per_m * _PICO_PER_TOKEN_PER_PRICE).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(pico)


def picousd_to_decimal(picousd: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(picousd) * _PICO


def format_usd(picousd: int) -> str:
    """Exact dollars as text, at least two decimals, no trailing zeros beyond: ``"0.00"``, ``"1.50"``,
    ``"0.000000123"``."""
    text = f"{picousd_to_decimal(picousd):.12f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}.{frac}"


def format_price(price: Decimal) -> str:
    """A per-1M price as plain decimal text (never exponent notation): ``"0.01"``, ``"15"``."""
    text = f"{price:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
