"""In-process transformers backend: any HF causal LM folder or hub name, or a GGUF file (dequantised).

Needs no compiler. GGUF files are converted once (tens of seconds) and cached as safetensors.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import folder_replaced
from ..models import CACHE_DIR, resolve_gguf
from .base import LLM, ChoiceProbs, Completion, Message, softmax_pick


def load_gguf_lm(gguf: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}".encode()).hexdigest()[:16]
    saved = CACHE_DIR / "hf-from-gguf" / f"{gguf.stem}-{digest}"
    if (saved / "config.json").exists():
        return AutoTokenizer.from_pretrained(saved), AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain one from its config and weights.
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict())
    with folder_replaced(saved) as tmp:
        fresh.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return tok, fresh


def model_source(name: str) -> tuple[str, str]:
    """``("gguf", alias or path)`` or ``("hf", folder or hub name)`` for a model string; ``gguf:`` / ``hf:``
    say it outright, otherwise a ``.gguf`` file or a bare name without "/" that is not a folder is GGUF."""
    if name.startswith("gguf:"):
        return "gguf", name[5:]
    if name.startswith("hf:"):
        return "hf", name[3:]
    if name.endswith(".gguf") or not (Path(name).exists() or "/" in name):
        return "gguf", name
    return "hf", name


def load_causal_lm(name: str, dtype: Any = None) -> tuple[Any, Any]:
    """Tokenizer and causal LM (fp32 unless ``dtype``) from an HF folder or hub name, or a GGUF file or alias
    (dequantised), as :func:`model_source` reads ``name``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtype or torch.float32
    source, path = model_source(name)
    if source == "gguf":
        tok, model = load_gguf_lm(resolve_gguf(path))
        return tok, model.to(dtype)
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


class HFBackend(LLM):
    """``hf:PATH_OR_NAME`` — a transformers causal LM run in this process: on the GPU in bf16 when torch sees one,
    else on CPU in fp32. :meth:`complete_many` generates for many prompts in one batch (the way to write tens of
    thousands of synthetic queries on a GPU)."""

    batched_generation = True

    def __init__(self, name: str, *, threads: int | None = None, device: str | None = None):
        import torch

        self.spec = f"hf:{name}"
        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.startswith("cuda")
        # On CPU a batch of judge prompts scored slower than the same prompts one at a time (89 pairs,
        # SmolLM2-135M, 2 cores: 70 s alone, 74 s in batches of 4, 92 s in 16): batches are for a GPU.
        self.scoring_batch = 32 if on_gpu else 1
        dtype = torch.bfloat16 if on_gpu else torch.float32
        self.tokenizer, self.model = load_causal_lm(name, dtype)
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # batched generation continues every prompt from its last token
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        ends = self.model.generation_config.eos_token_id
        self.end_tokens = set(ends if isinstance(ends, list) else [ends]) | {self.tokenizer.eos_token_id}

    def _encode(self, conversations: Sequence[list[Message]]) -> Any:
        """The conversations' chat prompts as one left-padded batch on the model's device."""
        texts = [
            self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in conversations
        ]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def complete(
        self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0
    ) -> Completion:
        return self.complete_many([messages], max_tokens=max_tokens, temperature=temperature, seed=seed)[0]

    def complete_many(
        self,
        conversations: Sequence[list[Message]],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        concurrency: int = 1,
    ) -> list[Completion]:
        """One batched generation for all ``conversations`` (left-padded); greedy replies equal one-at-a-time
        ones (16 of 16 synth prompts with SmolLM2-135M on CPU, in 41 s against 74 s one at a time)."""
        import torch

        if not conversations:
            return []
        enc = self._encode(conversations)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        return [
            Completion(
                text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                prompt_tokens=int(n),
                completion_tokens=self._generated(tokens),
            )
            for tokens, n in zip(new, prompt_tokens, strict=True)
        ]

    def _generated(self, tokens: list[int]) -> int:
        """Tokens generated up to and including the first end token (a finished row is padded after it)."""
        return next((i + 1 for i, t in enumerate(tokens) if t in self.end_tokens), len(tokens))

    def choice_probs(self, messages: list[Message], choices: list[str]) -> ChoiceProbs:
        return self.choice_probs_many([messages], choices)[0]

    def choice_probs_many(self, conversations: Sequence[list[Message]], choices: list[str]) -> list[ChoiceProbs]:
        """Next-token probabilities of ``choices`` for many conversations in one forward pass (left-padded;
        positions counted from each row's first real token, so every row scores as it would alone)."""
        import torch

        if not conversations:
            return []
        enc = self._encode(conversations)
        positions = (enc["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
        token_ids = [self.tokenizer.encode(c, add_special_tokens=False)[0] for c in choices]
        # the last position's logits only: a batch of full-vocabulary rows is GBs (where the model can; every
        # causal LM built into transformers takes logits_to_keep, a remote-code one may not)
        last_only = (
            {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}
        )
        with torch.inference_mode():
            logits = self.model(**enc, position_ids=positions, **last_only).logits[:, -1]
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        return [
            ChoiceProbs(*softmax_pick(row, token_ids), prompt_tokens=int(n))
            for row, n in zip(logits.float().cpu().numpy(), lengths, strict=True)
        ]
