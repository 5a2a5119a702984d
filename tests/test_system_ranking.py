"""System-ranking correlation: do a labeler's grades order retrieval systems as the human grades do?"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qrelkit.errors import InputError, QrelkitError
from qrelkit.io import read_run, read_runs, write_qrels, write_run
from qrelkit.system_ranking import (
    compare_system_rankings,
    leaderboard,
    per_query_scores,
    ranking_correlation,
    tau_ap,
)


def test_tau_ap_punishes_a_swap_at_the_top_more_than_one_at_the_bottom():
    truth = [4.0, 3.0, 2.0, 1.0]
    assert tau_ap(truth, truth) == pytest.approx(1.0) and tau_ap(truth, truth[::-1]) == pytest.approx(-1.0)
    top, bottom = [3.0, 4.0, 2.0, 1.0], [4.0, 3.0, 1.0, 2.0]
    assert tau_ap(truth, top) == pytest.approx(1 / 3) and tau_ap(truth, bottom) == pytest.approx(7 / 9)
    same = ranking_correlation(truth, top), ranking_correlation(truth, bottom)
    assert same[0]["kendall_tau"] == pytest.approx(same[1]["kendall_tau"]) == pytest.approx(2 / 3)
    assert not same[0]["same_best"] and same[1]["same_best"]


def test_tau_ap_of_tied_estimates_is_the_mean_over_every_order_of_the_ties():
    import itertools

    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(2, 7))
        truth, estimate = rng.integers(0, 4, n).astype(float), rng.integers(0, 3, n).astype(float)
        # brute force: every strict order of the systems that keeps estimate's order between its distinct values
        orders = [
            o
            for o in itertools.permutations(range(n))
            if all(estimate[a] >= estimate[b] for a, b in itertools.pairwise(o))
        ]
        brute = np.mean([tau_ap(truth, -np.argsort(o).astype(float)) for o in orders])
        assert tau_ap(truth, estimate) == pytest.approx(brute)
        assert tau_ap(truth[::-1], estimate[::-1]) == pytest.approx(brute)  # the order given does not matter


def collection(seed: int = 0, queries: int = 12, docs: int = 20):
    """Human grades, and systems that rank each query's documents by grade plus noise of growing size."""
    rng = np.random.default_rng(seed)
    human = {(f"q{q}", f"d{d}"): int(rng.integers(0, 4)) for q in range(queries) for d in range(docs)}
    runs = {}
    for s, noise in enumerate([0.1, 0.5, 1.0, 2.0, 4.0, 100.0]):
        run: dict[str, dict[str, float]] = {}
        for (q, d), g in human.items():
            run.setdefault(q, {})[d] = g + noise * float(rng.standard_normal())
        runs[f"sys{s}"] = run
    return human, runs


def test_labels_equal_to_the_human_ones_rank_systems_alike_and_reversed_ones_do_not():
    human, runs = collection()
    reversed_ = {k: 3 - g for k, g in human.items()}
    result = compare_system_rankings(runs, human, {"copy": dict(human), "reversed": reversed_}, bootstrap=50)
    copy = result["correlation"]["copy"]
    assert [copy[c] for c in ("kendall_tau", "spearman", "tau_ap")] == pytest.approx([1.0, 1.0, 1.0])
    assert copy["same_best"]
    assert result["correlation"]["reversed"]["kendall_tau"] < 0 and not result["correlation"]["reversed"]["same_best"]
    assert result["queries"] == 12 and result["pairs"] == len(human)
    assert result["ci"]["copy"]["kendall_tau"] == pytest.approx((1.0, 1.0))
    # the least noisy system is best under human grades; nDCG@10 computed by ir_measures
    best = max(result["systems"], key=lambda s: result["systems"][s]["human"])
    assert best == "sys0" and result["systems"]["sys0"]["human"] > result["systems"]["sys5"]["human"]


def test_systems_are_scored_on_the_pairs_every_labeler_graded():
    human, runs = collection(seed=1)
    half = {k: g for k, g in human.items() if int(k[1][1:]) % 2 == 0}  # the labeler graded even documents only
    result = compare_system_rankings(runs, human, {"half": half}, bootstrap=0)
    assert result["pairs"] == len(half) and "ci" not in result
    queries = sorted({q for q, _ in half})
    restricted = per_query_scores(runs, half, queries).mean(axis=1)
    assert [result["systems"][s]["human"] for s in runs] == pytest.approx(list(restricted))
    assert result["correlation"]["half"]["kendall_tau"] == pytest.approx(1.0)  # the same grades, the same pairs


