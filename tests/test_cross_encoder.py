"""The fine-tuned cross-encoder student (real MiniLM weights, CrossEncoderTrainer) and the cross-collection
experiment, on toy topics where relevance is unambiguous."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_experiment import make_benchmark
from topics import TOPICS, topic_pairs

from qrelkit import crossfold
from qrelkit.errors import QrelkitError
from qrelkit.experiment import Benchmark
from qrelkit.io import read_qrels
from qrelkit.students import Labeler, export_student, load_student, student_kind
from qrelkit.students.cross_encoder import CrossEncoderStudent, distill_cross_encoder, synthetic_stage_pairs
from qrelkit.students.targets import sample_by_query

pytestmark = pytest.mark.slow


def _train(loss: str = "bce", **kw):
    pairs, teacher = topic_pairs(list(TOPICS))
    return distill_cross_encoder(
        pairs, teacher, loss=loss, epochs=kw.pop("epochs", 6), batch_size=8, learning_rate=1e-4, max_length=64, **kw
    )


def test_cross_encoder_learns_save_load_label(tmp_path: Path) -> None:
    student = _train(epochs=10)
    pairs, teacher = topic_pairs(list(TOPICS))
    scores, grades = student.predict_pairs(pairs)
    truth = np.array([teacher[(p.qid, p.doc_id)] for p in pairs])
    # what it learnt: most queries rank their own document first, and grades follow the teacher's shares
    by_query = scores.reshape(len(TOPICS), len(TOPICS))  # topic_pairs: each query's 8 documents in TOPICS order
    assert (by_query.argmax(axis=1) == np.arange(len(TOPICS))).sum() >= 6
    assert scores[truth == 3].mean() > scores[truth == 0].mean()
    assert (grades[truth == 3] >= 2).mean() >= 0.5
    assert student.card["training"]["loss"] == "bce" and student.card["train_pairs"] == len(pairs)
    training = student.card["training"]
    # 80 steps: a loss every 2% of them (logging every 50 steps gave one point, or none for a shorter run)
    assert training["steps"] == 80 and len(training["losses"]) == 40
    assert training["losses"][-1] < training["losses"][0]
    student.save(tmp_path / "ce")
    assert student_kind(tmp_path / "ce") == "cross-encoder"
    again = load_student(tmp_path / "ce")
    assert isinstance(again, CrossEncoderStudent) and isinstance(again, Labeler)
    s2, g2 = again.predict_pairs(pairs)
    np.testing.assert_allclose(s2, scores, atol=1e-4)
    assert (g2 == grades).all()
    with pytest.raises(QrelkitError, match="no ONNX model; run `qrelkit export"):
        load_student(tmp_path / "ce", runtime="onnx")
    files = export_student(tmp_path / "ce")
    assert set(files) == {"onnx", "onnx-int8", "onnx-int8-mixed", "onnx-int8-checked"}
    margin = json.loads(files["onnx-int8-checked"].read_text())["margin"]
    assert 0 < margin < 0.5  # the export measured the checked runtime's margin once; loading reads it
    assert load_student(tmp_path / "ce", runtime="onnx-int8-checked").card["check_margin"] == margin
    fp32 = load_student(tmp_path / "ce", runtime="onnx")
    s3, g3 = fp32.predict_pairs(pairs)
    np.testing.assert_allclose(s3, scores, atol=1e-4)  # the same logits as torch
    assert (g3 == grades).mean() >= 0.98
    s4, _ = load_student(tmp_path / "ce", runtime="onnx-int8").predict_pairs(pairs)
    assert np.corrcoef(s4, scores)[0, 1] > 0.95
    # qrelkit bench times the same student in each runtime and counts the FLOPs of each pair's joint tokens
    from qrelkit.bench import _student_run

    rows = [p.model_dump(include={"qid", "query", "doc_id", "text"}) for p in pairs]
    timed = _student_run(str(tmp_path / "ce"), "onnx", rows, 16)
    assert timed["grades"] == g3.tolist() and len(timed["latencies"]) == -(-len(rows) // 16)
    assert timed["tokens"] > len(rows) * 10 and timed["flops"] > 0
    checked = _student_run(str(tmp_path / "ce"), "onnx-int8-checked", rows, 16)
    assert len(checked["grades"]) == len(rows) and 0 <= checked["rescored_share"] <= 1
    agree = np.mean(np.array(checked["grades"]) == g3)
    assert agree >= np.mean(load_student(tmp_path / "ce", runtime="onnx-int8").predict_pairs(pairs)[1] == g3)
    with pytest.raises(QrelkitError, match="unknown runtime 'tpu'"):
        load_student(tmp_path / "ce", runtime="tpu")


def test_listwise_loss_trains_and_max_pairs_bounds(tmp_path: Path, monkeypatch) -> None:
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder.losses import ListNetLoss

    calls = {"loss": 0, "model": 0, "inside": 0}
    loss_forward, model_forward = ListNetLoss.forward, CrossEncoder.forward

    def counted_loss(self, *args, **kw):
        calls["loss"] += 1
        calls["inside"] = 1
        try:
            return loss_forward(self, *args, **kw)
        finally:
            calls["inside"] = 0

    def counted_model(self, *args, **kw):
        calls["model"] += calls["inside"]
        return model_forward(self, *args, **kw)

    monkeypatch.setattr(ListNetLoss, "forward", counted_loss)
    monkeypatch.setattr(CrossEncoder, "forward", counted_model)
    student = _train("listnet", epochs=1, max_pairs=40)
    assert calls["model"] == calls["loss"] > 0  # a step's lists in one forward pass, not one pass per list or pair
    assert student.card["train_pairs"] == 40
    assert student.card["train_queries"] == len(TOPICS)  # a query-stratified sample keeps every query
    assert student.card["training"]["loss"] == "listnet"
    with pytest.raises(QrelkitError, match="unknown loss"):
        _train("hinge", epochs=1)


def test_stacked_student_learns_on_held_out_queries_and_round_trips(tmp_path: Path) -> None:
    pairs, teacher = topic_pairs(list(TOPICS))
    student = _train(epochs=10, stack_held_out=0.25)
    stack = student.card["stack"]
    # two of the eight queries are held out of training; the head over [own score, frozen features] learns on them
    assert stack["held_out_queries"] == 2 and stack["held_out_pairs"] == 2 * len(TOPICS)
    assert student.card["train_queries"] == 6 and student.card["train_pairs"] == 6 * len(TOPICS)
    assert list(stack["coef"]) == ["cross_encoder", "cosine", "term_overlap", "query_terms", "log_doc_words",
                                   "cosine_x_overlap"]  # fmt: skip
    scores, grades = student.predict_pairs(pairs)
    truth = np.array([teacher[(p.qid, p.doc_id)] for p in pairs])
    by_query = scores.reshape(len(TOPICS), len(TOPICS))
    assert (by_query.argmax(axis=1) == np.arange(len(TOPICS))).sum() >= 6
    assert scores[truth == 3].mean() > scores[truth == 0].mean() + 1
    queries, docs = [p.query for p in pairs], [p.text for p in pairs]
    own = student.own_scores(queries, docs)
    assert not np.allclose(own, scores)  # the head's scores, not the cross-encoder's
    assert student.companion is not None  # features computed elsewhere (the experiment caches them) give the same
    cached = student.companion.features(queries, docs)
    np.testing.assert_allclose(student.scores(queries, docs, features=cached), scores)
    with pytest.raises(QrelkitError, match="stacked already"):
        student.stack(pairs, truth.tolist())
    student.save(tmp_path / "st")
    assert (tmp_path / "st" / "frozen" / "head.json").exists()
    again = load_student(tmp_path / "st")
    s2, g2 = again.predict_pairs(pairs)
    np.testing.assert_allclose(s2, scores, atol=1e-4)
    assert (g2 == grades).all()
    files = export_student(tmp_path / "st")
    assert {"onnx", "frozen-onnx", "frozen-onnx-int8", "onnx-int8-checked"} <= set(files)
    s3, g3 = load_student(tmp_path / "st", runtime="onnx").predict_pairs(pairs)
    np.testing.assert_allclose(s3, scores, atol=1e-3)  # both models in ONNX Runtime
    assert (g3 == grades).mean() >= 0.98
    from qrelkit.bench import _student_run  # the bench times both models and counts both models' tokens

    rows = [p.model_dump(include={"qid", "query", "doc_id", "text"}) for p in pairs]
    timed = _student_run(str(tmp_path / "st"), "onnx", rows, 16)
    assert timed["grades"] == g3.tolist()
    joint = again.model.tokenizer([p.query for p in pairs], [p.text for p in pairs])["input_ids"]
    assert timed["tokens"] > sum(len(x) for x in joint)
    # a companion with the late-interaction features: the head names its columns, and they survive save and load
    from qrelkit.students.encoder import LATE_FEATURES, Student

    plain = CrossEncoderStudent(student.model, dict(student.card), None)
    held = pairs[-2 * len(TOPICS) :]
    late = plain.stack(held, truth[-len(held) :].tolist(), companion=Student.from_base(late_interaction=True))
    assert list(late["coef"])[-len(LATE_FEATURES) :] == list(LATE_FEATURES) and len(late["coef"]) == 10
    plain.save(tmp_path / "late")
    np.testing.assert_allclose(load_student(tmp_path / "late").scores(queries, docs), plain.scores(queries, docs))


def test_split_by_query_is_query_disjoint_and_refuses_nonsense() -> None:
    from qrelkit.students.targets import split_by_query

    pairs, _ = topic_pairs(list(TOPICS))
    train, held = split_by_query(pairs, 0.25, seed=0)
    assert sorted(train + held) == list(range(len(pairs)))
    assert not {pairs[i].qid for i in train} & {pairs[i].qid for i in held}
    assert len({pairs[i].qid for i in held}) == 2
    assert split_by_query(pairs, 0.25, seed=1) != (train, held)  # another seed, other queries
    assert len({pairs[i].qid for i in split_by_query(pairs, 0.01, seed=0)[1]}) == 1  # at least one query each side
    for share in (0.0, 1.0):
        with pytest.raises(QrelkitError, match="share in"):
            split_by_query(pairs, share, seed=0)
    with pytest.raises(QrelkitError, match="at least 2"):
        split_by_query(pairs[:8], 0.5, seed=0)  # one query


def test_training_resumes_from_checkpoint_and_stops_on_time_budget(tmp_path: Path) -> None:
    pairs, teacher = topic_pairs(list(TOPICS))
    targets = [float(teacher[(p.qid, p.doc_id)]) for p in pairs]
    ckpt = tmp_path / "ckpt"
    first = CrossEncoderStudent.from_base(max_length=64, device="cpu")
    stats = first.fit(pairs, targets, epochs=60, batch_size=8, checkpoint_dir=ckpt, time_budget_s=2)
    assert stats["stopped_by_time_budget"] and 0 < stats["steps"] < 60 * 8
    assert list(ckpt.glob("checkpoint-*")), "a checkpoint is saved when the budget stops training"
    again = CrossEncoderStudent.from_base(max_length=64, device="cpu")
    resumed = again.fit(pairs, targets, epochs=1, batch_size=8, checkpoint_dir=ckpt)
    assert resumed["resumed_from"] is not None


def test_sample_by_query_and_synthetic_stage_pairs() -> None:
    pairs, _ = topic_pairs(list(TOPICS))
    picked = sample_by_query(pairs, 16, seed=1)
    assert len(picked) == 16 == len(set(picked))
    assert {pairs[i].qid for i in picked} == set(TOPICS)
    docs = {d: t[1] for d, t in TOPICS.items()}
    queries = [(f"s{q}", TOPICS[q][0], q) for q in TOPICS] + [("lost", "anything", "no-such-passage")]
    sp, targets = synthetic_stage_pairs(queries, docs, negatives=2, rank_range=(2, 6), n_random=1, seed=0)
    assert {p.qid for p in sp} == {f"s{q}" for q in TOPICS}  # a query whose seed is unknown is dropped
    for p, t in zip(sp, targets, strict=True):
        assert t == (3.0 if p.doc_id == p.qid[1:] else 0.0)


def test_round_trip_keeps_queries_whose_seed_passage_bm25_finds() -> None:
    docs = {d: t[1] for d, t in TOPICS.items()}
    # each topic's query with its own passage as seed, and the same query claiming the previous topic's passage
    names = list(TOPICS)
    queries = [(q, TOPICS[q][0], q) for q in names] + [
        (f"{q}-wrong", TOPICS[q][0], names[i - 1]) for i, q in enumerate(names)
    ]
    everyone, _ = synthetic_stage_pairs(queries, docs, negatives=0, n_random=0)
    assert {p.qid for p in everyone} == {q for q, _, _ in queries}
    kept, targets = synthetic_stage_pairs(queries, docs, negatives=0, n_random=0, round_trip=1)
    assert {p.qid for p in kept} == set(names)  # a seed passage that shares no word with its query is dropped
    assert targets == [3.0] * len(names)
    rows = [{"qid": q, "text": t, "seed_pid": s, "benchmark": "toy"} for q, t, s in reversed(queries)]
    kept_rows = crossfold._round_trip_kept(rows, {"toy": docs}, 1)
    assert [r["qid"] for r in kept_rows] == [r["qid"] for r in rows if r["qid"] in TOPICS]  # in the rows' order


def _two_toy_benchmarks(root: Path) -> list[Benchmark]:
    first = make_benchmark(root / "a")
    second = root / "data" / "toy2"
    shutil.copytree(first, second)
    shutil.move(str(first), root / "data" / "toy")
    return [Benchmark("toy", "big-llm"), Benchmark("toy2", "big-llm")]


def test_cross_collection_experiment_is_query_disjoint_and_resumes(tmp_path: Path, monkeypatch) -> None:
    specs = _two_toy_benchmarks(tmp_path)
    seen: list[set[str]] = []
    real = crossfold._train_and_score

    def spy(spec, fold, datas, teachers, folds_of, stage1, path, device, features=None):
        pairs, _, _ = crossfold._training_pairs(datas, teachers, folds_of, fold)
        seen.append({p.qid for p in pairs})
        return real(spec, fold, datas, teachers, folds_of, stage1, path, device, features)

    monkeypatch.setattr(crossfold, "_train_and_score", spy)
    recipe = crossfold.CrossSpec("ce-toy", epochs=2, max_pairs=None, max_length=64, batch_size=8)
    tuned = crossfold.CrossSpec("bi-toy", kind="bi-encoder", epochs=1, max_pairs=None, max_length=64, batch_size=8)
    out = tmp_path / "results"
    kw = {"students": [recipe, tuned], "folds": 2, "out_dir": out, "bootstrap": 20, "data_root": tmp_path / "data"}
    kw["stack"] = True
    summary = crossfold.run_cross_collection(specs, **kw)
    assert len(seen) == 4  # two folds for each recipe
    folds_of = crossfold.fold_of_queries(list(TOPICS), 2)
    for f, qids in enumerate(seen[:2]):
        # training queries come from both benchmarks, never from the graded fold, never held out
        assert {q.split(":")[0] for q in qids} == {"toy", "toy2"}
        assert all(folds_of[q.split(":")[1]] != f for q in qids)
        assert not {q.split(":")[1] for q in qids} & {"badge", "wifi"}
    for b in ("toy", "toy2"):
        names = ("ce-toy", "ce-toy-calibrated", "ce-toy-xcal", "ce-toy-stacked", "minilm-cosine-cross", "bi-toy-xcal")
        names += ("ce-toy-stacked-late",)  # the stacking head with the late-interaction features too
        names += ("stacked-all",)  # one head over both recipes' scores
        names += ("minilm-ridge-cross", "minilm-late-cross")  # the frozen student, without and with late features
        names += ("minilm-late-boosted-cross",)  # and with a head of boosted trees
        names += ("minilm-late-context-cross", "minilm-late-context-boosted-cross")  # and with query context
        names += ("minilm-late-feedback-spline-cross", "minilm-late-feedback-boosted-cross")  # today's (pool feedback)
        names += ("minilm-late-feedback-boosted-calibrated-cross",)  # cut per collection, as the stacked rows are
        names += ("ce-toy-stacked-feedback",)  # the stacking head over the cross-encoder's score and those columns
        names += ("ce-toy-stacked-feedback-boosted",)  # and boosted trees over them
        for name in names:
            graded = read_qrels(out / b / f"{name}.qrels")
            assert len(graded) == len(TOPICS) ** 2  # every test pair, open and held-out
        assert (out / b / "cross" / "headline.md").exists()
    assert set(summary["mean"]) == {"teacher", "student", "student - teacher"}
    text = (out / "cross-collection.md").read_text()
    assert "Mean over collections" in text
    same = summary["same_student_everywhere"]  # one variant for every collection: its own mean, not the best-of
    per_collection = [json.loads((out / b / "cross" / "experiment.json").read_text()) for b in ("toy", "toy2")]
    kappas = [e["all_students"][same["student"]]["kappa"] for e in per_collection]
    assert same["kappa"] == pytest.approx(sum(kappas) / 2)
    assert f"One variant for every collection (best mean): {same['student']}" in text
    fold0 = json.loads(gzip.decompress((out / ".cross-work" / "ce-toy" / "fold0.scores.jsonl").read_bytes()))
    assert fold0["stats"]["train_queries"] == len(seen[0])
    # a row added to the finished experiment: every earlier row is read back from its qrels and reported again
    everything = {b: read_qrels(out / b / "ce-toy.qrels") for b in ("toy", "toy2")}
    zeros = {b: dict.fromkeys(q, 0) for b, q in everything.items()}
    again = crossfold.add_cross_rows({"all-zero": zeros}, specs, out_dir=out, data_root=tmp_path / "data", bootstrap=20)
    for b in ("toy", "toy2"):
        rows = json.loads((out / b / "cross" / "experiment.json").read_text())["all_students"]
        assert rows["all-zero"]["kappa"] == 0.0 and set(rows) == set(per_collection[0]["all_students"]) | {"all-zero"}
        assert rows["ce-toy"] == per_collection[["toy", "toy2"].index(b)]["all_students"]["ce-toy"]
        assert read_qrels(out / b / "all-zero.qrels") == zeros[b]
    assert again["students"] == summary["students"] and again["timing"] == summary["timing"]
    seen.clear()
    crossfold.run_cross_collection(specs, **kw)  # finished folds are not trained again
    assert seen == []
    # nor is a recipe's stage 1 when all its folds are done (a results folder copied without its stage1/)
    monkeypatch.setattr(crossfold, "_stage1", lambda *a, **k: pytest.fail("stage 1 trained for finished folds"))
    kw["students"] = [dataclasses.replace(recipe, synthetic_queries=5), tuned]
    crossfold.run_cross_collection(specs, **kw)
    assert seen == []


def test_recipe_seed_draws_another_stage2_sample_and_reaches_training(tmp_path: Path, monkeypatch) -> None:
    from qrelkit.benchmarks import load_benchmark

    datas = {s.name: load_benchmark(s, tmp_path / "data" / s.name) for s in _two_toy_benchmarks(tmp_path)}
    teachers = {b: "big-llm" for b in datas}
    folds_of = {
        b: crossfold.fold_of_queries([p.qid for p in d.open_pairs + d.heldout_pairs], 2) for b, d in datas.items()
    }
    calls: list[tuple[int, list[str]]] = []

    def fit(self, pairs, targets, **kw):
        calls.append((kw["seed"], sorted(f"{p.qid}/{p.doc_id}" for p in pairs)))
        return {}

    monkeypatch.setattr(CrossEncoderStudent, "fit", fit)
    for seed in (0, 1):
        spec = crossfold.CrossSpec(f"ce-seed{seed}", max_pairs=12, max_length=64, seed=seed)
        path = tmp_path / "work" / spec.name / "fold0.scores.jsonl"
        path.parent.mkdir(parents=True)
        crossfold._train_and_score(spec, 0, datas, teachers, folds_of, None, path, "cpu")
    assert [seed for seed, _ in calls] == [0, 1]
    assert len(calls[0][1]) == len(calls[1][1]) == 12
    assert calls[0][1] != calls[1][1]  # another query-stratified sample of the same size


def test_stacked_recipe_trains_on_other_queries_and_stacks_on_the_held_out(tmp_path: Path, monkeypatch) -> None:
    specs = _two_toy_benchmarks(tmp_path)
    scored: dict[int, int] = {}  # each fold's student → the pairs its cross-encoder scored
    own_scores = CrossEncoderStudent.own_scores

    def counted(self, queries, docs, **kw):
        scored[id(self)] = scored.get(id(self), 0) + len(queries)
        return own_scores(self, queries, docs, **kw)

    monkeypatch.setattr(CrossEncoderStudent, "own_scores", counted)
    recipe = crossfold.CrossSpec(
        "ce-stack-toy", epochs=2, max_pairs=None, max_length=64, batch_size=8, stack_held_out=0.34
    )
    out = tmp_path / "results"
    crossfold.run_cross_collection(
        specs, students=[recipe], folds=2, out_dir=out, bootstrap=20, data_root=tmp_path / "data", stack=True
    )
    for f in (0, 1):
        fold = json.loads(gzip.decompress((out / ".cross-work" / recipe.name / f"fold{f}.scores.jsonl").read_bytes()))
        stack = fold["stats"]["training"]["stack"]
        # 3 open training queries per benchmark and fold, 6 in all: 2 held out for the head, 4 trained on
        assert stack["held_out_queries"] == 2 and fold["stats"]["train_queries"] == 4
        assert len(fold["scores"]["toy"]) == len(fold["scores"]["toy2"]) == 4 * len(TOPICS)
        # each held-out pair is scored once (for the head and its cut points), and each test pair once
        assert list(scored.values())[f] == stack["held_out_pairs"] + 2 * 4 * len(TOPICS)
    for b in ("toy", "toy2"):
        assert len(read_qrels(out / b / "ce-stack-toy.qrels")) == len(TOPICS) ** 2
        assert not (out / b / "ce-stack-toy-stacked.qrels").exists()  # stacked already: not stacked twice
        assert (out / b / "minilm-cosine-cross.qrels").exists()
    # the features it stacks on (and the late-interaction ones), from one encoding, cached
    assert (out / ".cross-work" / "frozen-features-late.npz").exists()
    fold0 = load_student(out / ".cross-work" / recipe.name / "fold0.student")  # saved, stacked, for the bench
    assert isinstance(fold0, CrossEncoderStudent) and fold0.stack_head and fold0.card["recipe"] == recipe.name


def _shared_synthetic_queries(tmp_path: Path, monkeypatch) -> tuple[dict, Path]:
    """Two toy benchmarks and a ../shared-style synthetic-queries folder (two of its queries equal real ones)."""
    from qrelkit.benchmarks import load_benchmark

    specs = _two_toy_benchmarks(tmp_path)
    root = tmp_path / "data"  # as ../shared/benchmarks: synthetic-queries/ holds no benchmark, only the query file
    rows = [{"text": TOPICS[q][0], "benchmark": "toy", "seed_pid": f"p-{q}"} for q in ("vpn", "pay")]  # real
    rows += [
        {"text": f"where do I find {q} info", "benchmark": b, "seed_pid": f"p-{q}"}
        for q in TOPICS
        for b in ("toy", "toy2")
    ]
    (root / "synthetic-queries").mkdir()
    with gzip.open(root / "synthetic-queries" / "smollm2-135m.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("QRELKIT_BENCHMARKS", str(root))
    return {s.name: load_benchmark(s, root / s.name) for s in specs}, root


def test_stage1_reads_the_shared_synthetic_queries_and_drops_real_ones(tmp_path: Path, monkeypatch) -> None:
    datas, root = _shared_synthetic_queries(tmp_path, monkeypatch)
    spec = crossfold.CrossSpec("ce-syn-toy", synthetic_queries=100, max_length=64, batch_size=8)
    folder = crossfold._stage1(spec, datas, tmp_path / "work", None, root, "cpu")
    card = json.loads((folder / "card.json").read_text())
    assert card["stage1_queries"] == 2 * len(TOPICS)  # a synthetic query equal to a benchmark query is dropped
    n = card["stage1_queries"]
    assert n < card["stage1"]["pairs"] <= 2 * n  # its seed passage, and a random one unless that is the seed
    assert crossfold._stage1(spec, datas, tmp_path / "work", None, root, "cpu") == folder  # once per recipe


def test_stage1_prefers_the_synthetic_queries_beside_the_given_data(tmp_path: Path, monkeypatch) -> None:
    _, root = _shared_synthetic_queries(tmp_path, monkeypatch)  # QRELKIT_BENCHMARKS points at root
    staged = tmp_path / "staged"  # as --data on the GPU machine: benchmarks and synthetic queries copied together
    (staged / "synthetic-queries").mkdir(parents=True)
    shutil.copy2(root / "synthetic-queries" / "smollm2-135m.jsonl.gz", staged / "synthetic-queries")
    assert crossfold._synthetic_queries_file(staged) == staged / "synthetic-queries" / "smollm2-135m.jsonl.gz"
    expected = root / "synthetic-queries" / "smollm2-135m.jsonl.gz"
    assert crossfold._synthetic_queries_file(tmp_path / "no-such") == expected
    assert crossfold._synthetic_queries_file(None) == expected


def test_stage1_continues_a_smaller_recipe_on_the_next_queries(tmp_path: Path, monkeypatch) -> None:
    datas, root = _shared_synthetic_queries(tmp_path, monkeypatch)
    small = crossfold.CrossSpec("ce-syn-small", synthetic_queries=3, max_length=64, batch_size=8)
    more = crossfold.CrossSpec("ce-syn-more", synthetic_queries=100, max_length=64, batch_size=8, stage1_from=small)
    bases: list[str] = []
    real = CrossEncoderStudent.from_base.__func__

    def spy(cls, base, **kw):
        bases.append(base)
        return real(cls, base, **kw)

    monkeypatch.setattr(CrossEncoderStudent, "from_base", classmethod(spy))
    folder = crossfold._stage1(more, datas, tmp_path / "work", None, root, "cpu")
    first = tmp_path / "work" / "ce-syn-small" / "stage1"
    assert bases == [small.base, str(first)]  # the small recipe's stage 1 first, then continued from its weights
    card, card_small = (json.loads((f / "card.json").read_text()) for f in (folder, first))
    assert card_small["stage1_queries"] == 3
    assert card["stage1_queries"] == 2 * len(TOPICS)
    assert card["stage1_continues"] == {"recipe": small.name, "queries": 3}
    assert card["stage1"]["pairs"] <= 2 * (2 * len(TOPICS) - 3)  # only the queries beyond the first three
    same = crossfold.CrossSpec("ce-syn-same", synthetic_queries=3, max_length=64, loss="listnet", stage1_from=small)
    assert crossfold._stage1(same, datas, tmp_path / "work", None, root, "cpu") == first  # shared, not trained
    assert len(bases) == 2
    beyond = crossfold.CrossSpec("ce-syn-beyond", synthetic_queries=200, max_length=64, stage1_from=more)
    with pytest.raises(QrelkitError, match=f"no synthetic queries for these benchmarks beyond the {2 * len(TOPICS)}"):
        crossfold._stage1(beyond, datas, tmp_path / "work", None, root, "cpu")  # the sample holds no more
    with pytest.raises(QrelkitError, match="as many synthetic queries"):
        backwards = dataclasses.replace(small, name="x", stage1_from=more)
        crossfold._stage1(backwards, datas, tmp_path / "w", None, root, None)


def test_cli_distills_a_cross_encoder_and_labels_with_it(tmp_path: Path, qrelkit_here) -> None:
    from qrelkit.io import write_documents, write_jsonl, write_pairs, write_qrels
    from qrelkit.records import Document

    pairs, teacher = topic_pairs(list(TOPICS))
    write_pairs(tmp_path / "pairs.parquet", pairs)
    write_qrels(tmp_path / "teacher.qrels", ((q, d, g) for (q, d), g in teacher.items()))
    run = qrelkit_here

    r = run(
        "distill",
        "pairs.parquet",
        "teacher.qrels",
        "-o",
        "ce",
        "--student",
        "cross-encoder",
        "--epochs",
        "4",
        "--max-length",
        "64",
        "--batch-size",
        "8",
    )
    assert r.returncode == 0, r.stderr
    assert student_kind(tmp_path / "ce") == "cross-encoder" and not (tmp_path / "ce.ckpt").exists()
    r = run("label", "pairs.parquet", "-m", "ce", "-o", "labels.qrels")
    assert r.returncode == 0, r.stderr
    labels = read_qrels(tmp_path / "labels.qrels")
    assert set(labels) == set(teacher)
    own = np.mean([labels[(q, q)] for q in TOPICS])
    other = np.mean([g for (q, d), g in labels.items() if q != d])
    assert own > other
    # stage 1 on synthetic queries (seed passage relevant, BM25 neighbours and a random passage not), then stage 2
    write_documents(tmp_path / "docs.parquet", [Document(doc_id=t, text=TOPICS[t][1]) for t in TOPICS])
    synthetic = [{"qid": f"s-{t}", "text": f"where is the {t} page", "seed_doc_id": t} for t in TOPICS]
    write_jsonl(tmp_path / "synthetic.jsonl", synthetic)
    common = ("--student", "cross-encoder", "--max-length", "64", "--batch-size", "8")
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "ce1", *common, "--pretrain-queries", "synthetic.jsonl",
            "--corpus", "docs.parquet", "--pretrain-max-queries", "5", "--stack-held-out", "0.25")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stack"]["held_out_queries"] == 2  # and stacked on two held-out queries
    assert (tmp_path / "ce1" / "frozen").is_dir()
    stage1 = json.loads(r.stdout)["stage1"]
    assert stage1["synthetic_queries"] == 5 and 5 < stage1["pairs"] <= 10 and stage1["steps"] > 0
    assert json.loads((tmp_path / "ce1" / "card.json").read_text())["stage1"] == stage1
    assert not (tmp_path / "ce1.ckpt").exists()
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "x", *common, "--pretrain-queries", "synthetic.jsonl")
    assert r.returncode == 2 and "needs --corpus" in r.stderr
    write_jsonl(tmp_path / "plain.jsonl", [{"qid": "q1", "text": "vpn"}])
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "x", *common, "--pretrain-queries", "plain.jsonl",
            "--corpus", "docs.parquet")  # fmt: skip
    assert r.returncode == 2 and "no seed_doc_id" in r.stderr and "Traceback" not in r.stderr
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "ft", "--fine-tune-epochs", "1", "--batch-size", "8")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fine_tuned"]["loss"] == "CoSENT" and student_kind(tmp_path / "ft") == "frozen"
    assert json.loads((tmp_path / "ft" / "card.json").read_text())["fine_tuned"]["pairs"] == len(pairs)
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "x", *common, "--stack-held-out", "1")
    assert r.returncode == 2 and "--stack-held-out must be in [0, 1)" in r.stderr
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "x", "--stack-held-out", "0.25")
    assert r.returncode == 2 and "stacks the cross-encoder student" in r.stderr
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "x", "--student", "t5")
    assert r.returncode == 2 and "unknown student 't5'" in r.stderr and "Traceback" not in r.stderr
    # the frozen student with late-interaction features (the default): its head reads them, it labels like any other
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "late")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "late" / "head.json").read_text())["features"][-1] == "maxsim_over_0.8"
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "plain", "--no-late-interaction")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "plain" / "head.json").read_text())["features"][-1] == "cosine_x_overlap"
    r = run("label", "pairs.parquet", "-m", "late", "-o", "late.qrels")
    assert r.returncode == 0, r.stderr
    late = read_qrels(tmp_path / "late.qrels")
    assert np.mean([late[(q, q)] for q in TOPICS]) > np.mean([g for (q, d), g in late.items() if q != d])
    r = run("distill", "pairs.parquet", "teacher.qrels", "-o", "x", *common, "--late-interaction")
    assert r.returncode == 2 and "frozen student's head" in r.stderr


def test_stacking_heads_name_every_frozen_layout_and_refuse_wider_rows() -> None:
    from qrelkit.students.encoder import FEATURES, FEEDBACK, LATE_FEATURES

    assert crossfold._frozen_column_names(len(FEATURES)) == FEATURES
    assert crossfold._frozen_column_names(9) == FEATURES + LATE_FEATURES
    today = crossfold._frozen_column_names(9 + 6 + len(FEEDBACK))  # 3 pool statistics of 2 columns, 4 feedback
    assert today[:9] == FEATURES + LATE_FEATURES and today[-len(FEEDBACK) :] == FEEDBACK and "cosine_z" in today
    assert crossfold._frozen_column_names(1) == ("cosine",)
    with pytest.raises(QrelkitError, match="at most 19 columns, not 20"):
        crossfold._frozen_column_names(20)
