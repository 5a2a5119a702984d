"""The ``onnx-int8-checked`` runtime: int8 speed with fp32's grades on nearly every pair.

An int8 model's score differs from fp32's by a small noise (MiniLM students: median 0.006 on the 0–3 scale for
the cross-encoder, 0.02 for the frozen one), and a grade only changes where that noise carries a score across
a cut point. So the int8 model scores every pair, and the pairs whose int8 score lies within a margin of a cut
point are scored again in fp32. The margin is a quantile of the int8 error on the embedded probe pairs,
measured by ``qrelkit export`` (kept in ``checked.json``; measured again at load when the student changed since);
it transfers: on 2,000 TREC DL 2023 pairs the error quantiles matched the probe pairs' within 0.001
(cross-encoder).

>>> student = load_student("ce-student/", runtime="onnx-int8-checked")   # doctest: +SKIP
>>> scores, grades = student.predict(queries, docs)                       # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QrelkitError
from ..io import atomic_write_text
from ..records import Pair
from .onnx import CHECKED_RUNTIME, probe_pairs

# The margin: this quantile of |int8 − fp32| on the probe pairs. Measured on 2,000 DL 2023 dev pairs (MiniLM
# cross-encoder / frozen student): 0.5 → 7.5% / 5.6% of pairs rescored, 98.5% / 98.4% same grade as fp32;
# 0.8 → 12.6% / 9.5% rescored, 99.4% / 99.5% same grade; plain int8 95.8% / 95.6%, int8-mixed 97.7% / 97.5%.
CHECK_QUANTILE = 0.8
MARGIN_FILE = "checked.json"  # the margin measured at export, with the student fingerprint it belongs to


class CheckedLabeler:
    """A student's int8 model, with the pairs near a grade cut point graded again by its fp32 model.

    ``fast`` and ``exact`` are the same student folder loaded with the ``onnx-int8`` and ``onnx`` runtimes
    (``load_student(path, runtime="onnx-int8-checked")`` does this, with :func:`int8_margin`); ``margin`` is in
    score units (0–3). ``rescored`` / ``labelled`` count the pairs so far; ``last_rescored`` holds the positions,
    in the last call's pairs, of those graded again in fp32 (for a query-context student, encoded again in fp32 and
    graded among their query's int8-encoded pairs)."""

    def __init__(self, fast: Any, exact: Any, margin: float):
        if exact.thresholds is None:
            raise QrelkitError("a checked runtime needs a student with grade cut points: train it first")
        self.fast, self.exact, self.margin = fast, exact, float(margin)
        self.cut_points = np.asarray(exact.thresholds, dtype=np.float64)
        self.card: dict[str, Any] = {**exact.card, "runtime": CHECKED_RUNTIME, "check_margin": self.margin}
        self.rescored = 0
        self.labelled = 0
        self.last_rescored = np.zeros(0, dtype=int)

    def predict(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and 0–3 grades: int8's, and fp32's for the pairs whose int8 score is near a cut point."""
        if self.query_context:
            return self._predict_in_pools(queries, docs, batch_size)
        scores, grades = self.fast.predict(queries, docs, batch_size=batch_size)
        near = self.near_cut_points(scores)
        if len(near):
            exact_scores, exact_grades = self.exact.predict(
                [queries[i] for i in near], [docs[i] for i in near], batch_size=batch_size
            )
            scores, grades = scores.copy(), grades.copy()
            scores[near], grades[near] = exact_scores, exact_grades
        return self._counted(scores, grades, near)

    def _predict_in_pools(
        self, queries: Sequence[str], docs: Sequence[str], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A query-context student: a near pair is encoded again in fp32, and its pool columns are computed among its
        query's other pairs as int8 encoded them (re-encoding the whole query in fp32 would cost fp32's time: nearly
        every query of a pool has a pair near some cut point)."""
        x, query_emb, doc_emb = self.fast.pair_features(queries, docs, batch_size=batch_size)
        scores = self.fast.score_features(self.fast.with_pool_columns(x, query_emb, doc_emb, queries), queries)
        grades = self.fast.grades_from_scores(scores)
        near = self.near_cut_points(scores)
        if len(near):
            exact = self.exact.pair_features([queries[i] for i in near], [docs[i] for i in near], batch_size=batch_size)
            x, query_emb, doc_emb = x.copy(), query_emb.copy(), doc_emb.copy()
            x[near], query_emb[near], doc_emb[near] = exact
            mixed = self.exact.score_features(self.exact.with_pool_columns(x, query_emb, doc_emb, queries), queries)
            scores, grades = scores.copy(), grades.copy()
            scores[near] = mixed[near]
            grades[near] = self.exact.grades_from_scores(mixed[near])
        return self._counted(scores, grades, near)

    def _counted(self, scores: np.ndarray, grades: np.ndarray, near: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.rescored += len(near)
        self.labelled += len(scores)
        self.last_rescored = near
        return scores, grades

    @property
    def query_context(self) -> bool:
        """Whether the student grades a pair against its query's other pairs (see :attr:`Student.query_context`)."""
        return bool(getattr(self.exact, "query_context", False))

    def predict_pairs(self, pairs: Sequence[Pair], *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        return self.predict([p.query for p in pairs], [p.text for p in pairs], batch_size=batch_size)

    def near_cut_points(self, scores: np.ndarray) -> np.ndarray:
        """Indices of the scores within the margin of a cut point."""
        if not len(scores):
            return np.zeros(0, dtype=int)
        distance = np.abs(np.asarray(scores)[:, None] - self.cut_points[None, :]).min(axis=1)
        return np.flatnonzero(distance < self.margin)

    def clear_cache(self) -> None:
        """Forget both models' cached embeddings (benchmarks time real encoding)."""
        self.fast.clear_cache()
        self.exact.clear_cache()

    def save(self, path: str | Path) -> None:
        raise QrelkitError("a checked runtime only labels: copy the student folder it was loaded from instead")


def save_margin(
    student_dir: str | Path, fingerprint: str, fast: Any, exact: Any, *, quantile: float = CHECK_QUANTILE
) -> Path:
    """Measure the checked runtime's margin (:func:`int8_margin`) and keep it in the student folder with the
    student's ``fingerprint`` (:func:`qrelkit.students.student_fingerprint`), so that loading the runtime (every Ray
    actor, every ``qrelkit label``) does not score the probe pairs twice again."""
    path = Path(student_dir) / MARGIN_FILE
    record = {"quantile": quantile, "margin": int8_margin(fast, exact, quantile=quantile), "student": fingerprint}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def stored_margin(student_dir: str | Path, fingerprint: str, *, quantile: float = CHECK_QUANTILE) -> float | None:
    """The margin :func:`save_margin` kept, or None when there is none, or it was measured at another quantile or
    for another ``fingerprint`` (the student before it was trained again)."""
    path = Path(student_dir) / MARGIN_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("quantile") != quantile or record.get("student") != fingerprint:
        return None
    return float(record["margin"])


def int8_margin(fast: Any, exact: Any, *, quantile: float = CHECK_QUANTILE) -> float:
    """The ``quantile`` of |int8 score − fp32 score| over the embedded probe pairs."""
    probes = probe_pairs()
    queries, docs = [q for q, _ in probes], [d for _, d in probes]
    error = np.abs(fast.predict(queries, docs)[0] - exact.predict(queries, docs)[0])
    return float(np.quantile(error, quantile))
