"""LLM backends behind one interface, chosen by a model string.

>>> llm = get_llm("gguf:qwen2.5-coder-1.5b")          # doctest: +SKIP
>>> llm.choice_probs([{"role": "user", "content": "2+1=?"}], ["0", "1", "2", "3"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util

from ..errors import QrelkitError
from .base import LLM, ChoiceProbs, Completion, Message
from .cache import ResultCache, cache_key

DEFAULT_LLM = "qwen2.5-coder-1.5b"


def get_llm(spec: str, *, threads: int | None = None) -> LLM:
    """Build a backend from a model string.

    - ``gguf:PATH_OR_ALIAS``: llama-cpp-python in process
      (aliases: qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, smollm2-135m)
    - ``hf:PATH_OR_NAME``: transformers in process (a HF folder, hub name, GGUF file or alias)
    - ``openai:MODEL``, ``azure:DEPLOYMENT``, ``http://HOST:PORT/v1#MODEL``: OpenAI-compatible HTTP
    - a bare alias picks llama.cpp when it is installed, otherwise transformers
    """
    if spec.startswith("gguf:"):
        from .llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(spec.removeprefix("gguf:"), threads=threads)
    if spec.startswith("hf:"):
        from .hf_backend import HFBackend

        return HFBackend(spec.removeprefix("hf:"), threads=threads)
    if spec.startswith(("openai:", "azure:", "http://", "https://")):
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(spec)
    if ":" in spec.split("/")[0]:
        raise QrelkitError(f"unknown model backend in {spec!r} (use gguf:, hf:, openai:, azure: or http://)")
    prefix = "gguf:" if importlib.util.find_spec("llama_cpp") is not None else "hf:"
    return get_llm(prefix + spec, threads=threads)


__all__ = ["DEFAULT_LLM", "LLM", "ChoiceProbs", "Completion", "Message", "ResultCache", "cache_key", "get_llm"]
