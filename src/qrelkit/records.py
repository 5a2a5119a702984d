"""Typed records that flow between the pipeline stages."""

from __future__ import annotations

from pydantic import BaseModel, Field

GRADES = (0, 1, 2, 3)

PairKey = tuple[str, str]
"""(qid, doc_id): how every stage names a query–document pair."""

Qrels = dict[PairKey, int]
"""Graded pairs, as in a TREC qrels file: (qid, doc_id) → grade."""


def clip_grade(grade: int) -> int:
    """A grade on the 0–3 scale (TREC files and LLM judges may write -1, 4 or 10)."""
    return min(max(grade, GRADES[0]), GRADES[-1])


class Document(BaseModel):
    """A corpus document (``documents.parquet`` row)."""

    doc_id: str
    text: str
    title: str = ""


class Query(BaseModel):
    """A query (``queries.jsonl`` line). Synthetic queries keep their seed document and prompt."""

    qid: str
    text: str
    style: str = "human"
    seed_doc_id: str | None = None
    prompt_id: str | None = None


class Pair(BaseModel):
    """A query–document pair to grade (``pairs.parquet`` row)."""

    qid: str
    query: str
    doc_id: str
    text: str
    source: str = "given"  # seed | bm25 | given
    bm25_rank: int | None = None
    bm25_score: float | None = None


class Judgment(BaseModel):
    """A teacher's grade for one pair (``judgments.jsonl`` line)."""

    qid: str
    doc_id: str
    grade: int | None = Field(default=None, description="argmax grade, None when the answer was unusable")
    expected: float | None = None
    probs: list[float] | None = None
    mass: float | None = Field(default=None, description="probability the model put on the four grade tokens")
    raw: str = ""
    model: str = ""
    prompt_id: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
