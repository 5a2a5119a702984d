"""The GPU student: a small causal LM with LoRA adapters (peft) that reads the grade from its next-token
distribution over "0".."3" after a short grading prompt, trained on the teacher's (soft) grades.

Runs on a GPU when one is present (``device="cuda"``); on CPU it trains and labels too, slowly, which is
how the tests exercise it with the smallest offline model (SmolLM2-135M).

>>> student = distill_causal(pairs, teacher, base="smollm2-135m", epochs=1)   # doctest: +SKIP
>>> student.save("causal-student/")                                           # doctest: +SKIP
>>> scores, grades = CausalStudent.load("causal-student/").predict(["query"], ["passage"])   # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .distill import teacher_targets
from .errors import QrelkitError
from .io import Qrels, folder_replaced
from .prompts import load_prompt
from .records import GRADES, Pair
from .student import distribution_thresholds, grades_from_thresholds

log = logging.getLogger("qrelkit")

PROMPT = "causal-grade"  # prompts/causal-grade.yaml, versioned like the judge's


def _load_base(name: str, device: str) -> tuple[Any, Any]:
    """Tokenizer and fp32 model from an HF folder/hub name, or a GGUF file/alias (dequantised once, cached)."""
    from .llm.hf_backend import load_causal_lm

    tok, model = load_causal_lm(name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # the grade is read at the last position of every row
    return tok, model.to(device)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class CausalStudent:
    """A causal LM + LoRA adapter grading query–passage pairs; :meth:`save` / :meth:`load` a folder."""

    def __init__(self, tokenizer: Any, model: Any, card: dict[str, Any], thresholds: list[float] | None = None):
        self.tokenizer = tokenizer
        self.model = model
        self.card = card
        self.thresholds = thresholds
        self.grade_ids = [tokenizer.encode(str(g), add_special_tokens=False)[-1] for g in GRADES]
        if len(set(self.grade_ids)) != len(GRADES):
            raise QrelkitError(f"{card.get('base')}: the digits 0–3 are not distinct tokens")

    @classmethod
    def from_base(
        cls,
        base: str = "smollm2-135m",
        *,
        lora_r: int = 8,
        lora_alpha: int = 16,
        max_passage_tokens: int = 192,
        device: str | None = None,
    ) -> CausalStudent:
        from peft import LoraConfig, get_peft_model

        device = device or _default_device()
        tok, model = _load_base(base, device)
        config = LoraConfig(task_type="CAUSAL_LM", r=lora_r, lora_alpha=lora_alpha, target_modules="all-linear")
        card = {
            "kind": "causal-lora",
            "base": base,
            "lora_r": lora_r,
            "lora_alpha": lora_alpha,
            "max_passage_tokens": max_passage_tokens,
        }
        return cls(tok, get_peft_model(model, config), card)

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> CausalStudent:
        from peft import PeftModel

        p = Path(path)
        if not (p / "causal.json").exists():
            raise QrelkitError(f"{p}: not a qrelkit causal student folder (no causal.json)")
        meta = json.loads((p / "causal.json").read_text())
        device = device or _default_device()
        tok, model = _load_base(meta["card"]["base"], device)
        model = PeftModel.from_pretrained(model, str(p / "adapter")).to(device)
        model.eval()
        return cls(tok, model, meta["card"], meta["thresholds"])

    def save(self, path: str | Path) -> None:
        with folder_replaced(path) as tmp:
            self.model.save_pretrained(str(tmp / "adapter"))
            meta = {"card": self.card, "thresholds": self.thresholds}
            (tmp / "causal.json").write_text(json.dumps(meta, indent=1))

    # ------------------------------------------------------------ prompts and scoring

    def _prompts(self, queries: Sequence[str], docs: Sequence[str]) -> list[str]:
        limit = int(self.card.get("max_passage_tokens", 192))
        cut = self.tokenizer(list(docs), add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
        passages = self.tokenizer.batch_decode(cut)
        prompt = load_prompt(PROMPT)
        return [prompt.render_user(query=q, passage=d) for q, d in zip(queries, passages, strict=True)]

    def _grade_logits(self, prompts: list[str]) -> Any:
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.model.device)
        # only the last position's logits: the full [batch, length, vocab] tensor would dominate time and memory
        logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :]
        return logits[:, self.grade_ids]

    def grade_probs(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 16) -> np.ndarray:
        """P(grade 0..3) per pair, renormalised over the four grade tokens."""
        import torch

        self.model.eval()
        prompts = self._prompts(queries, docs)
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                out.append(torch.softmax(self._grade_logits(prompts[i : i + batch_size]), dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(GRADES)))

    def predict(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 16
    ) -> tuple[np.ndarray, np.ndarray]:
        """Expected grades (scores) and 0–3 grades cut by the thresholds fitted to the teacher's grade shares."""
        if self.thresholds is None:
            raise QrelkitError("this causal student is not trained; run distill_causal first")
        scores = self.grade_probs(queries, docs, batch_size=batch_size) @ np.arange(len(GRADES), dtype=float)
        return scores, grades_from_thresholds(self.thresholds, scores)

    def predict_pairs(self, pairs: Sequence[Pair], *, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        return self.predict([p.query for p in pairs], [p.text for p in pairs], batch_size=batch_size)

    # ------------------------------------------------------------ training

    def fit(
        self,
        pairs: Sequence[Pair],
        targets: np.ndarray,
        *,
        epochs: int = 1,
        lr: float = 2e-4,
        batch_size: int = 8,
        seed: int = 0,
    ) -> list[float]:
        """Train the LoRA adapter: cross-entropy of the four grade tokens' distribution against ``targets``
        (one row of P(grade 0..3) per pair: soft labels). Returns the mean loss of each epoch."""
        import torch

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        prompts = self._prompts([p.query for p in pairs], [p.text for p in pairs])
        target = torch.tensor(np.asarray(targets, dtype=np.float32))
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=lr)
        self.model.train()
        losses = []
        for _ in range(epochs):
            order = rng.permutation(len(prompts))
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                logp = torch.log_softmax(self._grade_logits([prompts[j] for j in idx]).float(), dim=-1)
                loss = -(target[idx].to(logp.device) * logp).sum(dim=-1).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / len(prompts))
        self.model.eval()
        return losses


