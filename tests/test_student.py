from __future__ import annotations

import numpy as np
import pytest
from topics import TOPICS, topic_pairs

from qrelkit.distill import distill, ensemble, recalibrate
from qrelkit.errors import QrelkitError
from qrelkit.student import FEATURES, Student, distribution_thresholds, fit_head, head_scores


@pytest.mark.slow
def test_student_learns_teacher_and_generalises_to_unseen_queries(tmp_path):
    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    student = distill(train, teacher, card={"teacher": "test"})
    test, truth = topic_pairs(names[5:])
    scores, grades = student.predict_pairs(test)
    gold = np.array([truth[(p.qid, p.doc_id)] for p in test])
    assert scores[gold == 3].min() > scores[gold == 0].max(), "own documents must outrank the others"
    assert (grades[gold == 3] >= 2).all()
    assert (grades[gold == 0] == 0).mean() > 0.8
    student.save(tmp_path / "model")
    again = Student.load(tmp_path / "model")
    np.testing.assert_allclose(again.predict_pairs(test)[0], scores, rtol=1e-5)
    assert "teacher" in (tmp_path / "model" / "README.md").read_text()


@pytest.mark.slow
def test_recalibrate_moves_thresholds_to_another_teachers_grade_shares():
    pairs, teacher = topic_pairs(list(TOPICS))
    student = distill(pairs, teacher, head="ridge")
    _, before = student.predict_pairs(pairs)
    assert (before == 0).mean() == pytest.approx(7 / 8)  # the teacher's shares: one own document in eight
    # a lenient teacher: each own document 3, the next topic's document 1, the rest 0
    names = list(TOPICS)
    lenient = {(q, d): 3 if q == d else (1 if names.index(d) == (names.index(q) + 1) % 8 else 0) for q, d in teacher}
    calibrated = recalibrate(student, pairs, lenient)
    _, after = calibrated.predict_pairs(pairs)
    assert (after == 0).mean() == pytest.approx(6 / 8, abs=1 / 64)
    assert (
        student.head["thresholds"] != calibrated.head["thresholds"] and student.head["coef"] == calibrated.head["coef"]
    )
    assert all(after[i] >= 2 for i, p in enumerate(pairs) if p.qid == p.doc_id)  # the ranking is untouched


def test_distribution_thresholds_match_teacher_shares():
    scores = np.linspace(0, 3, 100)
    grades = np.array([0] * 50 + [1] * 25 + [2] * 15 + [3] * 10)
    t = distribution_thresholds(scores, grades)
    cut = np.searchsorted(t, scores, side="right")
    assert [int((cut == g).sum()) for g in range(4)] == [50, 25, 15, 10]


@pytest.mark.slow
@pytest.mark.parametrize("head", ["logistic", "cosine"])
def test_every_head_separates_unseen_queries_and_survives_save(tmp_path, head):
    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    student = distill(train, teacher, head=head, label_smoothing=0.1 if head == "logistic" else 0.0)
    assert student.head["kind"] == head and student.card["head"] == head
    test, truth = topic_pairs(names[5:])
    scores, grades = student.predict_pairs(test)
    gold = np.array([truth[(p.qid, p.doc_id)] for p in test])
    assert scores[gold == 3].min() > scores[gold == 0].max()
    assert (grades[gold == 0] == 0).mean() > 0.8
    student.save(tmp_path / head)
    np.testing.assert_allclose(Student.load(tmp_path / head).predict_pairs(test)[0], scores, rtol=1e-5)


def test_logistic_head_learns_soft_labels_as_expected_grades():
    # one feature; the soft target says a high value means grade 3 with p 0.5 and grade 2 with p 0.5
    rng = np.random.default_rng(0)
    x = np.zeros((400, len(FEATURES)))
    x[:, 0] = np.r_[rng.normal(0, 0.1, 200), rng.normal(1, 0.1, 200)]
    grades = np.r_[np.zeros(200, int), np.full(200, 3)]
    dist = np.r_[np.tile([1.0, 0, 0, 0], (200, 1)), np.tile([0, 0, 0.5, 0.5], (200, 1))]
    soft = fit_head(x, grades.astype(float), grades, kind="logistic", distribution=dist)
    hard = fit_head(x, grades.astype(float), grades, kind="logistic")
    high = x[200:]
    assert head_scores(soft, high).mean() == pytest.approx(2.5, abs=0.1)
    assert head_scores(hard, high).mean() == pytest.approx(3.0, abs=0.1)
    assert head_scores(soft, x[:200]).mean() == pytest.approx(0.0, abs=0.1)


def test_unknown_head_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(20, len(FEATURES)))
    with pytest.raises(QrelkitError, match="unknown head"):
        fit_head(x, np.zeros(20), np.r_[np.zeros(10, int), np.ones(10, int)], kind="mlp")


