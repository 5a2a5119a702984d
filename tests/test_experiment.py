"""The k-fold distillation experiment on a small benchmark folder with the real MiniLM student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from topics import TOPICS

from qrelkit import experiment as exp
from qrelkit.errors import QrelkitError
from qrelkit.io import read_qrels

HELDOUT = ("badge", "wifi")


def make_benchmark(root: Path) -> Path:
    """Benchmark layout as in ../shared/benchmarks: 6 open queries, 2 held out, a teacher and a second judge."""
    data = root / "toy"
    for sub in ("pairs", "qrels", "llm_labels/test"):
        (data / sub).mkdir(parents=True)
    (data / "queries.jsonl").write_text("".join(json.dumps({"qid": q, "text": t[0]}) + "\n" for q, t in TOPICS.items()))
    (data / "passages.jsonl").write_text(
        "".join(json.dumps({"pid": f"p-{d}", "text": t[1]}) + "\n" for d, t in TOPICS.items())
    )
    split = {"test-open": [q for q in TOPICS if q not in HELDOUT], "test-heldout": list(HELDOUT)}
    for name, qids in split.items():
        (data / "pairs" / f"{name}.tsv").write_text("".join(f"{q}\tp-{d}\n" for q in qids for d in TOPICS))
    human = "".join(f"{q} 0 p-{d} {3 if q == d else 0}\n" for q in split["test-open"] for d in TOPICS)
    (data / "qrels" / "human.test-open.txt").write_text(human)
    teacher = "".join(f"{q} 0 p-{d} {3 if q == d else 0}\n" for q in TOPICS for d in TOPICS)
    (data / "llm_labels" / "test" / "big-llm.txt").write_text(teacher)
    judge = "".join(f"{q} 0 p-{d} {2 if q == d else (1 if d == 'vpn' else 0)}\n" for q in TOPICS for d in TOPICS)
    (data / "llm_labels" / "test" / "other-llm.txt").write_text(judge)
    return data


def record_qids(monkeypatch, name: str, arg: int) -> list[set[str]]:
    """Wrap ``exp.<name>`` so that each call records the query ids of its ``arg``-th argument (pairs)."""
    calls: list[set[str]] = []
    real = getattr(exp, name)

    def spy(*args, **kwargs):
        calls.append({p.qid for p in args[arg]})
        return real(*args, **kwargs)

    monkeypatch.setattr(exp, name, spy)
    return calls


def run_toy(data: Path, out: Path, names: tuple[str, ...]) -> dict:
    """The experiment on the toy benchmark, 3 folds, with the named student variants."""
    students = [s for s in exp.STUDENTS if s.name in names]
    return exp.run_experiment(
        exp.Benchmark("toy", "big-llm"), out_dir=out, folds=3, students=students, bootstrap=50, data_root=data
    )


@pytest.mark.slow
def test_experiment_is_query_disjoint_and_writes_qrels_and_report(tmp_path, monkeypatch):
    data = make_benchmark(tmp_path)
    trained_on = record_qids(monkeypatch, "distill", 0)
    graded = record_qids(monkeypatch, "_grade", 1)
    summary = run_toy(data, tmp_path / "out", ("minilm-cosine", "minilm-logistic-ensemble"))
    # every grading call follows the training call of its student, and never grades a query it trained on
    assert len(trained_on) == len(graded) == 2 * (3 + 1)
    for seen, scored in zip(trained_on, graded, strict=True):
        assert scored and not (seen & scored), (seen, scored)
    for name in ("minilm-cosine", "minilm-logistic-ensemble"):
        qrels = read_qrels(tmp_path / "out" / "toy" / f"{name}.qrels")
        assert len(qrels) == len(TOPICS) ** 2  # every test pair, held-out queries included
        # on queries it never saw, the student grades each query's own document at least as high as the 7 others
        for q in TOPICS:
            assert qrels[(q, f"p-{q}")] >= max(qrels[(q, f"p-{d}")] for d in TOPICS if d != q), (name, q)
        assert sum(qrels[(q, f"p-{q}")] >= 2 for q in TOPICS) >= 6
        others = [qrels[(q, f"p-{d}")] for q in TOPICS for d in TOPICS if d != q]
        assert sum(g == 0 for g in others) / len(others) > 0.8
    assert summary["heldout_pairs"] == 16 and summary["open_queries"] == 6
    assert summary["best_student"] in ("minilm-cosine", "minilm-logistic-ensemble")
    report = json.loads((tmp_path / "out" / "toy" / "report" / "report.json").read_text())
    assert "judge other-llm" in report["metrics"] and "judge other-llm" not in report["intervals"]
    assert report["metrics"]["teacher big-llm"]["kappa"] == pytest.approx(1.0)
    assert (tmp_path / "out" / "toy" / "report" / "report.html").exists()
    assert "| teacher big-llm |" in (tmp_path / "out" / "toy" / "headline.md").read_text()


def test_folds_deal_queries_round_robin_and_need_enough_queries():
    folds = exp.fold_of_queries(["q3", "q1", "q2", "q1", "q4"], 2)
    assert folds == {"q1": 0, "q2": 1, "q3": 0, "q4": 1}
    with pytest.raises(QrelkitError, match="cannot make"):
        exp.fold_of_queries(["q1", "q2"], 3)


def test_unknown_teacher_label_set_is_a_clear_error(tmp_path):
    data = make_benchmark(tmp_path)
    with pytest.raises(QrelkitError, match="no teacher label set"):
        exp.load_benchmark(exp.Benchmark("toy", "gpt-9"), data)


def _synth_reply(prompt: str) -> str:
    """Three queries from the words of the seed passage; for the VPN passage one of them is a benchmark query."""
    words = [w.strip(".,").lower() for w in prompt.removeprefix("Document:").split()]
    keyword = "vpn client download" if "vpn" in words else " ".join(words[1:4])
    return f"keyword: {keyword}\nquestion: what about {words[-2]} {words[-1]}?\nshort: {words[1]}"


def _judge_probs(prompt: str) -> list[float]:
    """Grade 3 when the passage shares two query words (the scripted judge knows nothing else)."""
    query = prompt.split("Query:")[1].split("<passage>")[0].lower().split()
    passage = prompt.split("<passage>")[1].lower()
    shared = sum(w.strip("?") in passage for w in query if len(w) > 3)
    return [0.0, 0.05, 0.15, 0.8] if shared >= 2 else [0.85, 0.1, 0.05, 0.0]


@pytest.mark.slow
def test_synthetic_training_set_holds_no_benchmark_query_and_feeds_its_students(tmp_path, scripted, monkeypatch):
    data = make_benchmark(tmp_path)
    llm = scripted(reply=_synth_reply, probs=_judge_probs)
    syn_dir = tmp_path / "out" / "toy" / "synthetic"
    about = exp.build_synthetic("toy", syn_dir, llm=llm, n_seeds=8, k=2, n_random=1, data_root=data)
    queries = [json.loads(line) for line in (syn_dir / "queries.jsonl").read_text().splitlines()]
    assert about["queries"] == len(queries) > 8
    assert "vpn client download" not in {q["text"] for q in queries}  # a benchmark query is never trained on
    assert about["graded"] == about["pairs"] and about["llm"] == "fake:scripted"
    syn = exp.load_synthetic(syn_dir)
    assert syn is not None and all(p.qid.startswith("syn:") for p in syn.pairs)
    assert {g for g in syn.grades.values()} == {0, 3} and len(syn.expected) == len(syn.pairs)

    trained_on = record_qids(monkeypatch, "distill", 0)
    calibrated_on = record_qids(monkeypatch, "recalibrate", 1)
    graded = record_qids(monkeypatch, "_grade", 1)
    names = ("minilm-ridge-synthetic", "minilm-ridge-synthetic-calibrated", "minilm-ridge-both")
    summary = run_toy(data, tmp_path / "out", names)
    assert all(q.startswith("syn:") for seen in trained_on[:8] for q in seen)  # the synthetic set only
    for seen in trained_on[8:11]:  # each fold: the synthetic queries and the other folds' benchmark queries
        assert {q for q in seen if not q.startswith("syn:")} and {q for q in seen if q.startswith("syn:")}
    # thresholds fit to the teacher's labels of the fold's training queries, never of the graded ones
    assert len(calibrated_on) == 4 and not any(q.startswith("syn:") for seen in calibrated_on for q in seen)
    for seen, scored in zip(calibrated_on[:3], graded[4:7], strict=True):
        assert seen and scored and not (seen & scored)
    qrels = read_qrels(tmp_path / "out" / "toy" / "minilm-ridge-synthetic.qrels")
    assert len(qrels) == len(TOPICS) ** 2
    assert sum(qrels[(q, f"p-{q}")] >= 2 for q in TOPICS) >= 6  # learnt from the synthetic set alone
    assert any(
        "synthetic training set" in n
        for n in json.loads((tmp_path / "out/toy/report/report.json").read_text())["notes"]
    )
    assert [s["name"] for s in summary["students"]] == list(names)

    summary = run_toy(data, tmp_path / "out2", (*names, "minilm-cosine"))
    assert [s["name"] for s in summary["students"]] == ["minilm-cosine"]  # no synthetic set there: skipped


def test_stacked_head_cuts_each_fold_on_its_own_scale(tmp_path):
    """A stacked head over one feature is a monotone map of it per fold, so its grades must be the feature's own
    grades cut at each collection's teacher shares (cut points taken from another fold's head would not be)."""
    import numpy as np

    from qrelkit import crossfold
    from qrelkit.benchmarks import Benchmark, load_benchmark

    spec = Benchmark("toy", "big-llm")
    data = load_benchmark(spec, make_benchmark(tmp_path))
    datas, teachers = {"toy": data}, {"toy": "big-llm"}
    folds_of = {"toy": exp.fold_of_queries([p.qid for p in data.open_pairs + data.heldout_pairs], 2)}
    rng = np.random.default_rng(0)
    teacher = data.label_sets["big-llm"]
    feature = {k: teacher[k] + rng.normal(0, 2) for k in crossfold._all_keys(data)}  # noisy, not separable
    stacked = crossfold._stacked(
        datas, teachers, folds_of, {("toy", *k): np.array([v]) for k, v in feature.items()}, []
    )
    assert stacked == crossfold._calibrated_per_collection(datas, teachers, folds_of, {"toy": feature})


def test_stacking_head_refuses_column_names_that_do_not_fit_its_rows():
    import numpy as np
    import pytest

    from qrelkit.errors import QrelkitError
    from qrelkit.students.stacking import STACK_FEATURES, fit_stack_head

    x = np.random.default_rng(0).normal(size=(20, len(STACK_FEATURES) + 4))  # a late companion's columns
    with pytest.raises(QrelkitError, match="10 stacking columns for 6 names"):
        fit_stack_head(x, x[:, 0])
    assert len(fit_stack_head(x, x[:, 0], features=[f"c{i}" for i in range(10)])["coef"]) == 10