def test_a_query_a_run_did_not_answer_scores_zero():
    human = {("q1", "a"): 3, ("q1", "b"): 0, ("q2", "c"): 2}
    run = {"q1": {"a": 2.0, "b": 1.0}}
    assert per_query_scores({"r": run}, human, ["q1", "q2"]).tolist() == [[1.0, 0.0]]


def test_bad_inputs_are_refused_plainly():
    human, runs = collection()
    with pytest.raises(QrelkitError, match="at least 2 runs"):
        compare_system_rankings({"one": runs["sys0"]}, human, {"x": human})
    with pytest.raises(QrelkitError, match="no run answers"):
        compare_system_rankings({"a": {"zz": {"d0": 1.0}}, "b": {"zz": {"d1": 1.0}}}, human, {"x": human})
    with pytest.raises(QrelkitError, match="share no"):
        compare_system_rankings(runs, human, {"x": {("other", "d"): 1}})
    with pytest.raises(QrelkitError, match="no run answers any query of the qrels"):
        leaderboard(runs, {("other", "d"): 1})


def test_runs_round_trip_and_bad_lines_name_file_and_line(tmp_path):
    run = {"q1": {"a": 2.5, "b": 1.0}, "q2": {"c": 0.5}}
    write_run(tmp_path / "bm25.run", run, tag="bm25")
    lines = (tmp_path / "bm25.run").read_text().splitlines()
    assert lines[0] == "q1 Q0 a 1 2.500000 bm25" and lines[1].startswith("q1 Q0 b 2 ")
    assert read_run(tmp_path / "bm25.run") == run
    (tmp_path / "folder").mkdir()
    write_run(tmp_path / "folder" / "dense.txt", run, tag="dense")
    assert set(read_runs([tmp_path / "bm25.run", tmp_path / "folder"])) == {"bm25", "dense"}
    with pytest.raises(InputError, match="a second run called 'bm25'"):
        read_runs([tmp_path / "bm25.run", tmp_path / "bm25.run"])
    (tmp_path / "bad.run").write_text("q1 Q0 a 1 2.5 t\nq1 Q0 a 2 1.0 t\n")
    with pytest.raises(InputError, match=r"bad\.run:2: document a is ranked twice for query q1 \(first on line 1\)"):
        read_run(tmp_path / "bad.run")
    (tmp_path / "short.run").write_text("q1 a 2.5\n")
    with pytest.raises(InputError, match=r"short\.run:1: expected 6 columns"):
        read_run(tmp_path / "short.run")
    for bad in ("high", "nan", "inf"):
        (tmp_path / "bad-score.run").write_text(f"q1 Q0 a 1 {bad} t\n")
        with pytest.raises(InputError, match=rf"bad-score\.run:1 \[score\]: score '{bad}' is not a finite number"):
            read_run(tmp_path / "bad-score.run")


def test_cli_evaluate_with_runs_prints_and_writes_the_system_ranking(tmp_path, qrelkit_here):
    human, runs = collection(seed=2)
    noisy = {k: (g if i % 5 else (g + 1) % 4) for i, (k, g) in enumerate(sorted(human.items()))}
    write_qrels(tmp_path / "human.qrels", [(q, d, g) for (q, d), g in human.items()])
    write_qrels(tmp_path / "labels.qrels", [(q, d, g) for (q, d), g in noisy.items()])
    (tmp_path / "runs").mkdir()
    for name, run in runs.items():
        write_run(tmp_path / "runs" / f"{name}.run", run, tag=name)
    done = qrelkit_here(
        "evaluate",
        str(tmp_path / "labels.qrels"),
        "--human",
        str(tmp_path / "human.qrels"),
        "--runs",
        str(tmp_path / "runs"),
        "--bootstrap",
        "20",
        "-o",
        str(tmp_path / "m.json"),
    )
    assert done.returncode == 0, done.stderr
    assert "6 systems ranked by nDCG@10 over 12 queries" in done.stdout and "Kendall τ" in done.stdout
    ranking = json.loads((tmp_path / "m.json").read_text())["system_ranking"]
    assert set(ranking["systems"]) == set(runs) and ranking["correlation"]["labels"]["kendall_tau"] > 0.5


