"""The data embedded with the package for the demo (and, for the export's int8 check, its judged pairs)."""

from __future__ import annotations

from pathlib import Path

from .io import iter_jsonl, read_qrels

DEMO_DIR = Path(__file__).parent / "data" / "demo"
TREC_DIR = Path(__file__).parent / "data" / "trec-dl2020"


def judged_pairs() -> list[dict[str, str]]:
    """Every human-graded demo pair as a (qid, query, doc_id, text) row, sorted by (qid, doc_id)."""
    queries = {str(r["qid"]): str(r["text"]) for _, r in iter_jsonl(DEMO_DIR / "queries.jsonl")}
    texts = {str(r["doc_id"]): str(r["text"]) for _, r in iter_jsonl(DEMO_DIR / "corpus.jsonl")}
    return [
        {"qid": q, "query": queries[q], "doc_id": d, "text": texts[d]}
        for q, d in sorted(read_qrels(DEMO_DIR / "human.qrels"))
    ]