def distill_causal(
    pairs: Sequence[Pair],
    teacher: Qrels,
    *,
    distribution: dict[tuple[str, str], list[float]] | None = None,
    base: str = "smollm2-135m",
    epochs: int = 1,
    lr: float = 2e-4,
    batch_size: int = 8,
    lora_r: int = 8,
    seed: int = 0,
    device: str | None = None,
) -> CausalStudent:
    """Train a :class:`CausalStudent` on the pairs the teacher graded: soft targets from ``distribution``
    (P(grade) per pair) where given, one-hot teacher grades otherwise; thresholds reproduce the teacher's
    grade shares on the training pairs, as for the encoder student."""
    labelled, grades, targets = teacher_targets(pairs, teacher, distribution or {})
    t0 = time.perf_counter()
    student = CausalStudent.from_base(base, lora_r=lora_r, device=device)
    assert targets is not None  # a distribution was passed, so teacher_targets gives one row per pair
    losses = student.fit(labelled, targets, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    scores = student.grade_probs([p.query for p in labelled], [p.text for p in labelled]) @ np.arange(4.0)
    student.thresholds = distribution_thresholds(scores, grades)
    student.card.update(
        {
            "train_pairs": len(labelled),
            "train_queries": len({p.qid for p in labelled}),
            "epochs": epochs,
            "lr": lr,
            "losses": [round(x, 4) for x in losses],
            "train_seconds": round(time.perf_counter() - t0, 1),
            "device": str(student.model.device),
        }
    )
    log.info("causal student: losses %s in %.0f s", student.card["losses"], student.card["train_seconds"])
    return student
