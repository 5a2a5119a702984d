"""ONNX Runtime encoders for the student: fp32 export and int8 dynamic quantisation, for fast CPU labeling.

The exported graph includes mean pooling and L2 normalisation, so it returns the same embeddings as the
sentence-transformers encoder (fp32: within 1e-6). Texts are sorted by length before batching so that a
batch pads to similar lengths; the order is restored afterwards.

>>> export_onnx("model/")                                  # doctest: +SKIP
>>> student = Student.load("model/", runtime="onnx-int8")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QrelkitError

log = logging.getLogger("qrelkit")

RUNTIMES = ("torch", "onnx", "onnx-int8")
ONNX_FILES = {"onnx": "encoder.onnx", "onnx-int8": "encoder.int8.onnx"}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(student_dir: str | Path, *, quantize: bool = True) -> dict[str, Path]:
    """Write ``encoder.onnx`` (fp32) and, with ``quantize``, ``encoder.int8.onnx`` into a student folder."""
    import torch

    from .student import Student

    folder = Path(student_dir)
    student = Student.load(folder)
    encoder = student.encoder
    pooled = _Pooled(encoder[0].auto_model).eval()
    sample = encoder.tokenizer(["a short text", "a longer text for the exporter"], padding=True, return_tensors="pt")
    args = tuple(sample[k] for k in _INPUTS if k in sample)
    names = [k for k in _INPUTS if k in sample]
    fp32 = folder / ONNX_FILES["onnx"]
    tmp = fp32.with_suffix(".tmp")
    with torch.no_grad():
        # The TorchScript exporter: the dynamo exporter does not keep the batch/sequence axes of BERT dynamic here.
        torch.onnx.export(
            pooled,
            args,
            str(tmp),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(fp32)
    out = {"onnx": fp32}
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = folder / ONNX_FILES["onnx-int8"]
        tmp8 = int8.with_suffix(".tmp")
        quantize_dynamic(str(fp32), str(tmp8), weight_type=QuantType.QInt8)
        tmp8.replace(int8)
        out["onnx-int8"] = int8
    return out


class _Pooled:
    """A torch module wrapper: transformer → masked mean pooling → L2 normalisation (what the student embeds)."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Pooled(torch.nn.Module):
            def __init__(self, m: Any):
                super().__init__()
                self.m = m

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if token_type_ids is not None:
                    kwargs["token_type_ids"] = token_type_ids
                hidden = self.m(**kwargs).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(mean, dim=-1)

        return Pooled(model)


class OnnxEncoder:
    """The subset of ``SentenceTransformer.encode`` the student uses, run by ONNX Runtime on CPU."""

    def __init__(self, model_path: str | Path, tokenizer: Any, *, max_length: int = 256, threads: int | None = None):
        import onnxruntime as ort

        if not Path(model_path).exists():
            raise QrelkitError(f"{model_path}: no ONNX model; run `qrelkit export {Path(model_path).parent}` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("QRELKIT_THREADS", "0")) or (os.cpu_count() or 1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = tokenizer
        self.max_seq_length = max_length

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, **_: Any) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
            feed = {k: enc[k].astype(np.int64) for k in _INPUTS if k in self.input_names and k in enc}
            emb = self.session.run(None, feed)[0]
            for i, e in zip(idx, emb, strict=True):
                out[i] = e
        return np.stack(out)
