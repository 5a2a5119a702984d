"""The one interface every LLM backend implements."""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import QrelkitError

Message = dict[str, str]


@dataclass
class Completion:
    """Generated text and its token usage."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChoiceProbs:
    """Next-token probabilities of a fixed set of answers (e.g. the grades "0".."3").

    ``probs`` is renormalised over the choices; ``mass`` is how much probability the model put on
    them before renormalising (a low mass means the model wanted to say something else).
    """

    probs: list[float]
    mass: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


SECRET_VARS = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "QRELKIT_API_KEY")


def redact(text: str) -> str:
    """Remove any API key found in the environment from ``text`` (error messages can echo request headers)."""
    for var in SECRET_VARS:
        key = os.environ.get(var)
        if key and len(key) >= 4:
            text = text.replace(key, "***")
    return text


class LogprobsUnavailable(QrelkitError):
    """The backend did not return log-probabilities for the answer token."""


class LLM(ABC):
    """A chat model. ``spec`` is the model string it was built from (used in cache keys and manifests).
    ``parallel_requests``: whether several calls may be in flight (HTTP servers; local models run one);
    ``batched_generation``: whether :meth:`complete_many` and :meth:`choice_probs_many` run many prompts at once
    (transformers)."""

    spec: str = ""
    parallel_requests: bool = False
    batched_generation: bool = False
    scoring_batch: int = 1  # prompts per choice_probs_many call that score faster together than alone

    def limit_rate(self, rpm: float | None, tpm: float | None) -> None:  # noqa: B027 - optional hook
        """Cap requests and tokens per minute (remote backends; a local model has nothing to cap)."""

    @abstractmethod
    def complete(
        self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0
    ) -> Completion:
        """Generate a reply to ``messages``."""

    def complete_many(
        self,
        conversations: Sequence[list[Message]],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        concurrency: int = 1,
    ) -> list[Completion]:
        """Replies to several conversations, in their order: with up to ``concurrency`` requests in flight where
        the backend allows it (HTTP servers), else one after another. The transformers backend overrides this
        with one batched generation (many prompts per forward pass)."""

        def reply(messages: list[Message]) -> Completion:
            return self.complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)

        if self.parallel_requests and concurrency > 1 and len(conversations) > 1:
            with ThreadPoolExecutor(min(concurrency, len(conversations))) as pool:
                return list(pool.map(reply, conversations))
        return [reply(m) for m in conversations]

    @abstractmethod
    def choice_probs(self, messages: list[Message], choices: list[str]) -> ChoiceProbs:
        """Probability that the reply starts with each of ``choices``."""

    def choice_probs_many(self, conversations: Sequence[list[Message]], choices: list[str]) -> list[ChoiceProbs]:
        """:meth:`choice_probs` of several conversations, in their order: one after another here; the transformers
        backend (``batched_generation``) scores them in one forward pass."""
        return [self.choice_probs(m, choices) for m in conversations]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, handles)."""


def softmax_pick(logits: Any, token_ids: list[int]) -> tuple[list[float], float]:
    """Softmax over the full vocabulary, then return the renormalised probabilities of ``token_ids``."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    picked = p[token_ids]
    mass = float(picked.sum())
    if mass <= 0 or not math.isfinite(mass):
        return [1.0 / len(token_ids)] * len(token_ids), 0.0
    return [float(x / mass) for x in picked], mass
