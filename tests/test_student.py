from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest
from topics import TOPICS, topic_pairs

from qrelkit.distill import distill, recalibrate
from qrelkit.errors import QrelkitError
from qrelkit.students.encoder import (
    FEATURES,
    LATE_FEATURES,
    SMALL_POOL,
    Student,
    fit_head,
    head_scores,
    late_interaction,
    onto_cut_points,
)
from qrelkit.students.grading import (
    clip_for_tokens,
    clip_words,
    distribution_thresholds,
    grades_from_thresholds,
    is_content_piece,
)
from qrelkit.students.targets import ensemble


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
@pytest.mark.parametrize("head", ["logistic", "cosine", "boosted", "spline", "ridge"])
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


def test_boosted_head_learns_an_interaction_a_ridge_cannot_and_predicts_as_scikit_learn():
    from sklearn.ensemble import GradientBoostingRegressor

    # grade 3 only where the passage is on topic AND matches every query term; either alone is grade 0
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(2000, len(FEATURES)))
    both = (x[:, 0] > 0.5) & (x[:, 1] > 0.5)
    grades = np.where(both, 3, 0)
    boosted = fit_head(x, grades.astype(float), grades, kind="boosted")
    ridge = fit_head(x, grades.astype(float), grades, kind="ridge")
    one_only = (x[:, 0] > 0.5) ^ (x[:, 1] > 0.5)
    assert head_scores(boosted, x[one_only]).max() < 1.0 < head_scores(boosted, x[both]).min()
    assert head_scores(ridge, x[one_only]).max() > 1.0  # a sum of weights cannot tell one half from both
    assert (grades_from_thresholds(boosted["thresholds"], head_scores(boosted, x)) == grades).mean() > 0.99
    # the head stored as arrays scores as the fitted scikit-learn model does
    z = (x - np.asarray(boosted["mean"])) / np.asarray(boosted["scale"])
    model = GradientBoostingRegressor(
        n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, min_samples_leaf=5, random_state=0
    ).fit(z, grades.astype(float))
    np.testing.assert_allclose(head_scores(boosted, x), np.clip(model.predict(z), 0, 3), atol=1e-9)


def test_spline_head_learns_a_curve_a_line_cannot_and_predicts_as_scikit_learn():
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import SplineTransformer

    # relevant only past a cosine of 0.6, whatever the rest: a step a straight line can only slope through
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(3000, len(FEATURES)))
    grades = np.where(x[:, 0] > 0.6, 3, 0)
    spline = fit_head(x, grades.astype(float), grades, kind="spline")
    ridge = fit_head(x, grades.astype(float), grades, kind="ridge")
    low, high = x[:, 0] < 0.5, x[:, 0] > 0.7
    assert head_scores(spline, x[low]).max() < 0.5 and head_scores(spline, x[high]).min() > 2.5
    assert head_scores(ridge, x[low]).max() > 0.5  # a line through a step misses both plateaus
    # smooth: a small change of a feature (an int8 error, say) moves the score a little
    nudged = x + 0.002
    assert np.abs(head_scores(spline, nudged) - head_scores(spline, x))[~(np.abs(x[:, 0] - 0.6) < 0.1)].max() < 0.05
    # the head stored as knots and weights scores as the fitted scikit-learn model does, inside and beyond the range
    z = (x - np.asarray(spline["mean"])) / np.asarray(spline["scale"])
    bases = SplineTransformer(n_knots=5, degree=3).fit(z)
    model = Ridge(alpha=1.0).fit(bases.transform(z), grades.astype(float))
    wide = np.r_[x, x * 3 - 1]  # rows far outside the training range: each curve stays at its end value
    zw = (wide - np.asarray(spline["mean"])) / np.asarray(spline["scale"])
    np.testing.assert_allclose(head_scores(spline, wide), np.clip(model.predict(bases.transform(zw)), 0, 3), atol=1e-9)
    # a feature constant in training (no query had stop words only, say) gets no curve, and no error
    x[:, 2] = 1.0
    flat = fit_head(x, grades.astype(float), grades, kind="spline")
    assert flat["knots"][2] is None and head_scores(flat, x[high]).min() > 2.5


