"""The one interface every LLM backend implements."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

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


class LLM(ABC):
    """A chat model. ``spec`` is the model string it was built from (used in cache keys and manifests)."""

    spec: str = ""

    @abstractmethod
    def complete(
        self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0
    ) -> Completion:
        """Generate a reply to ``messages``."""

    @abstractmethod
    def choice_probs(self, messages: list[Message], choices: list[str]) -> ChoiceProbs:
        """Probability that the reply starts with each of ``choices``."""

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