def test_cli_report_with_runs_has_a_system_ranking_section(tmp_path, qrelkit_here):
    human, runs = collection(seed=3)
    write_qrels(tmp_path / "human.qrels", [(q, d, g) for (q, d), g in human.items()])
    write_qrels(tmp_path / "flip.qrels", [(q, d, 3 - g) for (q, d), g in human.items()])
    write_qrels(tmp_path / "same.qrels", [(q, d, g) for (q, d), g in human.items()])
    for name, run in runs.items():
        write_run(tmp_path / f"{name}.run", run, tag=name)
    done = qrelkit_here(
        "report",
        f"flip={tmp_path / 'flip.qrels'}",
        f"same={tmp_path / 'same.qrels'}",
        "--human",
        str(tmp_path / "human.qrels"),
        *(arg for name in runs for arg in ("--runs", str(tmp_path / f"{name}.run"))),  # one option a file
        "--bootstrap",
        "0",
        "-o",
        str(tmp_path / "report"),
    )
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Do the labels rank systems as the human grades do?" in markdown
    assert (
        "6 systems ranked by nDCG@10 over 12 queries" in markdown
        and "| same | 1.000 | 1.000 | 1.000 | True |" in markdown
    )
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<th>Kendall τ</th>" in page and "<tr><th>sys0</th>" in page
    saved = json.loads((tmp_path / "report" / "report.json").read_text())["system_ranking"]
    assert saved["correlation"]["flip"]["kendall_tau"] < 0


def test_pooling_takes_each_runs_top_documents_once_and_says_what_it_left_out(tmp_path, caplog):
    from qrelkit.pool import pool_pairs
    from qrelkit.records import Document

    runs = {
        "a": {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"d4": 1.0}},
        "b": {"q1": {"d3": 9.0, "d1": 8.0, "d9": 7.0}, "q3": {"d1": 1.0}},
    }
    queries = {"q1": "vpn client", "q2": "payroll"}
    docs = {d: Document(doc_id=d, text=f"text of {d}") for d in ("d1", "d2", "d3", "d4")}
    pairs, stats = pool_pairs(runs, queries, docs, depth=2)
    # q1: a's top 2 (d1, d2) and b's (d3, d1); by best rank, then id; q3 has no text, d9 is beyond depth
    assert [(p.qid, p.doc_id) for p in pairs] == [("q1", "d1"), ("q1", "d3"), ("q1", "d2"), ("q2", "d4")]
    assert pairs[0].query == "vpn client" and pairs[0].text == "text of d1" and pairs[0].source == "pool"
    assert stats == {
        "runs": 2,
        "depth": 2,
        "queries": 2,
        "pairs": 4,
        "queries_without_text": 1,
        "documents_not_in_corpus": 0,
    }
    assert "1 queries of the runs have no text" in caplog.text
    _, deeper = pool_pairs(runs, queries, docs, depth=3)
    assert deeper["documents_not_in_corpus"] == 1 and deeper["pairs"] == 4  # d9 is not in the corpus
    with pytest.raises(QrelkitError, match="the pool is empty"):
        pool_pairs({"a": {"zz": {"d1": 1.0}}}, queries, docs)


def test_cli_pools_runs_labels_nothing_new_and_scores_a_leaderboard(tmp_path, qrelkit_here):
    """pool → (labels) → leaderboard, through the CLI: TSV topics, a corpus, two runs, the human grades as labels."""
    human, runs = collection(seed=4, queries=4, docs=6)
    (tmp_path / "topics.tsv").write_text("".join(f"q{i}\tquery {i}\n" for i in range(4)))
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": f"d{d}", "text": f"doc {d}"}) + "\n" for d in range(6))
    )
    for name in ("sys0", "sys5"):
        write_run(tmp_path / f"{name}.run", runs[name], tag=name)
    assert qrelkit_here("ingest", str(tmp_path / "corpus.jsonl"), "-o", str(tmp_path / "docs.parquet")).returncode == 0
    done = qrelkit_here(
        "pool",
        str(tmp_path / "sys0.run"),
        str(tmp_path / "sys5.run"),
        "--queries",
        str(tmp_path / "topics.tsv"),
        "--docs",
        str(tmp_path / "docs.parquet"),
        "--depth",
        "2",
        "-o",
        str(tmp_path / "pool.parquet"),
    )
    assert done.returncode == 0, done.stderr
    pooled = json.loads(done.stdout)
    assert pooled["queries"] == 4 and 8 <= pooled["pairs"] <= 16
    write_qrels(tmp_path / "labels.qrels", [(q, d, g) for (q, d), g in human.items()])
    done = qrelkit_here(
        "leaderboard",
        str(tmp_path / "sys0.run"),
        str(tmp_path / "sys5.run"),
        "--qrels",
        str(tmp_path / "labels.qrels"),
        "--measure",
        "nDCG@10",
        "--measure",
        "P(rel=2)@5",
        "-o",
        str(tmp_path / "board.json"),
    )
    assert done.returncode == 0, done.stderr
    board = json.loads((tmp_path / "board.json").read_text())
    assert list(board["sys0"]) == ["nDCG@10", "P(rel=2)@5", "Judged@10", "bootstrap"]
    assert board["sys0"]["Judged@10"] == 1.0 and board["sys0"]["bootstrap"]["minus_best"] == 0.0
    low, high = board["sys5"]["bootstrap"]["interval"]
    assert low <= board["sys5"]["nDCG@10"] <= high and "− best run" in done.stdout
    assert board["sys0"]["nDCG@10"] > board["sys5"]["nDCG@10"]  # grade-ordered beats noise
    assert done.stdout.index("| sys0") < done.stdout.index("| sys5")
    done = qrelkit_here(
        "leaderboard", str(tmp_path / "sys0.run"), "--qrels", str(tmp_path / "labels.qrels"), "--measure", "nDGC@10"
    )
    assert done.returncode == 2 and "measure 'nDGC@10'" in done.stderr