def test_unknown_head_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(20, len(FEATURES)))
    with pytest.raises(QrelkitError, match="unknown head"):
        fit_head(x, np.zeros(20), np.r_[np.zeros(10, int), np.ones(10, int)], kind="mlp")


def test_an_untrained_student_says_so_instead_of_grading():
    untrained = Student(encoder=None, head={})
    with pytest.raises(QrelkitError, match="no trained head"):
        untrained.score_features(np.zeros((1, len(FEATURES))))
    with pytest.raises(QrelkitError, match="no grade cut points"):
        untrained.grades_from_scores(np.array([1.5]))


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
def test_causal_lora_student_trains_saves_loads_and_exports_merged(tmp_path):
    """Mechanics on CPU with SmolLM2-135M: a few LoRA steps (too few to learn relevance; quality is measured on
    a GPU by benchmarks/gpu_student.sh), save/load, and a merged export that plain transformers loads."""
    import torch
    from transformers import AutoModelForCausalLM

    from qrelkit.students import load_student, student_kind
    from qrelkit.students.causal import CausalStudent, distill_causal, export_merged

    train, teacher = topic_pairs(list(TOPICS)[:2])
    before = CausalStudent.from_base("gguf:smollm2-135m", device="cpu")
    assert before.card["chat_template"]  # an instruct base: the prompt goes through its chat template
    p0 = before.grade_probs([p.query for p in train], [p.text for p in train])
    assert p0.shape == (16, 4) and np.allclose(p0.sum(axis=1), 1.0)
    student = distill_causal(
        train, teacher, base="smollm2-135m", epochs=3, learning_rate=1e-3, batch_size=4, device="cpu"
    )
    training = student.card["training"]
    assert training["steps"] == 12 and training["train_loss"] > 0
    scores, grades = student.predict_pairs(train)
    p1 = student.grade_probs([p.query for p in train], [p.text for p in train])
    assert np.abs(p1 - p0).max() > 0.05  # the adapter changes the grade distribution
    # the adapter learns the teacher: the mean P(teacher's grade) on its training pairs rises
    taught = np.array([teacher[(p.qid, p.doc_id)] for p in train])
    assert p1[np.arange(16), taught].mean() > p0[np.arange(16), taught].mean() + 0.05
    # thresholds reproduce the teacher's shares (2 of 16 pairs are grade 3) on the training pairs
    assert ((grades == 3).sum(), (grades == 0).sum()) == (2, 14)
    student.save(tmp_path / "causal")
    assert student_kind(tmp_path / "causal") == "causal"
    again = load_student(tmp_path / "causal", device="cpu")
    np.testing.assert_allclose(again.predict_pairs(train)[0], scores, atol=1e-4)
    assert again.card["train_pairs"] == 16
    # merged: a plain transformers folder (what vllm serves) that is also a student folder, without peft
    merged = export_merged(tmp_path / "causal")
    plain = AutoModelForCausalLM.from_pretrained(merged)
    assert not hasattr(plain, "peft_config")
    texts = student.prompt_texts([train[0].query], [train[0].text])
    ids = student.tokenizer(texts, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = plain(**ids).logits[0, -1, student.grade_ids]
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), p1[0], atol=1e-3)
    from_merged = load_student(merged, device="cpu")
    np.testing.assert_allclose(from_merged.predict_pairs(train)[0], scores, atol=1e-3)
    # served through the judge's logprobs path (what vLLM + `qrelkit judge --prompt causal-grade` does), the
    # merged student gives the same P(grade) on passages shorter than both limits
    from qrelkit.judge import Judge
    from qrelkit.llm import get_llm

    judged = Judge(get_llm(f"hf:{merged}"), prompt="causal-grade").judge(train[:3], show_progress=False)
    served = {(j.qid, j.doc_id): j.probs for j in judged}
    np.testing.assert_allclose([served[(p.qid, p.doc_id)] for p in train[:3]], p1[:3], atol=2e-3)
    with pytest.raises(QrelkitError, match="not a qrelkit"):
        CausalStudent.load(tmp_path)


