"""ONNX Runtime encoders for the student: fp32 export and int8 dynamic quantisation, for fast CPU labeling.

The exported graph includes mean pooling and L2 normalisation, so it returns the same embeddings as the
sentence-transformers encoder (fp32: within 1e-6). Texts are sorted by length before batching so that a
batch pads to similar lengths; the order is restored afterwards.

>>> export_onnx("model/")                                  # doctest: +SKIP
>>> student = Student.load("model/", runtime="onnx-int8")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..demo_data import judged_pairs
from ..errors import QrelkitError
from ..io import atomic_write, atomic_write_text

log = logging.getLogger("qrelkit")

CHECKED_RUNTIME = "onnx-int8-checked"  # int8, with pairs near a cut point graded again in fp32 (students/checked.py)
RUNTIMES = ("torch", "onnx", "onnx-int8", "onnx-int8-mixed", CHECKED_RUNTIME)
ONNX_FILES = {"onnx": "encoder.onnx", "onnx-int8": "encoder.int8.onnx", "onnx-int8-mixed": "encoder.int8-mixed.onnx"}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # those a graph takes, in this order
# an int8 model is kept only if its scores of the probe pairs correlate with fp32's at least this much: MiniLM's
# int8 models reach 0.994-0.999, while per-channel int8 of all-mpnet-base-v2 scored at r 0.03 (unrelated to fp32)
INT8_MIN_CORRELATION = 0.98
EXPORT_REPORT = "export.json"  # per runtime: the int8 settings, the correlation with fp32, kept or dropped
COMPANION = "frozen"  # a stacked cross-encoder's subfolder: the frozen bi-encoder it stacks with
TOKENS_OUTPUT = "token_embeddings"  # the frozen encoder graph's second output (exports before 2026-11-29 lack it)


def probe_pairs() -> list[tuple[str, str]]:
    """The embedded demo's 150 human-judged (query, passage) pairs: what an export checks its int8 models on."""
    return [(r["query"], r["text"]) for r in judged_pairs()]


def _dropped_at_export(folder: Path) -> dict[str, dict[str, Any]]:
    """The entries of ``folder``'s export report for int8 models the export did not keep (runtime → entry)."""
    report = folder / EXPORT_REPORT
    entries: dict[str, dict[str, Any]] = json.loads(report.read_text()) if report.exists() else {}
    return {runtime: r for runtime, r in entries.items() if not r["kept"]}


def missing_model_error(model_path: Path) -> QrelkitError:
    """Why an ONNX model is absent: never exported, or exported and dropped for not tracking fp32."""
    dropped = [r for r in _dropped_at_export(model_path.parent).values() if r["file"] == model_path.name]
    if dropped:
        return QrelkitError(
            f"{model_path}: not kept at export: its scores of the probe pairs correlate with fp32's at r "
            f"{dropped[0]['r_with_fp32']} (< {INT8_MIN_CORRELATION}); use --runtime onnx (fp32)"
        )
    return QrelkitError(f"{model_path}: no ONNX model; run `qrelkit export {model_path.parent}` first")


def tokenless_export_error(model_path: Path) -> QrelkitError:
    """An ONNX encoder exported before the late-interaction features, loaded for a student that uses them."""
    return QrelkitError(
        f"{model_path}: exported without token vectors, which this student's late-interaction features need: run "
        f"`qrelkit export {model_path.parent}` again"
    )


def unknown_runtime_error(runtime: str) -> QrelkitError:
    """A runtime a single student model cannot load: unknown, or the checked one (two models: load_student)."""
    if runtime == CHECKED_RUNTIME:
        return QrelkitError(f"{runtime} runs two models: load it with qrelkit.students.load_student")
    return QrelkitError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")


