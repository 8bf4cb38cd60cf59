"""What a transcript's tokens cost, by the genai-prices table, when Claude Code did not write the cost itself.

The table prices one request at a time (a request whose input passes a tier's threshold, Anthropic's long
context, pays the tier's rate for all of its tokens), and asking it costs about half a millisecond: too slow
for every message of a large history. So each model's rates per token are read from the table once, by pricing
probe requests below and above its threshold, and a message is priced with the rates of its own side of the
threshold. Prices are linear in each token count on one side, so this is exactly what the table would say.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib.metadata import version
from typing import Any

MILLION = 1_000_000
PROBE = 10_000  # tokens of each kind in a probe request below every threshold
LONG = 100_000_000  # input tokens of a probe request above every threshold


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token of each kind, below a model's long-context threshold and above it."""

    model_id: str  # the table's name for the model
    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float
    threshold: int | None  # input tokens (cached ones included) above which ``long`` applies
    long: Rates | None = None

    def cost(self, input: int, output: int, cache_read: int, write_5m: int, write_1h: int) -> float:
        """One request's cost: at the long-context rates when its input passes the threshold."""
        long = self.threshold is not None and input + cache_read + write_5m + write_1h > self.threshold
        return self.cost_of(long, input, output, cache_read, write_5m, write_1h)

    def cost_of(
        self, long: bool, input: int, output: int, cache_read: int, write_5m: int, write_1h: int
    ) -> float:
        """What requests cost, all on one side of the threshold (``long``): their tokens added up."""
        rates = self.long if long and self.long is not None else self
        return (
            input * rates.input
            + output * rates.output
            + cache_read * rates.cache_read
            + write_5m * rates.cache_write_5m
            + write_1h * rates.cache_write_1h
        )


def table_version() -> str:
    """The price table's name and version, shown beside every cost it priced."""
    return f"genai-prices {version('genai-prices')}"


_loading: threading.Thread | None = None


def preload() -> None:
    """Import the table in the background (half a second) while transcripts are read."""
    global _loading
    if _loading is None:
        _loading = threading.Thread(target=_module, name="ccmetrics-prices", daemon=True)
        _loading.start()


@cache
def _module() -> Any:
    import genai_prices

    return genai_prices


@cache
def rates(model: str) -> Rates | None:
    """The model's rates, or None when the table has no price for it."""
    if _loading is not None:
        _loading.join()
    prices = _module()
    probe = prices.Usage

    def price(**usage: int) -> Decimal:
        total = usage.get("input_tokens", 0)
        usage["input_tokens"] = total
        result = prices.calc_price(probe(**usage), model, provider_id="anthropic")
        return Decimal(result.total_price)

    try:
        found = prices.calc_price(probe(input_tokens=1), model, provider_id="anthropic")
    except LookupError:
        return None
    model_id = str(found.model.id)

    def at(base: int) -> Rates:
        zero = price(input_tokens=base)
        n = PROBE
        per_input = (price(input_tokens=base + n) - zero) / n
        return Rates(
            model_id,
            float(per_input),
            float((price(input_tokens=base, output_tokens=n) - zero) / n),
            # the table's input_tokens count cached tokens too: a cached one replaces an uncached one
            float((price(input_tokens=base + n, cache_read_tokens=n) - zero) / n),
            float((price(input_tokens=base + n, cache_write_tokens=n) - zero) / n),
            float((price(input_tokens=base + n, cache_write_tokens=n, cache_write_1h_tokens=n) - zero) / n),
            None,
        )

    low = at(0)
    high = at(LONG)
    threshold = _threshold(found.model.prices)
    if high == low or threshold is None:
        return low
    return Rates(
        model_id,
        low.input,
        low.output,
        low.cache_read,
        low.cache_write_5m,
        low.cache_write_1h,
        threshold,
        high,
    )


def _threshold(model_prices: Any) -> int | None:
    """The input tokens at which the model's first price tier starts, if it has tiers."""
    starts = []
    for value in vars(model_prices).values():
        tiers = getattr(value, "tiers", None)
        if tiers:
            starts.append(min(int(tier.start) for tier in tiers))
    return min(starts) if starts else None