@pytest.mark.slow
def test_causal_student_training_stops_on_its_time_budget_and_resumes(tmp_path):
    from qrelkit.students.causal import CausalStudent, pad_left

    train, teacher = topic_pairs(list(TOPICS)[:2])
    targets = np.eye(4)[[teacher[(p.qid, p.doc_id)] for p in train]]
    ckpt = tmp_path / "ckpt"
    first = CausalStudent.from_base("smollm2-135m", device="cpu").fit(
        train, targets, epochs=50, batch_size=4, checkpoint_dir=ckpt, time_budget_s=0.1, save_steps=2
    )
    assert first["stopped_by_time_budget"] and first["steps"] < 200
    second = CausalStudent.from_base("smollm2-135m", device="cpu").fit(
        train,
        targets,
        epochs=50,
        batch_size=4,
        checkpoint_dir=ckpt,
        time_budget_s=0.1,
        save_steps=2,
        gradient_checkpointing=True,
    )
    assert second["resumed_from"] and second["steps"] > first["steps"]
    batch = pad_left([[5, 6, 7], [8]], 0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_strip_query_echoes_removes_standalone_and_repeated_copies_only():
    from qrelkit.students.grading import strip_query_echoes

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


def test_old_module_paths_still_import_with_a_deprecation_warning() -> None:
    import importlib

    from qrelkit.students import causal, encoder, onnx

    for old, new, name in (
        ("qrelkit.student", encoder, "Student"),
        ("qrelkit.onnx_runtime", onnx, "export_onnx"),
        ("qrelkit.causal_student", causal, "CausalStudent"),
    ):
        module = importlib.import_module(old)
        with pytest.warns(DeprecationWarning, match=new.__name__):
            assert getattr(module, name) is getattr(new, name)


@pytest.mark.slow
def test_cli_distills_labels_with_and_exports_a_causal_student(tmp_path, qrelkit_here):
    import json

    from qrelkit.io import read_qrels, write_pairs, write_qrels
    from qrelkit.students import student_kind

    pairs, teacher = topic_pairs(list(TOPICS)[:2])
    write_pairs(tmp_path / "pairs.parquet", pairs)
    write_qrels(tmp_path / "teacher.qrels", ((q, d, g) for (q, d), g in teacher.items()))
    run = qrelkit_here

    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "lm", "--student", "causal", "--batch-size", "8")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["base"] == "gguf:smollm2-135m" and summary["train_pairs"] == 16
    assert student_kind(tmp_path / "lm") == "causal" and not (tmp_path / "lm.ckpt").exists()
    r = run("label", "pairs.parquet", "-m", "lm", "-o", "labels.qrels")
    assert r.returncode == 0, r.stderr
    assert set(read_qrels(tmp_path / "labels.qrels")) == set(teacher)
    r = run("export", "lm")
    assert r.returncode == 0, r.stderr
    assert student_kind(tmp_path / json.loads(r.stdout)["merged"]) == "causal"
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "x", "--student", "causal", "--learning-rate", "0")
    assert r.returncode == 2 and "--learning-rate must be at least" in r.stderr


def test_late_interaction_features_match_each_query_piece_to_its_best_passage_token():
    e = np.eye(4, dtype=np.float16)
    query = e[[0, 1]]  # two content pieces
    exact = late_interaction([query], [e[[3, 1, 0]]])[0]
    assert exact.tolist() == [1.0, 1.0, 1.0, 1.0]
    half = late_interaction([query], [e[[0, 2]]])[0]  # one piece found, the other orthogonal to every token
    assert half.tolist() == [0.5, 0.0, 0.5, 0.5]
    assert late_interaction([query, query], [e[:0], e[[2]]]).tolist() == [[0.0] * 4] * 2


def test_content_pieces_are_word_continuations_and_words_that_are_not_stop_words():
    assert [is_content_piece(p) for p in ["vpn", "##ing", "the", "?", "[CLS]", "▁Router", "Ġof"]] == [
        True,
        True,
        False,
        False,
        False,
        True,
        False,
    ]


