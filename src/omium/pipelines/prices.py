"""USD prices of model calls, from the maintained ``genai-prices`` package (pydantic's price table).

The normalising query prices every span in SQL: for each (provider, model) of a day this module
reads per-token rates from genai-prices and hands them to the query as arrays (:class:`PriceTable`).
A rate is derived by pricing sample usages with ``genai_prices.calc_price`` (never by reading its
data format), so every rule it applies (cache reads, cache writes, tiers) is the package's own.
Tiered prices switch rate for all tokens once the input passes a threshold; the table keeps one
set of rates per tier and the query picks the tier from the span's input tokens.

A model genai-prices does not know has no rates: its spans get ``cost_usd`` NULL ("unknown"),
never 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

logger = logging.getLogger(__name__)

# GenAI ``gen_ai.provider.name`` values onto genai-prices provider ids (others are tried as given).
PROVIDER_IDS: dict[str, str] = {
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "together_ai": "together",
}
# Sample size for the base tier's rates: below every tier threshold genai-prices has.
_SAMPLE = 1000


@dataclass
class PriceTable:
    """Per-token USD rates per ``provider|model`` key, one entry per price tier (tier 1 = base).

    ``starts[i][t]`` is the input-token count above which tier ``t`` applies (0 for the base).
    """

    keys: list[str] = field(default_factory=list)
    starts: list[list[int]] = field(default_factory=list)
    input: list[list[float]] = field(default_factory=list)
    cached: list[list[float]] = field(default_factory=list)
    cache_write: list[list[float]] = field(default_factory=list)
    output: list[list[float]] = field(default_factory=list)
    source: str = ""

    def parameters(self) -> dict[str, Any]:
        """The query parameters of :data:`COST_SQL`."""
        return {
            "price_keys": self.keys,
            "price_starts": self.starts,
            "price_input": self.input,
            "price_cached": self.cached,
            "price_cache_write": self.cache_write,
            "price_output": self.output,
            "price_source": self.source,
        }


def price_key(provider: str, model: str) -> str:
    """The table's key of a (provider, model) pair."""
    return f"{provider}|{model}"


def source() -> str:
    """The price data's name and version, stored beside every cost ('' without genai-prices)."""
    try:
        import genai_prices
    except ImportError:
        return ""
    return f"genai-prices {genai_prices.__version__}"


def _thresholds(model_price: Any) -> list[int]:
    from genai_prices.types import TieredPrices

    starts = {
        int(t.start) for v in vars(model_price).values() if isinstance(v, TieredPrices) for t in v.tiers
    }
    return [0, *sorted(starts)]


def rates(provider: str, model: str) -> tuple[list[int], list[tuple[float, float, float, float]]] | None:
    """Tier starts and per-token (input, cached input, cache write, output) USD rates, or None
    when genai-prices does not know the model (or the provider)."""
    try:
        from genai_prices import Usage, calc_price
    except ImportError:
        return None
    provider_id = PROVIDER_IDS.get(provider, provider) or None

    def price(**usage: int) -> Decimal:
        return calc_price(Usage(**usage), model, provider_id=provider_id).total_price

    try:
        first = calc_price(Usage(input_tokens=_SAMPLE), model, provider_id=provider_id)
    except LookupError:
        return None
    starts = _thresholds(first.model_price)
    tiers: list[tuple[float, float, float, float]] = []
    for start in starts:
        n = start + 1 if start else _SAMPLE
        base = price(input_tokens=n)
        # A model without a cache price charges cached tokens as input: genai-prices decides.
        cached = price(input_tokens=n, cache_read_tokens=n)
        write = price(input_tokens=n, cache_write_tokens=n)
        output = price(input_tokens=n, output_tokens=n) - base
        tiers.append(tuple(float(x / n) for x in (base, cached, write, output)))  # type: ignore[arg-type]
    return starts, tiers


def table(pairs: list[tuple[str, str]]) -> PriceTable:
    """The rates of every known (provider, model) pair; unknown pairs are left out."""
    out = PriceTable(source=source())
    for provider, model in pairs:
        if not model:
            continue
        try:
            found = rates(provider, model)
        except Exception:  # a price rule genai-prices cannot apply to a sample: unknown, not a crash
            logger.warning("no price for %s model %r", provider or "unknown provider", model, exc_info=True)
            found = None
        if found is None:
            continue
        starts, tiers = found
        out.keys.append(price_key(provider, model))
        out.starts.append(starts)
        out.input.append([t[0] for t in tiers])
        out.cached.append([t[1] for t in tiers])
        out.cache_write.append([t[2] for t in tiers])
        out.output.append([t[3] for t in tiers])
    return out


# The cost of a span from its tokens (columns provider, model, input_tokens, cached_tokens,
# cache_write_tokens, output_tokens of the normalising query), NULL for a model without rates or
# a span that reports no tokens (a stream whose usage was not recorded costs something unknown).
# Input tokens include cached and cache-write tokens (GenAI semantic conventions), so they are
# taken out of the full-price input.
_IDX = "indexOf({price_keys:Array(String)}, concat(provider, '|', model))"
_TIER = "greatest(1, arrayCount(s -> input_tokens > s, {price_starts:Array(Array(UInt64))}[price_idx]))"


def _rate(name: str) -> str:
    return f"{{price_{name}:Array(Array(Float64))}}[price_idx][price_tier]"


COST_SQL = f"""
    {_IDX} AS price_idx,
    if(price_idx = 0, 1, {_TIER}) AS price_tier,
    if(price_idx = 0 OR input_tokens + output_tokens = 0, CAST(NULL, 'Nullable(Float64)'),
       greatest(toInt64(input_tokens) - toInt64(cached_tokens) - toInt64(cache_write_tokens), 0)
         * {_rate("input")}
       + cached_tokens * {_rate("cached")} + cache_write_tokens * {_rate("cache_write")}
       + output_tokens * {_rate("output")}) AS cost_usd,
    if(cost_usd IS NULL, '', {{price_source:String}}) AS price_source"""


__all__ = ["COST_SQL", "PROVIDER_IDS", "PriceTable", "price_key", "rates", "source", "table"]
