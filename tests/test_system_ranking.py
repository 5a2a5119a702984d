"""System-ranking correlation: do a labeler's grades order retrieval systems as the human grades do?"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qrelkit.errors import InputError, QrelkitError
from qrelkit.io import read_run, read_runs, write_qrels, write_run
from qrelkit.system_ranking import compare_system_rankings, per_query_scores, ranking_correlation, tau_ap


def test_tau_ap_punishes_a_swap_at_the_top_more_than_one_at_the_bottom():
    truth = [4.0, 3.0, 2.0, 1.0]
    assert tau_ap(truth, truth) == pytest.approx(1.0) and tau_ap(truth, truth[::-1]) == pytest.approx(-1.0)
    top, bottom = [3.0, 4.0, 2.0, 1.0], [4.0, 3.0, 1.0, 2.0]
    assert tau_ap(truth, top) == pytest.approx(1 / 3) and tau_ap(truth, bottom) == pytest.approx(7 / 9)
    same = ranking_correlation(truth, top), ranking_correlation(truth, bottom)
    assert same[0]["kendall_tau"] == pytest.approx(same[1]["kendall_tau"]) == pytest.approx(2 / 3)
    assert not same[0]["same_best"] and same[1]["same_best"]


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
    (tmp_path / "nan.run").write_text("q1 Q0 a 1 high t\n")
    with pytest.raises(InputError, match=r"nan\.run:1 \[score\]: score 'high' is not a number"):
        read_run(tmp_path / "nan.run")


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