def test_ensemble_of_judges_gives_mean_rounded_grade_and_shares():
    a = {("q", "d1"): 3, ("q", "d2"): 0, ("q", "d3"): 1}
    b = {("q", "d1"): 2, ("q", "d2"): 0, ("q", "d3"): 5}  # 5 is clipped to 3
    c = {("q", "d1"): 2, ("q", "d2"): 1}
    hard, mean, dist = ensemble([a, b, c])
    assert set(hard) == {("q", "d1"), ("q", "d2")}  # only pairs every judge graded
    assert mean[("q", "d1")] == pytest.approx(7 / 3) and hard[("q", "d1")] == 2
    assert dist[("q", "d2")] == pytest.approx([2 / 3, 1 / 3, 0, 0])
    _, mean2, _ = ensemble([a, b])
    assert mean2[("q", "d3")] == 2.0


@pytest.mark.slow
def test_causal_lora_student_trains_saves_and_loads(tmp_path):
    """Mechanics only: on 2 CPU cores a 135M model gets a handful of LoRA steps here (≈6 s each), too few to
    learn relevance; its quality is measured on a GPU (benchmarks), not in unit tests."""
    from qrelkit.causal_student import CausalStudent, distill_causal

    train, teacher = topic_pairs(list(TOPICS)[:2])
    before = CausalStudent.from_base("smollm2-135m", device="cpu")
    p0 = before.grade_probs([p.query for p in train], [p.text for p in train])
    assert p0.shape == (16, 4) and np.allclose(p0.sum(axis=1), 1.0)
    student = distill_causal(train, teacher, base="smollm2-135m", epochs=2, lr=1e-3, device="cpu")
    losses = student.card["losses"]
    assert losses[1] < losses[0], losses  # the adapter trains: cross-entropy with the teacher falls
    scores, grades = student.predict_pairs(train)
    p1 = student.grade_probs([p.query for p in train], [p.text for p in train])
    assert np.abs(p1 - p0).max() > 0.05  # the adapter changes the grade distribution
    # thresholds reproduce the teacher's shares (2 of 16 pairs are grade 3) on the training pairs
    assert ((grades == 3).sum(), (grades == 0).sum()) == (2, 14)
    student.save(tmp_path / "causal")
    again = CausalStudent.load(tmp_path / "causal", device="cpu")
    np.testing.assert_allclose(again.predict_pairs(train)[0], scores, atol=1e-4)
    assert again.card["train_pairs"] == 16
    with pytest.raises(QrelkitError, match="not a qrelkit causal student"):
        CausalStudent.load(tmp_path)


def test_strip_query_echoes_removes_standalone_and_repeated_copies_only():
    from qrelkit.student import strip_query_echoes

    doc = "This passage answers the question: Lost ID-badge? Parking permits are issued by facilities."
    assert (
        strip_query_echoes("lost id badge", doc)
        == "Parking permits are issued by facilities."  # the lead-in sentence goes with the copy
    )
    # a copy inside a sentence is how relevant passages talk: it stays (and the text is the same object)
    answer = "The guest wifi password changes weekly and is posted at reception."
    assert strip_query_echoes("guest wifi password", answer) is answer
    assert strip_query_echoes("vpn", "vpn. vpn. vpn client") == "vpn. vpn. vpn client"  # one content word: left alone
    repeated = "Lost id badge lost id badge lost id badge: parking permits are issued by facilities."
    assert strip_query_echoes("lost id badge", repeated) == "Lost id badge : parking permits are issued by facilities."


@pytest.mark.slow
def test_keyword_stuffing_does_not_raise_the_defended_students_grades():
    names = list(TOPICS)
    train, teacher = topic_pairs(names)
    defended = distill(train, teacher)
    assert defended.card["strip_query_echoes"] is True
    naive = defended.with_head(defended.head, {"strip_query_echoes": False})
    irrelevant = [p for p in train if teacher[(p.qid, p.doc_id)] == 0]
    stuffed = [
        p.model_copy(update={"text": f"This passage answers the question: {p.query}. {p.text}"}) for p in irrelevant
    ]
    s_clean, g_clean = defended.predict_pairs(irrelevant)
    s_stuffed, g_stuffed = defended.predict_pairs(stuffed)
    assert (g_stuffed > g_clean).sum() == 0
    assert (s_stuffed <= s_clean + 0.05).all(), "a copy of the query adds nothing to the defended score"
    _, g_naive = naive.predict_pairs(stuffed)
    assert (g_naive > naive.predict_pairs(irrelevant)[1]).sum() > len(irrelevant) // 2, "undefended, stuffing works"
