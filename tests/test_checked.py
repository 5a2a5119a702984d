"""The onnx-int8-checked runtime's rule on stand-in models: int8 grades everything, fp32 grades again the
pairs whose int8 score lies within the margin of a cut point."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from qrelkit.errors import QrelkitError
from qrelkit.io import write_pairs
from qrelkit.label import label_file_stream, label_pairs
from qrelkit.records import Pair
from qrelkit.students.checked import MARGIN_FILE, CheckedLabeler, int8_margin, save_margin, stored_margin
from qrelkit.students.grading import grades_from_thresholds
from qrelkit.students.onnx import probe_pairs


class Model:
    """A labeler whose score of a passage is the number it spells, plus ``offset``; it records what it scored."""

    def __init__(self, offset: float = 0.0, thresholds: list[float] | None = None):
        self.offset, self.thresholds, self.card = offset, thresholds or [0.5, 1.5, 2.5], {"base": "stand-in"}
        self.scored: list[list[str]] = []
        self.cleared = 0

    def predict(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64):
        self.scored.append(list(docs))
        scores = np.array([float(d) + self.offset for d in docs])
        return scores, grades_from_thresholds(self.thresholds, scores)

    def predict_pairs(self, pairs: Sequence[Pair], *, batch_size: int = 64):
        return self.predict([p.query for p in pairs], [p.text for p in pairs], batch_size=batch_size)

    def clear_cache(self) -> None:
        self.cleared += 1


def test_pairs_near_a_cut_point_get_the_exact_grade_and_only_they_are_scored_again():
    docs = ["0.45", "0.9", "1.43", "2.0", "2.47"]
    exact, fast = Model(), Model(offset=0.06)  # int8 reads every score 0.06 high
    labeler = CheckedLabeler(fast, exact, margin=0.1)
    scores, grades = labeler.predict(["q"] * len(docs), docs)
    # int8 scores 0.51, 0.96, 1.49, 2.06, 2.53: the first, third and fifth lie within 0.1 of 0.5, 1.5 and 2.5
    assert exact.scored == [["0.45", "1.43", "2.47"]]
    np.testing.assert_allclose(scores, [0.45, 0.96, 1.43, 2.06, 2.47])
    assert grades.tolist() == [0, 1, 1, 2, 2] == exact.predict([""] * 5, docs)[1].tolist()
    assert fast.predict([""] * 5, docs)[1].tolist() == [1, 1, 1, 2, 3], "plain int8 gets two grades wrong"
    assert (labeler.rescored, labeler.labelled) == (3, 5)
    assert labeler.card["runtime"] == "onnx-int8-checked" and labeler.card["check_margin"] == 0.1
    # a narrower margin rescores less and keeps int8's errors beyond it
    narrow = CheckedLabeler(Model(offset=0.06), Model(), margin=0.02)
    assert narrow.predict(["q"] * len(docs), docs)[1].tolist() == [0, 1, 1, 2, 3]
    assert narrow.rescored == 2


class PoolModel(Model):
    """A query-context stand-in: a pair's own score is its number (plus ``offset``), and its grade also reads the
    mean own score of the other pairs of its query (a tenth of it), as a frozen student's pool columns do."""

    query_context = True

    def pair_features(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64):
        self.scored.append(list(docs))
        own = np.array([[float(d) + self.offset] for d in docs])
        return own, np.zeros((len(docs), 2)), np.zeros((len(docs), 2))

    def with_pool_columns(self, x, query_emb, doc_emb, queries):
        others = [
            np.mean([x[j, 0] for j, o in enumerate(queries) if o == q and j != i] or [0.0])
            for i, q in enumerate(queries)
        ]
        return np.column_stack([x[:, 0], others])

    def score_features(self, x, queries=None):
        return x[:, 0] + 0.1 * x[:, 1]

    def grades_from_scores(self, scores):
        return grades_from_thresholds(self.thresholds, scores)


def test_a_query_context_student_encodes_only_the_near_pairs_again_and_grades_them_in_their_int8_pool():
    docs = ["0.4", "1.0", "1.4", "2.0", "2.3"]
    queries = ["a", "a", "b", "c", "c"]
    exact, fast = PoolModel(), PoolModel(offset=0.08)  # int8 reads every passage 0.08 high
    labeler = CheckedLabeler(fast, exact, margin=0.1)
    scores, grades = labeler.predict(queries, docs)
    # int8: a 0.48+0.108=0.588 and 1.08+0.048=1.128; b 1.48; c 2.08+0.238=2.318 and 2.38+0.208=2.588
    # near a cut point (0.5, 1.5, 2.5) within 0.1: the first of a, b, the second of c
    assert exact.scored == [["0.4", "1.4", "2.3"]], "fp32 encodes only the near pairs, not their whole queries"
    # each near pair: its own fp32 score, and its query's other pairs as int8 read them
    np.testing.assert_allclose(scores, [0.4 + 0.108, 1.128, 1.4, 2.318, 2.3 + 0.208])
    assert grades.tolist() == [1, 1, 1, 2, 3]  # 0.508, 1.128, 1.4, 2.318, 2.508
    assert labeler.last_rescored.tolist() == [0, 2, 4] and (labeler.rescored, labeler.labelled) == (3, 5)


