"""What a call costs: a per-model price table (USD per million tokens) and the estimate.

The defaults are the providers' published list prices for common models (openai.com/api/pricing,
anthropic.com/pricing, ai.google.dev/gemini-api/docs/pricing, api-docs.deepseek.com/quick_start/
pricing, mistral.ai/pricing, groq.com/pricing); a price the operator sets (LLM_PRICES) wins.
A model found in neither has no price: its usage is shown in tokens only, never as $0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """USD per million tokens. `cached` is the price of prompt tokens the provider served from
    its prompt cache (None: billed as ordinary prompt tokens)."""

    prompt: float
    completion: float
    cached: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached_tokens = min(max(cached_tokens, 0), prompt_tokens)
        cached_rate = self.prompt if self.cached is None else self.cached
        return ((prompt_tokens - cached_tokens) * self.prompt + cached_tokens * cached_rate
                + completion_tokens * self.completion) / 1_000_000


# Longest prefix wins ("gpt-4o-mini" before "gpt-4o"); a provider prefix ("openai/") is dropped.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o3": Price(2.00, 8.00, 0.50),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.025),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.075),
    "gemini-2.5-pro": Price(1.25, 10.00, 0.31),
    "deepseek-chat": Price(0.27, 1.10, 0.07),
    "deepseek-reasoner": Price(0.55, 2.19, 0.14),
    "mistral-small": Price(0.10, 0.30),
    "mistral-medium": Price(0.40, 2.00),
    "mistral-large": Price(2.00, 6.00),
    "llama-3.1-8b-instant": Price(0.05, 0.08),
    "llama-3.3-70b-versatile": Price(0.59, 0.79),
}

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{8}$|-latest$")


def price_for(model: str | None, overrides: dict[str, Price] | None = None) -> Price | None:
    """The price of `model`: an override by exact name or prefix first, then the defaults."""
    if not model:
        return None
    name = _DATED.sub("", model.rsplit("/", 1)[-1].lower())
    for table in (overrides or {}, DEFAULT_PRICES):
        keys = sorted((k for k in table if name == k.lower() or name.startswith(k.lower())),
                      key=len, reverse=True)
        if keys:
            return table[keys[0]]
    return None


def estimate_cost(model: str | None, prompt_tokens: int, completion_tokens: int,
                  cached_tokens: int = 0, overrides: dict[str, Price] | None = None
                  ) -> float | None:
    """USD for one call, or None for a model without a known price (shown as tokens only)."""
    price = price_for(model, overrides)
    return None if price is None else price.cost(prompt_tokens, completion_tokens, cached_tokens)