def dropped_runtimes(student_dir: str | Path) -> dict[str, float]:
    """The runtimes whose int8 model an export dropped (runtime → correlation with fp32), in the student folder or
    in the frozen companion beside a stacked cross-encoder (the checked runtime runs the int8 model)."""
    out: dict[str, float] = {}
    for folder in (Path(student_dir), Path(student_dir) / COMPANION):
        for runtime, r in _dropped_at_export(folder).items():
            out[runtime] = min(out.get(runtime, 1.0), r["r_with_fp32"])
    if "onnx-int8" in out:
        out[CHECKED_RUNTIME] = out["onnx-int8"]
    return out


def export_onnx(student_dir: str | Path, *, quantize: bool = True) -> dict[str, Path]:
    """Write ``encoder.onnx`` (fp32) and, with ``quantize``, ``encoder.int8.onnx`` into a student folder."""
    from sentence_transformers import SentenceTransformer

    folder = Path(student_dir)
    if not (folder / "head.json").exists():  # only the frozen student has an encoder to export
        raise QrelkitError(f"{folder}: not a frozen-student folder (no head.json); ONNX export covers that student")
    encoder = SentenceTransformer(str(folder / "encoder"), device="cpu")
    pooled = _Pooled(encoder[0].auto_model).eval()
    sample = encoder.tokenizer(["a short text", "a longer text for the exporter"], padding=True, return_tensors="pt")
    args = tuple(sample[k] for k in MODEL_INPUTS if k in sample)
    names = [k for k in MODEL_INPUTS if k in sample]
    fp32 = folder / ONNX_FILES["onnx"]
    export_graph(pooled, args, names, ("embedding", TOKENS_OUTPUT), fp32)
    out = {"onnx": fp32}
    if quantize:
        queries, docs = zip(*probe_pairs(), strict=True)

        def pair_cosines(model: Path) -> np.ndarray:
            onnx_encoder = OnnxEncoder(model, encoder.tokenizer, max_length=encoder.max_seq_length or 256)
            return np.sum(onnx_encoder.encode(queries) * onnx_encoder.encode(docs), axis=1)

        out.update(_quantize(fp32, folder, scores=pair_cosines))
    return out


def export_graph(model: Any, args: tuple[Any, ...], names: list[str], outputs: Sequence[str], path: Path) -> None:
    """``model`` as an ONNX graph at ``path`` (written beside, then renamed), with batch and token axes dynamic
    (``outputs``: the first is per text; any others per token). The TorchScript exporter: the dynamo exporter does
    not keep BERT's batch/sequence axes dynamic here."""
    import torch

    per_token = {o: {0: "batch", 1: "tokens"} for o in outputs[1:]}
    with atomic_write(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer's warnings about Python branches and negative indices do not apply to these graphs: every
        # export is checked against the PyTorch model on probe pairs before it is kept.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            model,
            args,
            str(tmp),
            input_names=names,
            output_names=list(outputs),
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, outputs[0]: {0: "batch"}, **per_token},
            opset_version=17,
            dynamo=False,
        )


