"""The paper's student: a small causal LM with LoRA adapters (peft) that reads the grade from its next-token
distribution over "0".."3" after the grading prompt (``prompts/causal-grade.yaml``), trained on the teacher's
(soft) grades.

Bases: ``gguf:ALIAS|PATH`` (a GGUF file dequantised through transformers: the offline ``smollm2-135m``,
``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``) or an HF folder / hub name (``Qwen/Qwen2.5-1.5B-Instruct``,
``microsoft/Phi-3.5-mini-instruct``; ``hf:`` prefix optional). Instruct bases see the prompt through their chat
template, exactly as an OpenAI-compatible server (``vllm serve``) would render it, so a merged export served by
vLLM grades like the student does here.

Training uses the transformers ``Trainer``: bf16 on a GPU, length-grouped batches, gradient accumulation,
optional gradient checkpointing, bounded by ``max_pairs`` and a time budget, resumable from its last checkpoint.

>>> student = distill_causal(pairs, teacher, base="gguf:qwen2.5-coder-0.5b", epochs=1)   # doctest: +SKIP
>>> student.save("causal-student/")                                                      # doctest: +SKIP
>>> export_merged("causal-student/")    # causal-student/merged: a plain HF folder; vllm serve it   # doctest: +SKIP
>>> scores, grades = CausalStudent.load("causal-student/").predict(["query"], ["passage"])   # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QrelkitError
from ..io import Qrels, folder_replaced
from ..prompts import Prompt, load_prompt
from ..records import GRADES, Pair
from .grading import ThresholdGrader, distribution_thresholds
from .targets import sample_by_query, teacher_targets
from .training import default_device, run_trainer

log = logging.getLogger("qrelkit")
# peft asks the model a transformers-4 question; transformers 5 answers with a deprecation warning on every load
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

PROMPT = "causal-grade"  # prompts/causal-grade.yaml, versioned like the judge's
DEFAULT_BASE = "gguf:smollm2-135m"
THRESHOLD_PAIRS = 4000  # cut points are fitted on at most this many training pairs (quantiles need no more)


def _bf16(device: str) -> bool:
    """bf16 halves memory and doubles speed on GPUs that have it; CPUs train in fp32 (bf16 matmuls are slow)."""
    import torch

    return device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _dtype(device: str) -> Any:
    import torch

    return torch.bfloat16 if _bf16(device) else torch.float32


def load_base(base: str, device: str) -> tuple[Any, Any]:
    """Tokenizer and causal LM for ``base`` on ``device`` (left padding: the grade is read at the last position)."""
    from ..llm.hf_backend import load_causal_lm

    tok, model = load_causal_lm(base, dtype=_dtype(device))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok, model.to(device)


class CausalStudent(ThresholdGrader):
    """A causal LM + LoRA adapter grading query–passage pairs; :meth:`save` / :meth:`load` a folder."""

    default_batch_size = 16

    def __init__(self, tokenizer: Any, model: Any, card: dict[str, Any], thresholds: list[float] | None = None):
        self.tokenizer = tokenizer
        self.model = model
        self.card = card
        self.thresholds = thresholds
        self.prompt: Prompt = load_prompt(str(card.get("prompt", PROMPT)))
        self.grade_ids = [tokenizer.encode(str(g), add_special_tokens=False)[-1] for g in GRADES]
        if len(set(self.grade_ids)) != len(GRADES):
            raise QrelkitError(f"{card.get('base')}: the digits 0–3 are not distinct tokens")

    @classmethod
    def from_base(
        cls,
        base: str = DEFAULT_BASE,
        *,
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        max_passage_tokens: int = 192,
        device: str | None = None,
    ) -> CausalStudent:
        """A fresh LoRA adapter (all linear layers) on ``base``."""
        from peft import LoraConfig, get_peft_model

        device = device or default_device()
        tok, model = load_base(base, device)
        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules="all-linear",
        )
        card = {
            "kind": "causal",
            "base": base,
            "prompt": PROMPT,
            "chat_template": bool(getattr(tok, "chat_template", None)),
            "lora_r": lora_r,
            "lora_alpha": lora_alpha,
            "max_passage_tokens": max_passage_tokens,
        }
        student = cls(tok, get_peft_model(model, config), card)
        student.card["prompt_version"] = student.prompt.version
        return student

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> CausalStudent:
        """A saved student: base + ``adapter/``, or a merged folder (:func:`export_merged`) without peft."""
        p = Path(path)
        meta = _read_meta(p)
        device = device or default_device()
        if meta["card"].get("merged"):
            tok, model = load_base(f"hf:{p}", device)
        else:
            from peft import PeftModel

            tok, model = load_base(meta["card"]["base"], device)
            model = PeftModel.from_pretrained(model, str(p / "adapter")).to(device)
        model.eval()
        return cls(tok, model, meta["card"], meta["thresholds"])

    def save(self, path: str | Path) -> None:
        with folder_replaced(path) as tmp:
            self.model.save_pretrained(str(tmp / "adapter"))
            _write_meta(tmp, self.card, self.thresholds)

    # ------------------------------------------------------------ prompts and scoring

    def prompt_texts(self, queries: Sequence[str], docs: Sequence[str]) -> list[str]:
        """The exact text the model reads per pair: passages cut to ``max_passage_tokens``, the prompt's messages
        through the chat template where the base has one (as a chat server renders them), plain text otherwise."""
        limit = int(self.card.get("max_passage_tokens", 192))
        cut = self.tokenizer(list(docs), add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
        passages = self.tokenizer.batch_decode(cut)
        if not self.card.get("chat_template"):
            return [self.prompt.render_user(query=q, passage=d) for q, d in zip(queries, passages, strict=True)]
        return [
            self.tokenizer.apply_chat_template(
                self.prompt.messages(query=q, passage=d), add_generation_prompt=True, tokenize=False
            )
            for q, d in zip(queries, passages, strict=True)
        ]

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # the chat template writes its own special tokens; plain prompts get the tokenizer's (e.g. a BOS)
        return list(self.tokenizer(texts, add_special_tokens=not self.card.get("chat_template"))["input_ids"])

    def grade_logits(self, input_ids: Any, attention_mask: Any) -> Any:
        """Logits of the four grade tokens at the last position (left padding puts every row's end there)."""
        # the last position's logits only: the full [batch, length, vocab] tensor would dominate time and memory
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1).logits[:, -1, :]
        return logits[:, self.grade_ids]

    def grade_probs(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 16) -> np.ndarray:
        """P(grade 0..3) per pair, renormalised over the four grade tokens. Pairs are batched by length
        (little padding), results come back in input order."""
        import torch

        self.model.eval()
        ids = self._encode(self.prompt_texts(queries, docs))
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(ids), len(GRADES)), dtype=np.float32)
        pad = int(self.tokenizer.pad_token_id)
        with torch.inference_mode():
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                batch = pad_left([ids[j] for j in idx], pad)
                logits = self.grade_logits(
                    batch["input_ids"].to(self.model.device), batch["attention_mask"].to(self.model.device)
                )
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def scores(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 16) -> np.ndarray:
        """Expected grade (0–3) per pair."""
        return self.grade_probs(queries, docs, batch_size=batch_size) @ np.arange(len(GRADES), dtype=float)

    # ------------------------------------------------------------ training

    def fit(
        self,
        pairs: Sequence[Pair],
        targets: np.ndarray,
        *,
        epochs: float = 1.0,
        learning_rate: float = 2e-4,
        batch_size: int = 8,
        gradient_accumulation: int = 1,
        gradient_checkpointing: bool = False,
        checkpoint_dir: str | Path | None = None,
        time_budget_s: float | None = None,
        save_steps: int = 200,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Train the LoRA adapter: cross-entropy of the four grade tokens' distribution against ``targets`` (one
        row of P(grade 0..3) per pair: soft labels), with the transformers Trainer (see :func:`run_trainer`:
        checkpoints in ``checkpoint_dir`` every ``save_steps`` steps, resumed by a rerun; ``time_budget_s`` stops
        early).
        Returns the training stats (steps, seconds, loss)."""
        import datasets
        from transformers import Trainer, TrainingArguments

        ids = self._encode(self.prompt_texts([p.query for p in pairs], [p.text for p in pairs]))
        data = datasets.Dataset.from_dict(
            {
                "input_ids": ids,
                "target": np.asarray(targets, dtype=np.float32).tolist(),
                "length": [len(x) for x in ids],
            }
        )
        student = self
        pad = int(self.tokenizer.pad_token_id)

        class GradeTrainer(Trainer):
            def compute_loss(
                self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
            ) -> Any:
                import torch

                target = inputs.pop("target")
                logp = torch.log_softmax(student.grade_logits(**inputs).float(), dim=-1)
                loss = -(target.to(logp.device) * logp).sum(dim=-1).mean()
                return (loss, None) if return_outputs else loss

        def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
            import torch

            batch = pad_left([r["input_ids"] for r in rows], pad)
            batch["target"] = torch.tensor([r["target"] for r in rows], dtype=torch.float32)
            return batch

        def make_trainer(args: Any, callbacks: Any) -> Any:
            return GradeTrainer(
                model=self.model, args=args, train_dataset=data, data_collator=collate, callbacks=callbacks
            )

        if gradient_checkpointing:
            self.model.enable_input_require_grads()  # LoRA under checkpointing needs grads at the inputs
        device = str(self.model.device)
        use_cpu = device == "cpu"
        stats = run_trainer(
            make_trainer,
            TrainingArguments,
            checkpoint_dir=checkpoint_dir,
            time_budget_s=time_budget_s,
            use_cpu=use_cpu,
            bf16=_bf16(device),
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=gradient_accumulation,
            learning_rate=learning_rate,
            lr_scheduler_type="cosine",
            remove_unused_columns=False,
            length_column_name="length",
            save_steps=save_steps,
            seed=seed,
            **_version_specific(gradient_checkpointing),
        )
        self.model.eval()
        return stats


def _version_specific(checkpointing: bool) -> dict[str, Any]:
    """Training arguments whose names moved in transformers 5 (the GPU machine and a user may have another
    version): length-grouped batches, 5% warm-up, activation (gradient) checkpointing."""
    from transformers import TrainingArguments

    params = inspect.signature(TrainingArguments).parameters
    out: dict[str, Any] = {}
    if "train_sampling_strategy" in params:
        out["train_sampling_strategy"] = "group_by_length"
    else:
        out["group_by_length"] = True
    out["warmup_ratio" if "warmup_ratio" in params else "warmup_steps"] = 0.05
    ckpt = "activation_checkpointing" if "activation_checkpointing" in params else "gradient_checkpointing"
    out[ckpt] = checkpointing
    if checkpointing:
        out[ckpt + "_kwargs"] = {"use_reentrant": False}
    return out


def pad_left(rows: Sequence[Sequence[int]], pad: int) -> dict[str, Any]:
    """Left-padded ``input_ids`` and ``attention_mask`` tensors for token id rows of different lengths."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _write_meta(folder: Path, card: dict[str, Any], thresholds: list[float] | None) -> None:
    (folder / "student.json").write_text(
        json.dumps({"kind": "causal", "card": card, "thresholds": thresholds}, indent=1)
    )


