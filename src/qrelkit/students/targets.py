"""Teacher targets: what every student kind trains on. A teacher is one judge's qrels (with its
``judgments.jsonl`` sidecar adding expected grades and P(grade) where the backend gave log-probabilities) or
several judges' qrels combined as an ensemble.

>>> teacher = load_teacher(["gpt4o.qrels", "llama.qrels"])      # doctest: +SKIP
>>> pairs, grades, dist = teacher_targets(pairs, teacher.grades, teacher.distribution)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QrelkitError
from ..io import Qrels, iter_jsonl, judgments_file, read_qrels
from ..records import GRADES, Pair, PairKey, clip_grade


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


@dataclass
class Teacher:
    """A teacher as students read it: hard grades, and where known the expected grade and P(grade) per pair."""

    grades: Qrels
    soft: dict[PairKey, float] | None = None
    distribution: dict[PairKey, list[float]] | None = None
    card: dict[str, Any] = field(default_factory=dict)


def load_teacher(
    teacher: str | Path | Sequence[str | Path], *, judgments: str | Path | None = None, duplicates: str = "error"
) -> Teacher:
    """One qrels file (plus its judgments sidecar, or ``judgments``, when present) or several as an ensemble;
    ``duplicates``: see :func:`qrelkit.io.read_qrels`."""
    paths = [Path(teacher)] if isinstance(teacher, str | Path) else [Path(t) for t in teacher]
    if not paths:
        raise QrelkitError("distill needs at least one teacher qrels file")
    card: dict[str, Any] = {"teacher_qrels": ", ".join(map(str, paths))}
    if len(paths) > 1:
        grades, soft, dist = ensemble([read_qrels(p, duplicates=duplicates) for p in paths])
        card["teacher"] = f"ensemble of {len(paths)} judges"
        return Teacher(grades, soft, dist, card)
    out = Teacher(read_qrels(paths[0], duplicates=duplicates), card=card)
    jpath = Path(judgments) if judgments else judgments_file(paths[0])
    if jpath.exists():
        out.soft, out.distribution = soft_targets(jpath) or None, grade_distributions(jpath) or None
        first: dict[str, Any] = next((json.loads(line) for line in jpath.open() if line.strip()), {})
        card.update({"teacher": first.get("model"), "teacher_prompt": first.get("prompt_id")})
    return out


def sample_by_query(pairs: Sequence[Pair], n: int, seed: int) -> list[int]:
    """Indices of ``n`` pairs drawn round-robin across queries (each query's own order shuffled)."""
    rng = random.Random(seed)
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_query[p.qid].append(i)
    queues = list(by_query.values())
    for q in queues:
        rng.shuffle(q)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        layer = [q[depth] for q in queues if depth < len(q)]
        if not layer:
            break
        rng.shuffle(layer)
        chosen.extend(layer[: n - len(chosen)])
        depth += 1
    return chosen


def split_by_query(pairs: Sequence[Pair], held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the pairs to train on and of the pairs of a random ``held_out`` share of the queries (at least
    one query on each side): query-disjoint, so a head fitted on the held-out side sees the student's scores as on
    new queries."""
    qids = sorted({p.qid for p in pairs})
    if len(qids) < 2 or not 0 < held_out < 1:
        raise QrelkitError(f"holding out a share in (0, 1) of the queries needs at least 2 (got {len(qids)})")
    n_out = min(len(qids) - 1, max(1, round(held_out * len(qids))))
    out = set(random.Random(seed).sample(qids, n_out))
    train = [i for i, p in enumerate(pairs) if p.qid not in out]
    return train, [i for i, p in enumerate(pairs) if p.qid in out]