def _sensitive_matmuls(model_path: Path) -> list[str]:
    """MatMuls kept fp32 in the mixed int8 model: each layer's FFN output and all of the first and last
    layer. On the benchmark this took int8 grades from 95% to 98% identical to fp32 (and speed from 2.0×
    to 1.4× fp32)."""
    import onnx

    names = [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type == "MatMul"]
    layers = sorted({int(m.group(1)) for n in names if (m := re.search(r"layer\.(\d+)/", n))})
    edge = {f"layer.{layers[0]}/", f"layer.{layers[-1]}/"} if layers else set()
    return [n for n in names if ("/output/dense" in n and "attention" not in n) or any(e in n for e in edge)]


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def _quantize(
    fp32: Path, folder: Path, files: dict[str, str] = ONNX_FILES, *, scores: Callable[[Path], np.ndarray]
) -> dict[str, Path]:
    """Dynamic int8 models beside ``fp32``, each kept only if ``scores`` (a model file → its scores of the
    :func:`probe_pairs`) correlate with fp32's at :data:`INT8_MIN_CORRELATION` or more. Weight scales per channel
    first (per tensor bent some MiniLM embeddings to cosine 0.88 of fp32), then per tensor (per channel broke
    all-mpnet-base-v2). What was tried and kept is written to ``export.json``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reference = scores(fp32)
    out: dict[str, Path] = {}
    report: dict[str, dict[str, Any]] = {}
    # The quantizer logs a line per tensor, and advice to pre-process, on the root logger: keep only its errors
    # (a filter on the root logger leaves the records of qrelkit's own logger alone).
    root = logging.getLogger()
    root.addFilter(_errors_only)
    try:
        for runtime, exclude in (("onnx-int8", []), ("onnx-int8-mixed", _sensitive_matmuls(fp32))):
            target = folder / files[runtime]
            for per_channel in (True, False):
                with atomic_write(target) as tmp:
                    quantize_dynamic(
                        str(fp32),
                        str(tmp),
                        weight_type=QuantType.QInt8,
                        per_channel=per_channel,
                        nodes_to_exclude=exclude,
                    )
                r = _correlation(reference, scores(target))
                if r >= INT8_MIN_CORRELATION:
                    break
            kept = r >= INT8_MIN_CORRELATION
            report[runtime] = {
                "file": target.name,
                "per_channel": per_channel,
                "r_with_fp32": round(r, 4),
                "kept": kept,
            }
            if kept:
                out[runtime] = target
            else:
                target.unlink()
                log.warning("%s dropped: int8 scores correlate with fp32's at r %.3f on the probe pairs", target, r)
    finally:
        root.removeFilter(_errors_only)
    atomic_write_text(folder / EXPORT_REPORT, json.dumps(report, indent=1) + "\n")
    return out


def _correlation(reference: np.ndarray, other: np.ndarray) -> float:
    """Pearson r; 1 when both score every probe alike (a constant model), 0 when only one does."""
    if np.ptp(reference) == 0 or np.ptp(other) == 0:
        return 1.0 if np.allclose(reference, other) else 0.0
    return float(np.corrcoef(reference, other)[0, 1])


class _Pooled:
    """A torch module wrapper: transformer → masked mean pooling → L2 normalisation (what the student embeds), and
    the token vectors beside it."""

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
                return torch.nn.functional.normalize(mean, dim=-1), hidden  # the tokens: late-interaction features

        return Pooled(model)


def cpu_session(model_path: str | Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads: by default ``QRELKIT_THREADS``, else every
    core (a Ray actor sets ``QRELKIT_THREADS`` to its share)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or int(os.environ.get("QRELKIT_THREADS", "0")) or (os.cpu_count() or 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


class TokenizerFile:
    """The calls the ONNX runtimes make of a transformers fast tokenizer, read from its ``tokenizer.json`` with the
    ``tokenizers`` library: importing transformers would import torch, which an ONNX labeler never uses (4.4 s
    and 220 MB of resident memory on 2 cores). The same ids as ``AutoTokenizer`` (tested on benchmark passages)."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # batches are padded by the runtimes, to each batch's longest
        config_file = folder / "tokenizer_config.json"
        pad = json.loads(config_file.read_text()).get("pad_token") if config_file.exists() else None
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = self.tokenizer.token_to_id(pad) if pad else None
        added = self.tokenizer.get_added_tokens_decoder()
        self.all_special_ids = sorted(i for i, token in added.items() if token.special)

    def __len__(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str | None]:
        return [self.tokenizer.id_to_token(i) for i in ids]

    def __call__(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        truncation: bool | str = True,
        max_length: int | None = None,
    ) -> dict[str, list[list[int]]]:
        """``input_ids`` and ``token_type_ids`` of each text (or text pair), with the special tokens, cut to
        ``max_length`` tokens (the longer of a pair first, as ``truncation="longest_first"``)."""
        if truncation and max_length:
            self.tokenizer.enable_truncation(max_length, strategy="longest_first")
        else:
            self.tokenizer.no_truncation()
        inputs: list[Any] = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        encoded = self.tokenizer.encode_batch(inputs)
        return {"input_ids": [e.ids for e in encoded], "token_type_ids": [e.type_ids for e in encoded]}


