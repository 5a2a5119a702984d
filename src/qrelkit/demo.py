"""The embedded default run, in two acts.

Act 1, the machinery: on a sample of TREC DL 2023 (LLMJudge dev split) the offline LLM writes queries from the
demo passages, BM25 mines near misses, the LLM teacher grades them, the student is distilled, and both grade the
human-labelled pairs. Act 2, the claim: a student distilled from recorded GPT-4o grades of 20 TREC DL 2020
queries grades 16 other queries; its agreement with the NIST assessors is set beside GPT-4o's own on the same
pairs. Ends with three lines a person reads at a glance.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from .demo_data import DEMO_DIR, TREC_DIR, judged_pairs
from .evaluate import format_confusion, format_table
from .io import iter_jsonl, write_jsonl, write_qrels
from .llm import DEFAULT_LLM
from .pipeline import distill_file, evaluate_file, label_file, run_pipeline

PAIR_FIELDS = ("qid", "query", "doc_id", "text")


def write_eval_pairs(out: Path, per_query: int | None = None) -> int:
    """The human-graded demo pairs (``per_query`` of each query, drawn with a fixed seed, or all) as a JSONL of
    (qid, query, doc_id, text), for judge and label."""
    by_query: dict[str, list[dict[str, str]]] = {}
    for row in judged_pairs():
        by_query.setdefault(row["qid"], []).append(row)
    rng = random.Random(0)
    take = [r for rows in by_query.values() for r in rng.sample(rows, min(per_query or len(rows), len(rows)))]
    return write_jsonl(out, sorted(take, key=lambda r: (r["qid"], r["doc_id"])))


def demo_config(run_dir: Path, *, llm: str, n_seeds: int, per_doc: int, k: int) -> dict[str, Any]:
    return {
        "run_dir": str(run_dir),
        "llm": llm,
        "cache": "llm-cache.sqlite",
        "stages": [
            {"ingest": {"corpus": str(DEMO_DIR / "corpus.jsonl"), "out": "documents.parquet"}},
            {"synth": {"docs": "documents.parquet", "out": "queries.jsonl", "n_seeds": n_seeds, "per_doc": per_doc}},
            {"mine": {"queries": "queries.jsonl", "docs": "documents.parquet", "out": "pairs.parquet", "k": k}},
            {"judge": {"pairs": "pairs.parquet", "out": "teacher.qrels"}},
            {"distill": {"pairs": "pairs.parquet", "teacher": "teacher.qrels", "out": "student"}},
            {"judge_eval": {"stage": "judge", "pairs": "eval_pairs.jsonl", "out": "eval/teacher.qrels"}},
            {
                "label_eval": {
                    "stage": "label",
                    "pairs": "eval_pairs.jsonl",
                    "model": "student",
                    "out": "eval/student.qrels",
                }
            },
            {
                "evaluate_teacher": {
                    "stage": "evaluate",
                    "labels": "eval/teacher.qrels",
                    "human": str(DEMO_DIR / "human.qrels"),
                    "out": "eval/teacher.metrics.json",
                }
            },
            {
                "evaluate_student": {
                    "stage": "evaluate",
                    "labels": "eval/student.qrels",
                    "human": str(DEMO_DIR / "human.qrels"),
                    "out": "eval/student.metrics.json",
                }
            },
        ],
    }


def run_act2(run_dir: Path) -> dict[str, Any]:
    """A frozen MiniLM student distilled from GPT-4o's recorded grades of the training queries, then graded
    against the NIST assessors on the test queries beside GPT-4o's own grades of the same pairs; and the same with
    ``--query-context`` (each test query's 60 pairs are its pool)."""
    work = run_dir / "act2"
    train = [r for _, r in iter_jsonl(TREC_DIR / "train.jsonl")]
    test = [r for _, r in iter_jsonl(TREC_DIR / "test.jsonl")]
    write_jsonl(work / "train_pairs.jsonl", [{k: r[k] for k in PAIR_FIELDS} for r in train])
    write_jsonl(work / "test_pairs.jsonl", [{k: r[k] for k in PAIR_FIELDS} for r in test])
    write_qrels(work / "gpt4o.train.qrels", ((r["qid"], r["doc_id"], r["gpt4o"]) for r in train))
    write_qrels(work / "gpt4o.test.qrels", ((r["qid"], r["doc_id"], r["gpt4o"]) for r in test))
    write_qrels(work / "human.qrels", ((r["qid"], r["doc_id"], r["human"]) for r in test))
    trained = distill_file(work / "train_pairs.jsonl", work / "gpt4o.train.qrels", work / "student")
    labelled = label_file(work / "test_pairs.jsonl", work / "student", work / "student.qrels")
    student = evaluate_file(work / "student.qrels", work / "human.qrels")
    gpt4o = evaluate_file(work / "gpt4o.test.qrels", work / "human.qrels")
    student["pairs_per_s"] = labelled["pairs_per_s"]
    distill_file(work / "train_pairs.jsonl", work / "gpt4o.train.qrels", work / "student-pool", query_context=True)
    pooled = label_file(work / "test_pairs.jsonl", work / "student-pool", work / "student-pool.qrels")
    pool_student = evaluate_file(work / "student-pool.qrels", work / "human.qrels")
    pool_student["pairs_per_s"] = pooled["pairs_per_s"]
    return {
        "train_queries": len({r["qid"] for r in train}),
        "train_pairs": len(train),
        "test_queries": len({r["qid"] for r in test}),
        "test_pairs": len(test),
        "train_seconds": trained.get("train_seconds"),
        "gpt4o": gpt4o,
        "student": student,
        "pool_student": pool_student,
    }


def summary_lines(act1: dict[str, Any], act2: dict[str, Any], teacher: str) -> list[str]:
    """Three plain lines: what each act showed, and what it means."""
    t1, s1, speedup = act1["teacher"], act1["student"], act1["speedup"]
    g2, s2, p2 = act2["gpt4o"], act2["student"], act2["pool_student"]

    def share(m: dict[str, Any]) -> float:
        return float(m["kappa"] / g2["kappa"]) if g2["kappa"] > 0 else float("nan")

    return [
        f"Act 1 (offline, {teacher} teacher on LLM-written queries): teacher κ {t1['kappa']:.2f}, "
        f"student κ {s1['kappa']:.2f} with humans; the student labels {speedup:.0f}× faster than that teacher.",
        f"Act 2 (student taught by GPT-4o on {act2['train_queries']} TREC queries, tested on "
        f"{act2['test_queries']} unseen ones): GPT-4o κ {g2['kappa']:.2f}, student κ {s2['kappa']:.2f} with NIST "
        f"assessors ({p2['kappa']:.2f} with --query-context, each query's pool graded together), at "
        f"{s2['pairs_per_s']:.0f} pairs/s on this CPU.",
        f"Verdict: the student keeps {share(s2):.0%} of GPT-4o's agreement with humans on queries it never saw "
        f"({share(p2):.0%} reading each query's pool), for the price of CPU time; a stronger teacher makes a stronger "
        "student.",
    ]


def run_demo(
    run_dir: str | Path = "runs/demo",
    *,
    llm: str = DEFAULT_LLM,
    n_seeds: int = 10,
    per_doc: int = 3,
    k: int = 2,
    eval_per_query: int = 4,
    force: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline on the embedded sample; returns the comparison and writes ``report.md``."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_eval_pairs(run_dir / "eval_pairs.jsonl", eval_per_query)
    result = run_pipeline(demo_config(run_dir, llm=llm, n_seeds=n_seeds, per_doc=per_doc, k=k), force=force)
    stages = result["stages"]
    teacher_m, student_m = stages["evaluate_teacher"], stages["evaluate_student"]
    teacher_m["pairs_per_s"] = stages["judge_eval"]["pairs_per_s"]
    student_m["pairs_per_s"] = stages["label_eval"]["pairs_per_s"]
    teacher_name = str(stages["judge_eval"]["llm"])
    rows = {f"teacher ({teacher_name})": teacher_m, "student (MiniLM distilled)": student_m}
    table = format_table(rows, extra=[("pairs_per_s", "pairs/s")])
    speedup = student_m["pairs_per_s"] / teacher_m["pairs_per_s"]
    act2 = run_act2(run_dir)
    table2 = format_table(
        {
            "GPT-4o (recorded grades)": act2["gpt4o"],
            "student (MiniLM, taught by GPT-4o)": act2["student"],
            "student, --query-context (each query's pool together)": act2["pool_student"],
        },
        extra=[("pairs_per_s", "pairs/s")],
    )
    summary = summary_lines({"teacher": teacher_m, "student": student_m, "speedup": speedup}, act2, teacher_name)
    report = "\n".join(
        [
            "# qrelkit demo report",
            "",
            *summary,
            "",
            "## Act 1: the offline pipeline",
            "",
            "Embedded sample of TREC DL 2023 (LLMJudge dev split), human grades by NIST assessors.",
            "The student never saw these queries: it was trained on synthetic queries graded by the teacher.",
            "",
            f"- synthetic queries: {stages['synth'].get('queries')}, training pairs: {stages['mine'].get('pairs')}",
            f"- teacher grades of training pairs: {stages['judge'].get('grade_counts')}",
            f"- student training: {stages['distill'].get('train_seconds')} s",
            f"- student speed-up over teacher: {speedup:.0f}×",
            "",
            "### Agreement with human grades",
            "",
            table,
            "",
            "### Confusion (teacher)",
            "",
            format_confusion(teacher_m["confusion"]),
            "",
            "### Confusion (student)",
            "",
            format_confusion(student_m["confusion"]),
            "",
            "## Act 2: a student taught by GPT-4o, on TREC DL 2020 queries it never saw",
            "",
            f"Training: GPT-4o's recorded grades of {act2['train_pairs']} pairs of {act2['train_queries']} queries "
            f"({act2['train_seconds']} s). Test: {act2['test_pairs']} pairs of {act2['test_queries']} other queries "
            "with NIST grades; GPT-4o's grades of the same pairs were recorded from its API (not timed here).",
            "",
            table2,
            "",
            "### Confusion (student)",
            "",
            format_confusion(act2["student"]["confusion"]),
            "",
        ]
    )
    (run_dir / "report.md").write_text(report)
    (run_dir / "summary.json").write_text(
        json.dumps(
            {"teacher": teacher_m, "student": student_m, "speedup": speedup, "act2": act2, "summary": summary},
            indent=1,
        )
    )
    return {
        "run_dir": str(run_dir),
        "table": table,
        "table2": table2,
        "speedup": speedup,
        "summary": summary,
        "report": str(run_dir / "report.md"),
    }
