"""Distill: fit a student to a teacher's grades on query–document pairs."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QrelkitError
from .io import Qrels, iter_jsonl
from .models import MINILM_ALIAS
from .records import GRADES, Pair, clip_grade
from .student import Student, distribution_thresholds, fit_head, head_scores

log = logging.getLogger("qrelkit")


def soft_targets(path: str | Path) -> dict[tuple[str, str], float]:
    """Expected grades from a ``judgments.jsonl`` (the teacher's grade distribution), where recorded."""
    out = {}
    for _, row in iter_jsonl(path):
        if row.get("expected") is not None and row.get("grade") is not None:
            out[(str(row["qid"]), str(row["doc_id"]))] = float(row["expected"])
    return out


def grade_distributions(path: str | Path) -> dict[tuple[str, str], list[float]]:
    """P(grade 0..3) per pair from a ``judgments.jsonl``, where the backend returned log-probabilities."""
    out = {}
    for _, row in iter_jsonl(path):
        probs = row.get("probs")
        if row.get("grade") is not None and isinstance(probs, list) and len(probs) == len(GRADES):
            out[(str(row["qid"]), str(row["doc_id"]))] = [float(p) for p in probs]
    return out


PairKey = tuple[str, str]


def ensemble(teachers: Sequence[Qrels]) -> tuple[Qrels, dict[PairKey, float], dict[PairKey, list[float]]]:
    """Several judges as one teacher, on the pairs every judge graded: the rounded mean grade (hard label),
    the mean grade (regression target) and the share of judges giving each grade (soft label)."""
    if not teachers:
        raise QrelkitError("an ensemble needs at least one teacher")
    common = set(teachers[0])
    for t in teachers[1:]:
        common &= set(t)
    hard: Qrels = {}
    mean: dict[PairKey, float] = {}
    dist: dict[PairKey, list[float]] = {}
    for key in common:
        grades = np.clip([t[key] for t in teachers], 0, 3)
        mean[key] = float(grades.mean())
        hard[key] = int(np.floor(mean[key] + 0.5))
        dist[key] = [float((grades == g).mean()) for g in GRADES]
    return hard, mean, dist


def teacher_targets(
    pairs: Sequence[Pair], teacher: Qrels, distribution: dict[PairKey, list[float]] | None = None
) -> tuple[list[Pair], np.ndarray, np.ndarray | None]:
    """What every student trains on: the pairs the teacher graded, their grades (clipped to 0–3) and, when
    ``distribution`` is given, one row of P(grade 0..3) per pair (one-hot where it lacks the pair)."""
    labelled = [p for p in pairs if (p.qid, p.doc_id) in teacher]
    if len(labelled) < 10:
        raise QrelkitError(f"only {len(labelled)} pairs have a teacher grade; need at least 10")
    grades = np.array([clip_grade(teacher[(p.qid, p.doc_id)]) for p in labelled])
    if len(set(grades.tolist())) < 2:
        raise QrelkitError(f"the teacher gave every pair grade {grades[0]}; nothing to learn from")
    if distribution is None:
        return labelled, grades, None
    one_hot = np.eye(len(GRADES))
    rows = [distribution.get((p.qid, p.doc_id), one_hot[g]) for p, g in zip(labelled, grades, strict=True)]
    return labelled, grades, np.array(rows)


def distill(
    pairs: Sequence[Pair],
    teacher: Qrels,
    *,
    soft: dict[tuple[str, str], float] | None = None,
    distribution: dict[tuple[str, str], list[float]] | None = None,
    head: str = "ridge",
    label_smoothing: float = 0.0,
    base: str = MINILM_ALIAS,
    max_length: int = 256,
    seed: int = 0,
    card: dict[str, Any] | None = None,
    student: Student | None = None,
) -> Student:
    """Train a :class:`Student` on the pairs the teacher graded.

    ``head`` (see :func:`qrelkit.student.fit_head`): ``ridge`` regresses ``soft`` (the teacher's expected
    grades) where given, the hard grade otherwise; ``logistic`` classifies 0–3 on ``distribution`` (P(grade)
    per pair) where given, else on hard grades with ``label_smoothing``; ``cosine`` only calibrates the
    encoder's similarity. ``student`` reuses an encoder already loaded (its embedding cache too).

    >>> student = distill(read_pairs("pairs.parquet"), read_qrels("teacher.qrels"))   # doctest: +SKIP
    >>> student.save("model/")                                                          # doctest: +SKIP
    """
    labelled, grades, dist = teacher_targets(pairs, teacher, distribution or None)
    soft = soft or {}
    target = np.array([soft.get((p.qid, p.doc_id), float(g)) for p, g in zip(labelled, grades, strict=True)])
    t0 = time.perf_counter()
    np.random.seed(seed)
    encoder = student or Student.from_base(base, max_length=max_length)
    x = encoder.features([p.query for p in labelled], [p.text for p in labelled])
    fitted = fit_head(x, target, grades, kind=head, distribution=dist, label_smoothing=label_smoothing)
    student = encoder.with_head(fitted)
    student.card.update(card or {})
    student.card.update(
        {
            "head": head,
            "train_pairs": len(labelled),
            "train_queries": len({p.qid for p in labelled}),
            "target": _target_name(head, bool(soft), dist is not None, label_smoothing),
            "seed": seed,
            "epochs": 0,
            "teacher_grade_counts": {g: int((grades == g).sum()) for g in GRADES},
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "train_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return student


def recalibrate(student: Student, pairs: Sequence[Pair], teacher: Qrels) -> Student:
    """The same student with its grade thresholds refit so that its grade shares on ``pairs`` match the
    teacher's there: a head learnt from one source (say synthetic queries graded by a local LLM, whose grade
    scale is its own) is calibrated to another teacher's scale without retraining.

    >>> student = recalibrate(distill(synthetic_pairs, local_grades), pairs, gpt4o_grades)  # doctest: +SKIP
    """
    labelled, grades, _ = teacher_targets(pairs, teacher)
    scores = head_scores(student.head, student.features([p.query for p in labelled], [p.text for p in labelled]))
    head = {**student.head, "thresholds": distribution_thresholds(scores, grades)}
    return student.with_head(head, {"calibrated_on_pairs": len(labelled)})


def _target_name(head: str, soft: bool, distribution: bool, smoothing: float) -> str:
    if head == "cosine":
        return "teacher grade distribution (thresholds only)"
    if head == "logistic":
        if distribution:
            return "teacher grade distribution (soft labels)"
        return f"teacher grade (label smoothing {smoothing})" if smoothing else "teacher grade"
    return "teacher expected grade (soft)" if soft else "teacher grade"