@pytest.mark.slow
def test_late_interaction_separates_a_passage_that_matches_every_query_part():
    student = Student.from_base(strip_echoes=False, late_interaction=True)
    query = "reset router admin password"
    docs = [
        "To reset the admin password of your router, hold its reset button for ten seconds.",
        "Routers forward packets between networks.",
        "the of and a to",
    ]
    x = student.features([query] * 3, docs)
    assert x.shape == (3, len(FEATURES) + len(LATE_FEATURES))
    late = dict(zip(LATE_FEATURES, x[:, len(FEATURES) :].T, strict=True))
    assert late["maxsim_mean"][0] > late["maxsim_mean"][1] > late["maxsim_mean"][2]
    assert late["maxsim_over_0.8"][0] == 1.0 > late["maxsim_over_0.8"][1]
    # each distinct text is encoded once, its token vectors cached for the next pairs
    entries = len(student._tokens.entries)
    student.features([query], docs[:1])
    assert len(student._tokens.entries) == entries == 4


def test_a_long_passage_is_clipped_to_words_that_give_the_tokenizer_the_same_tokens():
    from transformers import AutoTokenizer

    from qrelkit.models import MINILM_ALIAS, resolve_encoder

    assert clip_words("two  words\n", 5) == "two  words\n", "a short text is left as it is"
    # punctuation, accents and blank lines: a word is one token or more, never fewer
    text = "Déjà vu, explained.\n\n" + " ".join(f"part{i}: the feeling-of (having) been here" for i in range(2000))
    clipped = clip_words(text, 300)
    assert text.startswith(clipped) and len(clipped.split()) == 300 and len(clipped) < len(text) / 20
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(MINILM_ALIAS))
    for max_length in (16, 256):
        short = clip_for_tokens(text, max_length)  # what every student's encoder reads
        pair = {"truncation": "longest_first", "max_length": max_length}
        assert tokenizer("what is deja vu", short, **pair) == tokenizer("what is deja vu", text, **pair)
        assert tokenizer(short, truncation=True, max_length=max_length) == tokenizer(
            text, truncation=True, max_length=max_length
        )
    # the frozen student reads the clipped passage for its encoder, the whole passage for its lexical features
    student = Student.from_base(max_length=32)
    features = student.features(["deja vu"], [text])
    assert features[0, FEATURES.index("log_doc_words")] == pytest.approx(np.log1p(len(text.split())))
    query, passage = student.encoder.encode(["deja vu", text], normalize_embeddings=True)  # the whole passage
    assert features[0, FEATURES.index("cosine")] == pytest.approx(float(query @ passage), abs=1e-6)


def test_query_context_places_each_pair_among_its_querys_pairs():
    from qrelkit.students.encoder import CONTEXT_STATS, POOL_STATS, context_names, query_context

    names = FEATURES + LATE_FEATURES
    x = np.zeros((5, len(names)))
    x[:, names.index("cosine")] = [0.2, 0.9, 0.4, 0.5, 0.7]
    x[:, names.index("maxsim_mean")] = [0.1, 0.1, 0.1, 0.3, 0.6]
    queries = ["a", "b", "a", "a", "c"]  # interleaved: grouped by query text, not by position
    ctx = query_context(x, queries, names)
    assert ctx.shape == (5, len(context_names(names))) == (5, 2 * len(CONTEXT_STATS))
    col = {n: i for i, n in enumerate(context_names(names))}
    a = [0, 2, 3]  # cosines 0.2, 0.4, 0.5
    assert ctx[a, col["cosine_query_best"]] == pytest.approx([0.5] * 3)
    assert ctx[a, col["cosine_below_best"]] == pytest.approx([0.3, 0.1, 0.0])
    assert ctx[a, col["cosine_percentile"]] == pytest.approx([0.5 / 3, 1.5 / 3, 2.5 / 3])
    assert ctx[a, col["cosine_z"]].mean() == pytest.approx(0.0) and ctx[3, col["cosine_z"]] > 0
    assert ctx[[0, 2], col["maxsim_mean_percentile"]] == pytest.approx([1 / 3, 1 / 3])  # a tie shares its ranks
    for alone in (1, 4):  # a query with one pair: in the middle of its own pool
        assert ctx[alone, col["cosine_z"]] == 0 and ctx[alone, col["cosine_percentile"]] == 0.5
        assert ctx[alone, col["cosine_below_best"]] == 0 and ctx[alone, col["cosine_query_best"]] == x[alone, 0]
    assert context_names(FEATURES) == tuple(f"cosine_{s}" for s in CONTEXT_STATS)  # no late features, no maxsim
    some = query_context(x, queries, names, POOL_STATS)  # today's columns: the same values, the others not computed
    kept = [col[n] for n in context_names(names, POOL_STATS)]
    assert some.shape == (5, 2 * len(POOL_STATS)) and some == pytest.approx(ctx[:, kept])
    with pytest.raises(QrelkitError, match="unknown pool statistic"):
        query_context(x, queries, names, ("z", "median"))