def test_a_labeling_run_says_how_many_pairs_it_graded_again_in_fp32(tmp_path):
    docs = ["0.45", "0.9", "1.43", "2.0", "2.47"]
    pairs = [Pair(qid="q", query="q", doc_id=f"d{i}", text=d) for i, d in enumerate(docs)]
    write_pairs(tmp_path / "pairs.parquet", pairs)
    folder = tmp_path / "student"  # what the checkpoint's identity reads; the labeler itself is passed in
    folder.mkdir()
    (folder / "student.json").write_text('{"kind": "cross-encoder"}')
    labeler = CheckedLabeler(Model(offset=0.06), Model(), margin=0.1)
    labeler.predict(["q"], ["0.5"])  # pairs graded before the run are not the run's
    stats = label_file_stream(
        tmp_path / "pairs.parquet", folder, tmp_path / "labels.qrels", runtime="onnx-int8-checked", chunk=2,
        show_progress=False, student=labeler,
    )  # fmt: skip
    assert stats["pairs"] == 5 and stats["rescored_in_fp32"] == 3  # the three int8 scores near 0.5, 1.5 and 2.5
    plain = CheckedLabeler(Model(offset=0.06), Model(), margin=0.0)
    stats = label_file_stream(
        tmp_path / "pairs.parquet", folder, tmp_path / "plain.qrels", runtime="onnx-int8-checked", show_progress=False,
        student=plain,
    )  # fmt: skip
    assert stats["rescored_in_fp32"] == 0
    # in memory too, counting only this call's pairs (the labeler above graded three again already)
    _, grades, stats = label_pairs(pairs[:3], labeler, chunk=2, show_progress=False)
    assert stats["rescored_in_fp32"] == 2 and grades.tolist() == [0, 1, 1]
    assert "rescored_in_fp32" not in label_pairs(pairs, Model(), show_progress=False)[2]


def test_a_ray_actor_marks_the_pairs_it_graded_again_in_fp32():
    from qrelkit.label_ray import StudentScorer

    docs = ["0.45", "0.9", "1.43", "2.0", "2.47"]
    scorer = object.__new__(StudentScorer)  # the actor without loading a student folder
    scorer.student, scorer.batch_size = CheckedLabeler(Model(offset=0.06), Model(), margin=0.1), 64
    batch = {"qid": np.array(["q"] * 5), "doc_id": np.array([f"d{i}" for i in range(5)]), "query": np.array(["q"] * 5)}
    out = scorer({**batch, "text": np.array(docs)})
    assert out["rescored"].tolist() == [True, False, True, False, True] and out["grade"].tolist() == [0, 1, 1, 2, 2]
    scorer.student = Model()  # any other runtime: no such column
    assert "rescored" not in scorer({**batch, "text": np.array(docs)})


def test_no_pairs_no_fp32_call_and_clear_cache_reaches_both_models():
    exact, fast = Model(), Model(offset=0.01)
    labeler = CheckedLabeler(fast, exact, margin=0.5)
    scores, grades = labeler.predict([], [])
    assert len(scores) == len(grades) == 0 and exact.scored == []
    labeler.clear_cache()
    assert fast.cleared == exact.cleared == 1
    with pytest.raises(QrelkitError, match="only labels"):
        labeler.save("anywhere")
    untrained = Model()
    untrained.thresholds = None  # type: ignore[assignment]
    with pytest.raises(QrelkitError, match="grade cut points"):
        CheckedLabeler(fast, untrained, margin=0.1)


def test_the_margin_is_a_quantile_of_the_int8_error_on_the_probe_pairs():
    class Noisy(Model):
        def predict(self, queries, docs, *, batch_size=64):
            noise = np.array([zlib.crc32(d.encode()) % 1000 / 1000 * 0.02 for d in docs])
            return np.zeros(len(docs)) + noise, np.zeros(len(docs), dtype=int)

    class Zero(Model):
        def predict(self, queries, docs, *, batch_size=64):
            return np.zeros(len(docs)), np.zeros(len(docs), dtype=int)

    fast = Noisy()
    errors = fast.predict([], [d for _, d in probe_pairs()])[0]
    assert int8_margin(fast, Zero(), quantile=0.8) == pytest.approx(float(np.quantile(errors, 0.8)))
    assert 0 < int8_margin(fast, Zero(), quantile=0.5) < int8_margin(fast, Zero(), quantile=0.8) <= 0.02


def test_the_margin_kept_at_export_serves_only_the_student_it_was_measured_for(tmp_path):
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "head.json").write_text('{"kind": "cosine"}')
    from qrelkit.students import student_fingerprint

    assert stored_margin(folder, student_fingerprint(folder)) is None  # never measured: measured at load

    class Constant(Model):
        def predict(self, queries, docs, *, batch_size=64):
            return np.full(len(docs), self.offset), np.zeros(len(docs), dtype=int)

    fast, exact = Constant(offset=0.03), Constant()  # every probe's int8 score is 0.03 off
    path = save_margin(folder, student_fingerprint(folder), fast, exact)
    assert path == folder / MARGIN_FILE and stored_margin(folder, student_fingerprint(folder)) == pytest.approx(0.03)
    assert stored_margin(folder, student_fingerprint(folder), quantile=0.5) is None  # measured at another quantile
    (folder / "head.json").write_text('{"kind": "ridge"}')  # trained again since the export
    assert stored_margin(folder, student_fingerprint(folder)) is None
