"""Students: small models distilled from an LLM teacher, all behind one :class:`Labeler` contract.

- ``frozen`` (:class:`qrelkit.students.encoder.Student`): a frozen MiniLM bi-encoder + a linear head; the fastest tier.
- ``cross-encoder`` (:class:`qrelkit.students.cross_encoder.CrossEncoderStudent`): fine-tuned end to end.
- ``causal`` (:class:`qrelkit.students.causal.CausalStudent`): a small causal LM with LoRA (GPU); the paper's.

>>> student = load_student("model/")                                   # doctest: +SKIP
>>> scores, grades = student.predict(["vpn client"], ["Install the VPN client from ..."])   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import QrelkitError
from ..records import Pair
from .onnx import CHECKED_RUNTIME, dropped_runtimes

STUDENT_KINDS = ("frozen", "cross-encoder", "causal")


@runtime_checkable
class Labeler(Protocol):
    """What every student offers: grade pairs, save itself as a folder that :func:`load_student` reads."""

    card: dict[str, Any]

    def predict(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = ...
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def predict_pairs(self, pairs: Sequence[Pair], *, batch_size: int = ...) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, path: str | Path) -> None: ...


def reads_query_context(student: Labeler) -> bool:
    """Whether ``student`` grades a pair against the other pairs of its query in the same call (a frozen student
    made with ``query_context``): whoever labels with it passes each query's pairs together."""
    return bool(getattr(student, "query_context", False))


def student_kind(path: str | Path) -> str:
    """Which kind of student a folder holds, or a clear error."""
    p = Path(path)
    if (p / "student.json").exists():
        kind = str(json.loads((p / "student.json").read_text()).get("kind"))
        if kind not in STUDENT_KINDS:
            raise QrelkitError(f"{p}: unknown student kind {kind!r}")
        return kind
    if (p / "head.json").exists():
        return "frozen"
    if (p / "causal.json").exists():
        return "causal"
    raise QrelkitError(f"{p}: not a qrelkit student folder (no student.json or head.json)")


def student_fingerprint(path: str | Path) -> str:
    """A digest of a student folder's identity files (head, kind, thresholds, card with its training time):
    what a labeling checkpoint belongs to."""
    p = Path(path)
    student_kind(p)
    h = hashlib.sha256()
    for name in ("head.json", "student.json", "causal.json", "card.json"):
        if (p / name).exists():
            h.update(name.encode() + (p / name).read_bytes())
    return h.hexdigest()


def export_student(path: str | Path, *, quantize: bool = True) -> dict[str, Path]:
    """ONNX exports (fp32, and int8 with ``quantize``) of a frozen or cross-encoder student folder, with the
    checked runtime's margin measured once (``onnx-int8-checked`` → ``checked.json``); for the causal student, its
    LoRA adapter merged into the base as a plain transformers folder (``<path>/merged``, what ``vllm serve``
    takes)."""
    kind = student_kind(path)
    if kind == "causal":
        from .causal import export_merged

        return {"merged": export_merged(path)}
    if kind == "frozen":
        from .onnx import export_onnx

        files = export_onnx(path, quantize=quantize)
    else:
        from .cross_encoder_onnx import export_cross_encoder

        files = export_cross_encoder(path, quantize=quantize)
    if quantize and CHECKED_RUNTIME not in dropped_runtimes(path):  # its int8 models (a companion's too) were kept
        from .checked import save_margin

        fast, exact = _checked_pair(path)
        files[CHECKED_RUNTIME] = save_margin(path, student_fingerprint(path), fast, exact)
    return files


def load_student(path: str | Path, *, runtime: str = "torch", device: str | None = None) -> Labeler:
    """Load any student folder (``qrelkit distill`` output). ``runtime``: torch, or for the frozen and
    cross-encoder students onnx, onnx-int8, onnx-int8-mixed or onnx-int8-checked (after ``qrelkit export``; the
    last grades the pairs near a cut point again in fp32, :mod:`qrelkit.students.checked`); the causal student
    runs with torch."""
    kind = student_kind(path)
    if runtime == CHECKED_RUNTIME and kind != "causal":
        from .checked import CheckedLabeler, int8_margin, stored_margin

        fast, exact = _checked_pair(path, device)
        margin = stored_margin(path, student_fingerprint(path))
        return CheckedLabeler(fast, exact, int8_margin(fast, exact) if margin is None else margin)
    if kind == "frozen":
        from .encoder import Student

        return Student.load(path, runtime=runtime, device=device or "cpu")
    if kind == "cross-encoder":
        from .cross_encoder import CrossEncoderStudent

        return CrossEncoderStudent.load(path, device=device, runtime=runtime)
    if runtime != "torch":
        raise QrelkitError(f"the {kind} student runs with the torch runtime only (got {runtime!r})")
    from .causal import CausalStudent

    return CausalStudent.load(path, device=device)


def labeling_device(device: str, runtime: str) -> str:
    """Where a student labels: ``auto`` is the GPU when torch sees one and the runtime is torch (the ONNX
    runtimes run on CPU), else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` are checked against the runtime and the
    machine."""
    if device == "cpu":
        return device
    if device != "auto" and not device.startswith("cuda"):
        raise QrelkitError(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N")
    if runtime != "torch":
        if device == "auto":
            return "cpu"
        raise QrelkitError(f"--device {device} needs --runtime torch: the ONNX runtimes ({runtime}) run on CPU")
    import torch  # only here: an ONNX labeler never imports it

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise QrelkitError(f"--device {device}: torch sees no CUDA device on this machine")
    return device


def _checked_pair(path: str | Path, device: str | None = None) -> tuple[Labeler, Labeler]:
    """The student's int8 and fp32 ONNX models: what the checked runtime runs."""
    return load_student(path, runtime="onnx-int8", device=device), load_student(path, runtime="onnx", device=device)


__all__ = [
    "STUDENT_KINDS",
    "Labeler",
    "export_student",
    "load_student",
    "reads_query_context",
    "student_fingerprint",
    "student_kind",
]