def test_a_pipeline_pools_runs_and_evaluates_with_them_and_reruns_when_a_run_changes(tmp_path):
    from qrelkit.io import read_pairs
    from qrelkit.pipeline import run_pipeline

    human, runs = collection(seed=5, queries=3, docs=5)
    (tmp_path / "runs").mkdir()
    for name in ("sys0", "sys3", "sys5"):
        write_run(tmp_path / "runs" / f"{name}.run", runs[name], tag=name)
    (tmp_path / "topics.jsonl").write_text(
        "".join(json.dumps({"qid": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(3))
    )
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"id": f"d{d}", "text": f"doc {d}"}) + "\n" for d in range(5))
    )
    write_qrels(tmp_path / "human.qrels", [(q, d, g) for (q, d), g in human.items()])
    cfg = {
        "run_dir": str(tmp_path),
        "stages": [
            {"ingest": {"corpus": "corpus.jsonl", "out": "docs.parquet"}},
            {
                "pool": {
                    "runs": ["runs"],
                    "queries": "topics.jsonl",
                    "docs": "docs.parquet",
                    "depth": 2,
                    "out": "pool.parquet",
                }
            },
            {"evaluate": {"labels": "human.qrels", "human": "human.qrels", "runs": ["runs"], "bootstrap": 0}},
        ],
    }
    first = run_pipeline(cfg)["stages"]
    assert first["pool"]["runs"] == 3 and len(read_pairs(tmp_path / "pool.parquet")) == first["pool"]["pairs"]
    assert first["evaluate"]["system_ranking"]["correlation"]["labels"]["kendall_tau"] == pytest.approx(1.0)
    runs["sys3"]["q0"] = {d: -s for d, s in runs["sys3"]["q0"].items()}  # a run changes: pool and evaluate again
    write_run(tmp_path / "runs" / "sys3.run", runs["sys3"], tag="sys3")
    again = run_pipeline(cfg)["stages"]
    assert again["ingest"].get("skipped") and not again["pool"].get("skipped")
    assert (
        again["evaluate"]["system_ranking"]["systems"]["sys3"]["human"]
        < first["evaluate"]["system_ranking"]["systems"]["sys3"]["human"]
    )
    assert all(r.get("skipped") for r in run_pipeline(cfg)["stages"].values())  # nothing changed: nothing runs


def test_a_leaderboard_gives_each_run_an_interval_and_its_paired_gap_to_the_best():
    human, runs = collection(seed=6, queries=20, docs=10)
    scores = leaderboard(runs, human, bootstrap=300)
    spread = {run: score["bootstrap"] for run, score in scores.items()}
    best = max(scores, key=lambda r: scores[r]["nDCG@10"])
    assert spread[best]["minus_best"] == 0.0 and spread[best]["minus_best_interval"] == (0.0, 0.0)
    for run, s in spread.items():
        assert s["interval"][0] <= scores[run]["nDCG@10"] <= s["interval"][1]
    # the random-order system trails the best one by more than query noise: its whole gap interval is below 0
    assert spread["sys5"]["minus_best_interval"][1] < 0
