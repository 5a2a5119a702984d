"""ONNX export and ONNX Runtime scoring of the cross-encoder student (fp32, int8, int8 with sensitive layers
kept fp32): the same logits as the torch model, faster on a CPU.

>>> export_cross_encoder("ce-student/")                                        # doctest: +SKIP
>>> student = load_student("ce-student/", runtime="onnx-int8")                 # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QrelkitError
from .onnx import (
    COMPANION,
    MODEL_INPUTS,
    _quantize,
    cpu_session,
    export_graph,
    export_onnx,
    length_batches,
    missing_model_error,
    padded_inputs,
    probe_pairs,
)

CE_ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "onnx-int8-mixed": "model.int8-mixed.onnx"}


def export_cross_encoder(student_dir: str | Path, *, quantize: bool = True) -> dict[str, Path]:
    """Write ``model.onnx`` (fp32 logits) and, with ``quantize``, the int8 models into a cross-encoder folder; a
    stacked student's frozen companion (``frozen/``) is exported beside it, so each runtime runs both models."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(student_dir)
    if not (folder / "model" / "config.json").exists():
        raise QrelkitError(f"{folder}: not a cross-encoder student folder (no model/config.json)")
    model = AutoModelForSequenceClassification.from_pretrained(str(folder / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "model"))
    sample = tokenizer(
        ["a query", "another query"],
        ["a short passage", "a longer passage for the exporter"],
        padding=True,
        return_tensors="pt",
    )
    names = [k for k in MODEL_INPUTS if k in sample]
    fp32 = folder / CE_ONNX_FILES["onnx"]
    export_graph(model, tuple(sample[k] for k in names), names, ("logits",), fp32)
    out = {"onnx": fp32}
    if quantize:
        card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").exists() else {}
        max_length = int(card.get("max_length", 256))
        probes = probe_pairs()

        def probe_scores(model: Path) -> np.ndarray:
            return OnnxPairScorer(model, tokenizer, max_length=max_length).predict(probes)

        out.update(_quantize(fp32, folder, CE_ONNX_FILES, scores=probe_scores))
    if (folder / COMPANION / "head.json").exists():
        out.update({f"{COMPANION}-{k}": v for k, v in export_onnx(folder / COMPANION, quantize=quantize).items()})
    return out


class OnnxPairScorer:
    """The part of ``CrossEncoder.predict`` the student uses (sigmoid of the logit per pair), on ONNX Runtime."""

    def __init__(self, model_path: Path, tokenizer: Any, *, max_length: int = 256, token_budget: int = 2048):
        if not model_path.exists():
            raise missing_model_error(model_path)
        self.session = cpu_session(model_path)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.token_budget = token_budget

    def predict(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 64, **_: Any) -> np.ndarray:
        """Pairs scored in length-sorted batches of at most ``batch_size`` pairs and ``token_budget`` tokens."""
        enc = self.tokenizer(
            [q for q, _ in pairs], [d for _, d in pairs], truncation="longest_first", max_length=self.max_length
        )
        ids, types = enc["input_ids"], enc.get("token_type_ids")
        pad_id = int(self.tokenizer.pad_token_id or 0)
        logits = np.zeros(len(ids), dtype=np.float64)
        for idx in length_batches([len(seq) for seq in ids], batch_size, self.token_budget):
            batch_types = [types[i] for i in idx] if types else None
            feed = padded_inputs([ids[i] for i in idx], pad_id, self.input_names, batch_types)
            logits[idx] = np.asarray(self.session.run(None, feed)[0]).reshape(-1)
        return 1.0 / (1.0 + np.exp(-logits))
