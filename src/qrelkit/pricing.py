"""Token prices (USD per 1M input / output tokens) and cost accounting for LLM calls.

Defaults are OpenAI's list prices of the models most used as relevance judges (as published through 2026-03);
a dated snapshot (``gpt-4o-2024-08-06``) costs what its model does unless the table names it. Local backends
(gguf:, hf:) cost nothing per token. Override or extend with a YAML file: ``{model-name: {input: 2.5, output: 10}}``.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import InputError, QrelkitError
from .llm.spec import parse_spec

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o-2024-05-13": (5.00, 15.00),  # the first gpt-4o snapshot kept its launch price
    "gpt-5": (1.25, 10.00),  # reasoning models: their hidden reasoning tokens are billed as output
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # gpt-4o-2024-08-06 → gpt-4o


def model_name(spec: str) -> str:
    """The name prices are looked up by: ``openai:gpt-4o`` → ``gpt-4o``; ``http://h/v1#m`` → ``m``."""
    try:
        return parse_spec(spec).model
    except QrelkitError:
        return spec


def is_local(spec: str) -> bool:
    """A model run in this process (free per token); an unparseable string is not local."""
    try:
        return parse_spec(spec).local
    except QrelkitError:
        return False


def load_prices(path: str | Path | None = None) -> dict[str, tuple[float, float]]:
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such price table")
    data = yaml.safe_load(p.read_text()) or {}
    for name, row in data.items():
        if not isinstance(row, dict) or "input" not in row or "output" not in row:
            raise InputError(p, "each model needs 'input' and 'output' prices per 1M tokens", field=str(name))
        prices[str(name)] = (float(row["input"]), float(row["output"]))
    return prices


def price_of(spec: str, prices: dict[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens; (0, 0) for local models; None when the table has no price."""
    if is_local(spec):
        return (0.0, 0.0)
    table, name = prices or DEFAULT_PRICES, model_name(spec)
    return table.get(name, table.get(_SNAPSHOT.sub("", name)))


def cost_usd(
    spec: str, tokens_in: int, tokens_out: int, prices: dict[str, tuple[float, float]] | None = None
) -> float | None:
    """Cost of the given token counts, or None when the model has no known price."""
    price = price_of(spec, prices)
    if price is None:
        return None
    return round(tokens_in / 1e6 * price[0] + tokens_out / 1e6 * price[1], 6)


def missing_price(spec: str, prices: dict[str, tuple[float, float]] | None = None) -> str | None:
    """What to do when a hosted model has no price (None when it has one, or runs locally)."""
    if price_of(spec, prices) is not None:
        return None
    name = model_name(spec)
    return (
        f"no price for {name!r}: add it with --prices FILE (YAML, USD per 1M tokens: '{name}: {{input: …, output: …}}')"
    )
