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
from .records import GRADES, Pair
from .student import Student, fit_head

log = logging.getLogger("qrelkit")


def soft_targets(path: str | Path) -> dict[tuple[str, str], float]:
    """Expected grades from a ``judgments.jsonl`` (the teacher's grade distribution), where recorded."""
    out = {}
    for _, row in iter_jsonl(path):
        if row.get("expected") is not None and row.get("grade") is not None:
            out[(str(row["qid"]), str(row["doc_id"]))] = float(row["expected"])
    return out


def distill(
    pairs: Sequence[Pair],
    teacher: Qrels,
    *,
    soft: dict[tuple[str, str], float] | None = None,
    base: str = MINILM_ALIAS,
    max_length: int = 256,
    seed: int = 0,
    card: dict[str, Any] | None = None,
) -> Student:
    """Train a :class:`Student` on the pairs the teacher graded.

    ``soft`` (the teacher's expected grades) is the regression target where given; the hard grade otherwise.

    >>> student = distill(read_pairs("pairs.parquet"), read_qrels("teacher.qrels"))   # doctest: +SKIP
    >>> student.save("model/")                                                          # doctest: +SKIP
    """
    labelled = [p for p in pairs if (p.qid, p.doc_id) in teacher]
    if len(labelled) < 10:
        raise QrelkitError(f"only {len(labelled)} pairs have a teacher grade; need at least 10")
    grades = np.array([min(teacher[(p.qid, p.doc_id)], 3) for p in labelled])
    if len(set(grades.tolist())) < 2:
        raise QrelkitError(f"the teacher gave every pair grade {grades[0]}; nothing to learn from")
    soft = soft or {}
    target = np.array([soft.get((p.qid, p.doc_id), float(g)) for p, g in zip(labelled, grades, strict=True)])
    t0 = time.perf_counter()
    np.random.seed(seed)
    student = Student.from_base(base, max_length=max_length)
    x = student.features([p.query for p in labelled], [p.text for p in labelled])
    student.head = fit_head(x, target, grades)
    student.card.update(card or {})
    student.card.update(
        {
            "train_pairs": len(labelled),
            "train_queries": len({p.qid for p in labelled}),
            "target": "teacher expected grade (soft)" if soft else "teacher grade",
            "seed": seed,
            "epochs": 0,
            "teacher_grade_counts": {g: int((grades == g).sum()) for g in GRADES},
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "train_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return student