def test_scores_moved_onto_other_cut_points_keep_their_grades():
    scores = np.random.default_rng(0).normal(1.5, 1.0, 500)
    cuts, onto = [0.4, 1.1, 2.6], [0.9, 1.5, 2.0]
    moved = onto_cut_points(scores, cuts, onto)
    assert (grades_from_thresholds(onto, moved) == grades_from_thresholds(cuts, scores)).all()
    assert (np.diff(moved[np.argsort(scores)]) >= 0).all(), "the order of the scores is kept"
    assert onto_cut_points(np.array(cuts), cuts, onto) == pytest.approx(onto)
    assert onto_cut_points(np.array([-1.0, 3.6]), cuts, onto) == pytest.approx([-1.0 + 0.5, 3.6 - 0.6])  # shifted
    tied = onto_cut_points(np.array([0.3, 1.0, 1.2]), [0.5, 0.5, 2.0], onto)  # no grade 1 in training: still ordered
    assert (grades_from_thresholds(onto, tied) == grades_from_thresholds([0.5, 0.5, 2.0], [0.3, 1.0, 1.2])).all()


def test_pool_feedback_compares_each_passage_with_the_other_passages_of_its_query():
    from qrelkit.students.encoder import FEEDBACK, FEEDBACK_DEPTHS, FEEDBACK_SHARPNESS, pool_feedback

    rng = np.random.default_rng(0)
    sizes = {"a": 12, "b": 3, "c": 11, "lone": 1}  # more and fewer than each depth's others, and no others
    queries = [q for q, n in sizes.items() for _ in range(n)]
    rng.shuffle(queries)  # interleaved: grouped by query text, not by position
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    topic = {q: unit(rng.normal(size=16)) for q in sizes}
    query_emb = np.array([topic[q] for q in queries])
    doc_emb = unit(query_emb + rng.normal(scale=0.8, size=query_emb.shape))
    got = pool_feedback(query_emb, doc_emb, queries)
    assert got.shape == (len(queries), len(FEEDBACK))
    for i, q in enumerate(queries):
        others = [j for j, o in enumerate(queries) if o == q and j != i]
        if not others:
            assert not got[i].any()
            continue
        sims, cosine = doc_emb[others] @ doc_emb[i], doc_emb[others] @ topic[q]
        best = [others[j] for j in np.argsort(-cosine, kind="stable")]
        want = [doc_emb[i] @ unit(doc_emb[best[:k]].sum(axis=0)) for k in FEEDBACK_DEPTHS]
        weight = np.exp(FEEDBACK_SHARPNESS * cosine)
        want += [sims.mean(), (weight * sims).sum() / weight.sum()]
        np.testing.assert_allclose(got[i], want, atol=1e-9)


