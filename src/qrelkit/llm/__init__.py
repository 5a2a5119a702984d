"""LLM backends behind one interface, chosen by a model string.

>>> llm = get_llm("gguf:qwen2.5-coder-1.5b")          # doctest: +SKIP
>>> llm.choice_probs([{"role": "user", "content": "2+1=?"}], ["0", "1", "2", "3"])  # doctest: +SKIP
"""

from __future__ import annotations

from .base import LLM, ChoiceProbs, Completion, Message
from .cache import ResultCache, cache_key
from .spec import ModelSpec, parse_spec

DEFAULT_LLM = "qwen2.5-coder-1.5b"


def get_llm(spec: str, *, threads: int | None = None) -> LLM:
    """Build a backend from a model string.

    - ``gguf:PATH_OR_ALIAS``: llama-cpp-python in process
      (aliases: qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, smollm2-135m)
    - ``hf:PATH_OR_NAME``: transformers in process (a HF folder, hub name, GGUF file or alias)
    - ``openai:MODEL``, ``azure:DEPLOYMENT``, ``http://HOST:PORT/v1#MODEL``: OpenAI-compatible HTTP
    - a bare alias picks llama.cpp when it is installed, otherwise transformers
    """
    parsed = parse_spec(spec)
    if parsed.backend == "gguf":
        from .llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(parsed.model, threads=threads)
    if parsed.backend == "hf":
        from .hf_backend import HFBackend

        return HFBackend(parsed.model, threads=threads)
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(spec)


__all__ = [
    "DEFAULT_LLM",
    "LLM",
    "ChoiceProbs",
    "Completion",
    "Message",
    "ModelSpec",
    "ResultCache",
    "cache_key",
    "get_llm",
    "parse_spec",
]