def onnx_tokenizer(folder: Path) -> Any:
    """The tokenizer of a model folder for an ONNX runtime: :class:`TokenizerFile` where the folder has a
    ``tokenizer.json`` (every fast tokenizer saves one), else transformers' ``AutoTokenizer``."""
    if (folder / "tokenizer.json").exists():
        return TokenizerFile(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def length_batches(lengths: Sequence[int], batch_size: int, token_budget: int) -> Iterator[list[int]]:
    """Indices of the texts in batches, longest first: each batch holds at most ``batch_size`` texts and, padded
    to its longest, ``token_budget`` tokens (a text longer than the budget comes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    start = 0
    while start < len(order):
        size = max(1, min(batch_size, token_budget // max(1, lengths[order[start]])))
        yield order[start : start + size]
        start += size


def padded_inputs(
    ids: Sequence[Sequence[int]],
    pad_id: int,
    input_names: set[str],
    token_types: Sequence[Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """An ONNX feed for one batch: token ids right-padded to the longest, their attention mask and token types
    (zeros where the tokenizer gives none), each kept only where the graph takes it."""
    width = max(len(seq) for seq in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    types = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
        if token_types is not None:
            types[row, : len(seq)] = token_types[row]
    feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
    return {k: v for k, v in feed.items() if k in input_names}


class OnnxEncoder:
    """The subset of ``SentenceTransformer.encode`` the student uses, run by ONNX Runtime on CPU."""

    def __init__(
        self,
        model_path: str | Path,
        tokenizer: Any,
        *,
        max_length: int = 256,
        threads: int | None = None,
        token_budget: int = 1024,
    ):
        if not Path(model_path).exists():  # before importing onnxruntime: the advice holds without it too
            raise missing_model_error(Path(model_path))
        self.session = cpu_session(model_path, threads=threads)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.model_path = Path(model_path)
        self.tokenizer = tokenizer
        self.max_seq_length = max_length
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.token_budget = token_budget

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, **_: Any) -> np.ndarray:
        """Embed texts in length-sorted batches of at most ``batch_size`` texts and ``token_budget`` tokens
        (padded), so that long texts come in small batches: attention memory stays flat, padding stays low.
        Small batches are also faster on CPU (they stay in cache): on 2 cores, int8, 2,000 benchmark pairs,
        budgets of 8192 / 2048 / 1024 tokens gave 150 / 195 / 207 pairs/s and 1.45 / 0.77 / 0.67 GB peak RSS."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([pooled for pooled, *_ in self._batches(texts, batch_size, tokens=False)])

    def encode_tokens(self, texts: Sequence[str], *, batch_size: int = 64) -> list[tuple[np.ndarray, ...]]:
        """(pooled embedding, token vectors, token ids) per text: the late-interaction features' inputs."""
        if TOKENS_OUTPUT not in self.output_names:
            raise tokenless_export_error(self.model_path)
        return self._batches(texts, batch_size, tokens=True)

    def _batches(self, texts: Sequence[str], batch_size: int, *, tokens: bool) -> list[tuple[np.ndarray, ...]]:
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)["input_ids"]
        wanted = self.output_names[:2] if tokens else self.output_names[:1]
        out: list[tuple[np.ndarray, ...]] = [()] * len(texts)
        for idx in length_batches([len(seq) for seq in ids], batch_size, self.token_budget):
            feed = padded_inputs([ids[i] for i in idx], self.pad_id, self.input_names)
            pooled, *hidden = (np.asarray(o) for o in self.session.run(wanted, feed))
            for row, i in enumerate(idx):
                n = len(ids[i])
                out[i] = (pooled[row], hidden[0][row, :n], np.asarray(ids[i])) if tokens else (pooled[row],)
        return out