@pytest.mark.slow
def test_query_context_students_of_every_layout_read_the_columns_they_were_trained_on():
    from qrelkit.students.encoder import CONTEXT_STATS, FEEDBACK, POOL_STATS, context_names

    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    student = distill(train, teacher, query_context=True)
    base = FEATURES + LATE_FEATURES
    assert student.feature_names == base + context_names(base, POOL_STATS) + FEEDBACK  # today's: 3 statistics
    pairs = ([p.query for p in train], [p.text for p in train])
    grades = np.array([teacher[(p.qid, p.doc_id)] for p in train])
    x_new = student.features(*pairs)
    layouts = {  # head.json columns of students saved before the pool feedback, and in its first hours
        "2026-11-29": base + context_names(base),
        "2026-11-30 morning": base + context_names(base) + FEEDBACK,
    }
    for when, columns in layouts.items():
        old = student.with_head({"features": list(columns)})
        x_old = old.features(*pairs)
        assert x_old.shape[1] == len(columns), when
        np.testing.assert_allclose(x_old[:, : len(base)], x_new[:, : len(base)])
        for stat in CONTEXT_STATS:  # each statistic the same whichever others the layout holds
            at = columns.index(f"cosine_{stat}")
            if f"cosine_{stat}" in student.feature_names:
                np.testing.assert_allclose(x_old[:, at], x_new[:, student.feature_names.index(f"cosine_{stat}")])
        best = x_old[:, columns.index("cosine_query_best")]
        assert len(set(best.round(9))) == len({p.qid for p in train})  # one value a query: its best cosine
        if FEEDBACK[0] in columns:
            np.testing.assert_allclose(x_old[:, -len(FEEDBACK) :], x_new[:, -len(FEEDBACK) :])
        old = old.with_head(fit_head(x_old, grades.astype(float), grades, kind="spline", features=columns))
        assert old.query_context and old.predict(*pairs)[0].shape == (len(train),)
    with pytest.raises(QrelkitError, match="unknown student features"):
        student.with_head({"features": [*base, *context_names(base, POOL_STATS)]})  # no layout ever saved


@pytest.mark.slow
class _CrashingAfter:
    """A query-context student that labels ``calls`` chunks, then crashes."""

    query_context = True

    def __init__(self, student, calls: int):
        self.student, self.calls = student, calls

    def predict_pairs(self, pairs, *, batch_size=64):
        self.calls -= 1
        if self.calls < 0:
            raise RuntimeError("crash")
        return self.student.predict_pairs(pairs, batch_size=batch_size)