def _read_meta(folder: Path) -> dict[str, Any]:
    for name in ("student.json", "causal.json"):  # causal.json: folders saved before 0.x of students/
        if (folder / name).exists():
            meta: dict[str, Any] = json.loads((folder / name).read_text())
            if "card" in meta:
                return meta
    raise QrelkitError(f"{folder}: not a qrelkit causal student folder (no student.json with a card)")


def export_merged(path: str | Path, out: str | Path | None = None) -> Path:
    """Merge a saved student's LoRA adapter into its base and write a plain transformers folder (``out``, by
    default ``<path>/merged``): loads with ``AutoModelForCausalLM.from_pretrained``, serves with ``vllm serve``,
    and is itself a student folder (:func:`qrelkit.students.load_student` reads it without peft)."""
    student = CausalStudent.load(path, device="cpu")
    if student.card.get("merged"):
        raise QrelkitError(f"{path}: already a merged student")
    target = Path(out) if out else Path(path) / "merged"
    merged = student.model.merge_and_unload()
    with folder_replaced(target) as tmp:
        merged.save_pretrained(str(tmp))
        student.tokenizer.save_pretrained(str(tmp))
        _write_meta(tmp, {**student.card, "merged": True, "merged_from": str(path)}, student.thresholds)
    return target


def distill_causal(
    pairs: Sequence[Pair],
    teacher: Qrels,
    *,
    distribution: dict[tuple[str, str], list[float]] | None = None,
    base: str = DEFAULT_BASE,
    epochs: float = 1.0,
    learning_rate: float = 2e-4,
    batch_size: int = 8,
    gradient_accumulation: int = 1,
    gradient_checkpointing: bool = False,
    lora_r: int = 16,
    max_passage_tokens: int = 192,
    max_pairs: int | None = None,
    checkpoint_dir: str | Path | None = None,
    time_budget_s: float | None = None,
    seed: int = 0,
    device: str | None = None,
    card: dict[str, Any] | None = None,
) -> CausalStudent:
    """Train a :class:`CausalStudent` on the pairs the teacher graded: soft targets from ``distribution``
    (P(grade) per pair) where given, one-hot teacher grades otherwise; ``max_pairs`` keeps a query-stratified
    sample. Cut points reproduce the teacher's grade shares on (up to 4,000 of) the training pairs."""
    labelled, grades, targets = teacher_targets(pairs, teacher, distribution or {})
    assert targets is not None  # a distribution was passed, so teacher_targets gives one row per pair
    if max_pairs and len(labelled) > max_pairs:
        keep = sorted(sample_by_query(labelled, max_pairs, seed))
        labelled, grades, targets = [labelled[i] for i in keep], grades[keep], targets[keep]
    t0 = time.perf_counter()
    student = CausalStudent.from_base(
        base, lora_r=lora_r, lora_alpha=2 * lora_r, max_passage_tokens=max_passage_tokens, device=device
    )
    training = student.fit(
        labelled,
        targets,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        gradient_accumulation=gradient_accumulation,
        gradient_checkpointing=gradient_checkpointing,
        checkpoint_dir=checkpoint_dir,
        time_budget_s=time_budget_s,
        seed=seed,
    )
    train_s = time.perf_counter() - t0
    sample = np.random.default_rng(seed).permutation(len(labelled))[:THRESHOLD_PAIRS]
    scores = student.scores([labelled[i].query for i in sample], [labelled[i].text for i in sample])
    student.thresholds = distribution_thresholds(scores, grades[sample])
    student.card.update(
        {
            **(card or {}),
            "train_pairs": len(labelled),
            "train_queries": len({p.qid for p in labelled}),
            "target": "distribution" if distribution else "one-hot grade",
            "epochs": epochs,
            "learning_rate": learning_rate,
            "batch_size": batch_size * gradient_accumulation,
            "training": training,
            "train_seconds": round(train_s, 1),
            "device": str(student.model.device),
        }
    )
    log.info("causal student: %d pairs, %s in %.0f s", len(labelled), training, train_s)
    return student
