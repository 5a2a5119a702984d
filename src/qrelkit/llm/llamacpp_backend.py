"""In-process GGUF backend on llama-cpp-python, with KV-cache reuse of shared prompt prefixes.

Grades are read from the next-token logits (one forward pass, no generation): judging many documents
for one query re-evaluates only the document part of the prompt.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import QrelkitError
from ..models import resolve_gguf
from .base import LLM, ChoiceProbs, Completion, Message, softmax_pick


class LlamaCppBackend(LLM):
    """``gguf:PATH_OR_ALIAS`` — a GGUF model run by llama.cpp in this process."""

    def __init__(self, name: str, *, n_ctx: int = 2048, threads: int | None = None, seed: int = 0):
        try:
            import llama_cpp
        except ImportError:
            raise QrelkitError(
                "llama-cpp-python is not installed (make install-llama builds it), or use hf:NAME instead"
            ) from None
        import jinja2

        self.spec = f"gguf:{name}"
        self._llama_cpp = llama_cpp
        path = resolve_gguf(name)
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads or os.cpu_count() or 2,
            n_batch=512,
            verbose=False,
            seed=seed,
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise QrelkitError(f"{path}: the GGUF has no chat template; use an instruct model")
        env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(template)
        vocab = self.llm._model
        self._bos = vocab.token_get_text(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
        self._eos = vocab.token_get_text(vocab.token_eos()) if vocab.token_eos() >= 0 else ""
        self.n_ctx = n_ctx

    def render(self, messages: list[Message]) -> str:
        return str(
            self._template.render(
                messages=messages, add_generation_prompt=True, bos_token=self._bos, eos_token=self._eos
            )
        )

    def _tokens(self, messages: list[Message]) -> list[int]:
        text = self.render(messages)
        tokens: list[int] = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) >= self.n_ctx:
            raise QrelkitError(f"prompt has {len(tokens)} tokens, over the context of {self.n_ctx}; truncate documents")
        return tokens

    def _eval_reusing_prefix(self, tokens: list[int]) -> None:
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        prefix = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            prefix += 1
        prefix = min(prefix, len(tokens) - 1)  # always evaluate at least one token to get fresh logits
        llm.n_tokens = prefix  # eval() drops the KV cache beyond n_tokens
        llm.eval(tokens[prefix:])

    def choice_probs(self, messages: list[Message], choices: list[str]) -> ChoiceProbs:
        import numpy as np

        tokens = self._tokens(messages)
        self._eval_reusing_prefix(tokens)
        n_vocab = self.llm.n_vocab()
        ptr: Any = self.llm._ctx.get_logits_ith(-1)
        logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()
        token_ids = [self.llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)[0] for c in choices]
        probs, mass = softmax_pick(logits, token_ids)
        return ChoiceProbs(probs=probs, mass=mass, prompt_tokens=len(tokens))

    def complete(
        self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0
    ) -> Completion:
        tokens = self._tokens(messages)
        self.llm.set_seed(seed)
        r: Any = self.llm.create_completion(
            prompt=tokens, max_tokens=max_tokens, temperature=temperature, top_k=40 if temperature > 0 else 1
        )
        usage = r.get("usage", {})
        return Completion(
            text=r["choices"][0]["text"],
            prompt_tokens=int(usage.get("prompt_tokens", len(tokens))),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def close(self) -> None:
        self.llm.close()


def _raise(message: str) -> None:
    raise QrelkitError(f"chat template: {message}")