def test_a_query_context_student_labels_each_query_whole_whatever_the_chunks(tmp_path):
    from qrelkit.io import write_jsonl
    from qrelkit.label import label_file_stream, label_pairs
    from qrelkit.records import Pair
    from qrelkit.students import load_student, reads_query_context
    from qrelkit.students.checked import CheckedLabeler
    from qrelkit.students.encoder import FEEDBACK, POOL_STATS, context_names, saved_with_query_context

    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    student = distill(train, teacher, head="boosted", query_context=True)
    pooled = context_names(FEATURES + LATE_FEATURES, POOL_STATS) + FEEDBACK
    assert student.feature_names == FEATURES + LATE_FEATURES + pooled
    student.save(tmp_path / "model")
    assert saved_with_query_context(tmp_path / "model")
    assert "Query context" in (tmp_path / "model" / "README.md").read_text()
    again = load_student(tmp_path / "model")
    assert reads_query_context(again) and not reads_query_context(distill(train, teacher))
    test, truth = topic_pairs(names[5:])  # 3 queries of 8 pairs each, in query order
    whole, _ = again.predict_pairs(test)
    gold = np.array([truth[(p.qid, p.doc_id)] for p in test])
    assert whole[gold == 3].min() > whole[gold == 0].max()
    # the grades of a query's pair depend on its pool: its 8 pairs are graded by the main head (pool columns) ...
    queries, docs = [p.query for p in test], [p.text for p in test]
    np.testing.assert_allclose(whole, head_scores(again.head, again.features(queries, docs)))
    # ... and a query passed with fewer than SMALL_POOL pairs by the small-pool head, on the pair's own columns
    small = again.head["small_pools"]
    assert small["min_pool"] == SMALL_POOL and small["head"]["features"] == list(FEATURES + LATE_FEATURES)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing to warn about: a small pool has its own head
        few, few_grades = again.predict(queries[:3], docs[:3])
    own = again.pair_features(queries[:3], docs[:3])[0]
    alone = head_scores(small["head"], own)
    assert (few_grades == grades_from_thresholds(small["head"]["thresholds"], alone)).all()
    np.testing.assert_allclose(few, onto_cut_points(alone, small["head"]["thresholds"], again.thresholds))
    assert few[0] != pytest.approx(whole[0]) and "fewer than 5 pairs" in (tmp_path / "model" / "README.md").read_text()
    # a student saved before the small-pool head grades a lone pair by its pool columns, and says so
    older = again.with_head({k: v for k, v in again.head.items() if k != "small_pools"})
    with pytest.warns(UserWarning, match="1 of 1 queries came with one pair"):  # said, not silently guessed
        older.predict_pairs(test[:1])
    # chunks of 3 never split a query: the same scores in memory and streamed
    scores, _, _ = label_pairs(test, again, chunk=3, show_progress=False)
    np.testing.assert_allclose(scores, whole, rtol=1e-6)
    rows = [{"qid": p.qid, "query": p.query, "doc_id": p.doc_id, "text": p.text} for p in test]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    label_file_stream(tmp_path / "pairs.jsonl", tmp_path / "model", tmp_path / "out.jsonl", chunk=3)
    streamed = [json.loads(line)["score"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(streamed, whole, atol=1e-4)
    # pairs of a query apart in a file: labelled from a copy grouped by query, each query in one pool, as in memory
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    write_jsonl(tmp_path / "shuffled.jsonl", shuffled)
    stats = label_file_stream(tmp_path / "shuffled.jsonl", tmp_path / "model", tmp_path / "apart.jsonl", chunk=3)
    apart = {(r["qid"], r["doc_id"]): r["score"] for r in map(json.loads, (tmp_path / "apart.jsonl").open())}
    assert stats["grouped_by_query"] and stats["pairs"] == len(apart) == len(test)
    np.testing.assert_allclose([apart[(p.qid, p.doc_id)] for p in test], whole, atol=1e-4)
    assert not (tmp_path / "apart.jsonl.grouped.parquet").exists()  # the copy is gone once the labels are done
    crashing = _CrashingAfter(again, calls=2)  # killed in the middle: the copy stays, and the run resumes from it
    with pytest.raises(RuntimeError, match="crash"):
        label_file_stream(
            tmp_path / "shuffled.jsonl", tmp_path / "model", tmp_path / "resumed.jsonl", chunk=3, student=crashing
        )
    assert (tmp_path / "resumed.jsonl.grouped.parquet").exists()
    stats = label_file_stream(tmp_path / "shuffled.jsonl", tmp_path / "model", tmp_path / "resumed.jsonl", chunk=3)
    assert stats["resumed_from"] > 0 and stats["grouped_by_query"]
    assert (tmp_path / "resumed.jsonl").read_text() == (tmp_path / "apart.jsonl").read_text()
    in_memory, _, _ = label_pairs([Pair.model_validate(r) for r in shuffled], again, chunk=3, show_progress=False)
    np.testing.assert_allclose(in_memory, [apart[(r["qid"], r["doc_id"])] for r in shuffled], atol=1e-4)
    # Ray Data splits a file anywhere: the Ray engine groups the pairs by query, so each query is graded whole
    if importlib.util.find_spec("ray"):
        from qrelkit.label_ray import label_file_ray

        stats = label_file_ray(
            tmp_path / "shuffled.jsonl", tmp_path / "model", tmp_path / "ray.jsonl", actors=2, rows_per_task=5
        )
        by_ray = {(r["qid"], r["doc_id"]): r["score"] for r in map(json.loads, (tmp_path / "ray.jsonl").open())}
        assert stats["pairs"] == len(test) == len(by_ray)
        np.testing.assert_allclose([by_ray[(p.qid, p.doc_id)] for p in test], whole, atol=1e-4)
    # the checked runtime grades the whole query of a pair near a cut point again, so fp32 reads the same pool
    distance = np.abs(whole[:, None] - np.asarray(again.thresholds)[None, :]).min(axis=1)
    closest = int(np.argmin(distance))
    checked = CheckedLabeler(again, again, margin=float(distance[closest]) + 1e-9)  # one pair near a cut point
    scores, _ = checked.predict_pairs(test)
    assert checked.last_rescored.tolist() == [closest]  # encoded again alone, graded among its query's pairs
    np.testing.assert_allclose(scores, whole, rtol=1e-6)
