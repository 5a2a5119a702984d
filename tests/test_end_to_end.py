"""The whole CLI chain on real local models: SmolLM2 writes queries and judges, MiniLM is the student (the
CLI runs in this process: see conftest.run_qrelkit_here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from qrelkit.io import read_pairs, read_qrels, write_run

pytestmark = pytest.mark.slow
LLM = "gguf:smollm2-135m" if importlib.util.find_spec("llama_cpp") else "hf:smollm2-135m"


def test_cli_chain_from_folder_to_evaluation(tmp_path, small_corpus, qrelkit_here):
    def run(*args):
        r = qrelkit_here(*args)  # in tmp_path
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    # the entry point in a fresh process, as a user runs it (the stages below run through it in this process)
    fresh = subprocess.run([sys.executable, "-m", "qrelkit", "ingest", "--help"], capture_output=True, text=True)
    assert fresh.returncode == 0 and "Usage" in fresh.stdout
    docs = tmp_path / "docs"
    docs.mkdir()
    for d in small_corpus:
        (docs / f"{d.doc_id}.txt").write_text(d.text)
    cache = str(tmp_path / "cache.sqlite")
    run("ingest", str(docs), "-o", "documents.parquet")
    run(
        "synth",
        "documents.parquet",
        "-o",
        "queries.jsonl",
        "--llm",
        LLM,
        "--n-seeds",
        "6",
        "--cache",
        cache,
    )
    queries = [json.loads(x) for x in (tmp_path / "queries.jsonl").read_text().splitlines()]
    assert queries and all(q["seed_doc_id"].endswith(".txt") and q["prompt_id"] for q in queries)
    run("mine", "queries.jsonl", "documents.parquet", "-o", "pairs.parquet", "--k", "3")
    pairs = read_pairs(tmp_path / "pairs.parquet")
    assert {p.source for p in pairs} >= {"seed"}
    run("judge", "pairs.parquet", "-o", "teacher.qrels", "--llm", LLM, "--cache", cache)
    teacher = read_qrels(tmp_path / "teacher.qrels")
    assert set(teacher) == {(p.qid, p.doc_id) for p in pairs}
    judgments = [json.loads(x) for x in (tmp_path / "teacher.judgments.jsonl").read_text().splitlines()]
    assert all(len(j["probs"]) == 4 and 0 <= j["expected"] <= 3 for j in judgments)
    if len(set(teacher.values())) < 2:
        pytest.skip("SmolLM2 gave one grade to every pair: nothing to distil")
    run("distill", "pairs.parquet", "teacher.qrels", "-o", "model")
    run("label", "pairs.parquet", "-m", "model", "-o", "labels.qrels")
    run("label", "pairs.parquet", "-m", "model", "-o", "labels.jsonl")
    labels = read_qrels(tmp_path / "labels.qrels")
    assert set(labels) == set(teacher)
    rows = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert all(0 <= r["score"] <= 3 for r in rows)
    r = run("evaluate", "labels.qrels", "--human", "teacher.qrels", "-o", "metrics.json")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == len(teacher) and "κ" in r.stdout
    # evaluate systems with the student: pool two runs over the mined pairs, label the pool, score the runs
    bm25 = {p.qid: {} for p in pairs}
    for p in pairs:
        bm25[p.qid][p.doc_id] = p.bm25_score if p.bm25_score is not None else 100.0  # the seed document first
    write_run(tmp_path / "runs" / "bm25.run", bm25, tag="bm25")
    write_run(tmp_path / "runs" / "reversed.run", {q: {d: -s for d, s in ds.items()} for q, ds in bm25.items()}, "rev")
    run(
        "pool",
        "runs",
        "--queries",
        "queries.jsonl",
        "--docs",
        "documents.parquet",
        "--depth",
        "2",
        "-o",
        "pool.parquet",
    )
    run("label", "pool.parquet", "-m", "model", "-o", "pool.qrels")
    pooled = read_qrels(tmp_path / "pool.qrels")
    assert set(pooled) <= set(labels) and {q for q, _ in pooled} == {p.qid for p in pairs}
    r = run("leaderboard", "runs", "--qrels", "pool.qrels", "-o", "board.json")
    board = json.loads((tmp_path / "board.json").read_text())
    assert set(board) == {"bm25", "reversed"} and board["bm25"]["Judged@10"] > 0 and "| bm25" in r.stdout
    r = run("evaluate", "labels.qrels", "--human", "teacher.qrels", "--runs", "runs", "--bootstrap", "0")
    assert "2 systems ranked by nDCG@10" in r.stdout
    # the teacher's grade distribution as soft labels of a classification head; two judges as an ensemble
    run("distill", "pairs.parquet", "teacher.qrels", "-o", "soft", "--head", "logistic")
    card = json.loads((tmp_path / "soft" / "card.json").read_text())
    assert card["head"] == "logistic" and card["target"] == "teacher grade distribution (soft labels)"
    (tmp_path / "second.qrels").write_text("".join(f"{q} 0 {d} {min(g + 1, 3)}\n" for (q, d), g in teacher.items()))
    run("distill", "pairs.parquet", "teacher.qrels", "second.qrels", "-o", "duo")
    assert json.loads((tmp_path / "duo" / "card.json").read_text())["teacher"] == "ensemble of 2 judges"
    run(
        "report",
        "student=labels.qrels",
        "teacher.qrels",
        "--human",
        "teacher.qrels",
        "--reference",
        "teacher",
        "--bootstrap",
        "20",
        "-o",
        "rep",
    )
    assert "data:image/png;base64," in (tmp_path / "rep" / "report.html").read_text()
    # A rerun of judge is served from the cache.
    run("judge", "pairs.parquet", "-o", "again.qrels", "--llm", LLM, "--cache", cache)
    again = [json.loads(x) for x in (tmp_path / "again.judgments.jsonl").read_text().splitlines()]
    assert all(j["cached"] for j in again)


@pytest.mark.slow
def test_demo_act2_teaches_a_student_with_gpt4o_grades_and_scores_it_on_unseen_queries(tmp_path):
    from qrelkit.demo import TREC_DIR, run_act2, summary_lines
    from qrelkit.evaluate import agreement
    from qrelkit.io import iter_jsonl

    act2 = run_act2(tmp_path)
    train = {r["qid"] for _, r in iter_jsonl(TREC_DIR / "train.jsonl")}
    test = [r for _, r in iter_jsonl(TREC_DIR / "test.jsonl")]
    assert not train & {r["qid"] for r in test}  # the student never saw a test query
    labels = read_qrels(tmp_path / "act2" / "student.qrels")
    assert set(labels) == {(r["qid"], r["doc_id"]) for r in test}
    # GPT-4o's row is its recorded grades against the NIST grades, computed the same way as the student's
    expected = agreement([r["gpt4o"] for r in test], [r["human"] for r in test])
    assert act2["gpt4o"]["kappa"] == pytest.approx(expected["kappa"])
    # the student learned from GPT-4o: it agrees with humans well beyond chance (measured 0.21; GPT-4o 0.32)
    assert act2["student"]["kappa"] > 0.1 and act2["student"]["pairs_per_s"] > 0
    # reading each test query's 60 pairs as its pool (measured 0.32 against the plain student's 0.24)
    assert set(read_qrels(tmp_path / "act2" / "student-pool.qrels")) == set(labels)
    assert act2["pool_student"]["kappa"] > act2["student"]["kappa"]
    act1 = {"teacher": act2["gpt4o"], "student": act2["student"], "speedup": 2.0}
    lines = summary_lines(act1, act2, "test-teacher")
    assert len(lines) == 3 and lines[2].startswith("Verdict:") and "--query-context" in lines[1]


def test_demo_act1_grades_a_fixed_sample_of_every_human_graded_query(tmp_path):
    from collections import Counter

    from qrelkit.demo import DEMO_DIR, write_eval_pairs
    from qrelkit.io import iter_jsonl

    human = read_qrels(DEMO_DIR / "human.qrels")
    assert write_eval_pairs(tmp_path / "a.jsonl", 4) == 4 * len({q for q, _ in human})
    rows = [r for _, r in iter_jsonl(tmp_path / "a.jsonl")]
    assert set(Counter(r["qid"] for r in rows).values()) == {4}
    assert all((r["qid"], r["doc_id"]) in human and r["text"] for r in rows)
    write_eval_pairs(tmp_path / "b.jsonl", 4)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()  # the same sample every run
    assert write_eval_pairs(tmp_path / "all.jsonl") == len(human)
