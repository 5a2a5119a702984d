"""The embedded default run: a sample of TREC DL 2023 (LLMJudge dev split) with real human grades.

Synthesises queries from the demo passages, mines BM25 negatives, has the offline LLM teacher grade
them, distils the student, then grades the human-labelled pairs with both and compares them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .evaluate import format_confusion, format_table
from .io import iter_jsonl, read_qrels, write_jsonl
from .llm import DEFAULT_LLM
from .pipeline import run_pipeline

DEMO_DIR = Path(__file__).parent / "data" / "demo"


def write_eval_pairs(out: Path) -> int:
    """The human-graded demo pairs as a JSONL of (qid, query, doc_id, text), for judge and label."""
    human = read_qrels(DEMO_DIR / "human.qrels")
    queries = {r["qid"]: r["text"] for _, r in iter_jsonl(DEMO_DIR / "queries.jsonl")}
    texts = {r["doc_id"]: r["text"] for _, r in iter_jsonl(DEMO_DIR / "corpus.jsonl")}
    rows = [{"qid": q, "query": queries[q], "doc_id": d, "text": texts[d]} for q, d in sorted(human)]
    return write_jsonl(out, rows)


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


def run_demo(
    run_dir: str | Path = "runs/demo",
    *,
    llm: str = DEFAULT_LLM,
    n_seeds: int = 24,
    per_doc: int = 3,
    k: int = 3,
    force: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline on the embedded sample; returns the comparison and writes ``report.md``."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_eval_pairs(run_dir / "eval_pairs.jsonl")
    result = run_pipeline(demo_config(run_dir, llm=llm, n_seeds=n_seeds, per_doc=per_doc, k=k), force=force)
    stages = result["stages"]
    teacher_m, student_m = stages["evaluate_teacher"], stages["evaluate_student"]
    teacher_m["pairs_per_s"] = stages["judge_eval"]["pairs_per_s"]
    student_m["pairs_per_s"] = stages["label_eval"]["pairs_per_s"]
    rows = {f"teacher ({stages['judge_eval']['llm']})": teacher_m, "student (MiniLM distilled)": student_m}
    table = format_table(rows, extra=[("pairs_per_s", "pairs/s")])
    speedup = student_m["pairs_per_s"] / teacher_m["pairs_per_s"]
    report = "\n".join(
        [
            "# qrelkit demo report",
            "",
            "Embedded sample of TREC DL 2023 (LLMJudge dev split), human grades by NIST assessors.",
            "The student never saw these queries: it was trained on synthetic queries graded by the teacher.",
            "",
            f"- synthetic queries: {stages['synth'].get('queries')}, training pairs: {stages['mine'].get('pairs')}",
            f"- teacher grades of training pairs: {stages['judge'].get('grade_counts')}",
            f"- student training: {stages['distill'].get('train_seconds')} s",
            f"- student speed-up over teacher: {speedup:.0f}×",
            "",
            "## Agreement with human grades",
            "",
            table,
            "",
            "## Confusion (teacher)",
            "",
            format_confusion(teacher_m["confusion"]),
            "",
            "## Confusion (student)",
            "",
            format_confusion(student_m["confusion"]),
            "",
        ]
    )
    (run_dir / "report.md").write_text(report)
    (run_dir / "summary.json").write_text(
        json.dumps({"teacher": teacher_m, "student": student_m, "speedup": speedup}, indent=1)
    )
    return {"run_dir": str(run_dir), "table": table, "speedup": speedup, "report": str(run_dir / "report.md")}
