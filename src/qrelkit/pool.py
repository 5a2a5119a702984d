"""TREC pooling: the pairs to label when the labels will score retrieval systems.

Each system's run ranks documents per query; the pool of a query is the union of every run's top ``depth``
documents. Labelled, the pool judges every document that a measure cut at ``depth`` (nDCG@10 at depth 10) reads,
for every run, so no run is scored on documents nobody graded.

>>> pairs, stats = pool_pairs(read_runs(["runs/"]), queries, documents, depth=10)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .errors import QrelkitError
from .io import Run
from .records import Document, Pair

log = logging.getLogger("qrelkit")


def pool_pairs(
    runs: Mapping[str, Run], queries: Mapping[str, str], docs: Mapping[str, Document], *, depth: int = 10
) -> tuple[list[Pair], dict[str, Any]]:
    """The union of every run's top ``depth`` documents per query, as pairs with their texts, ordered by query
    and by the best rank any run gave the document. A query without text, or a document missing from ``docs``,
    is left out and counted (with a warning): it cannot be graded."""
    if depth < 1:
        raise QrelkitError(f"depth must be at least 1, got {depth}")
    best_rank: dict[tuple[str, str], int] = {}
    for run in runs.values():
        for qid, scored in run.items():
            ranked = sorted(scored, key=lambda d: (-scored[d], d))[:depth]  # TREC order: score, then doc id
            for rank, doc_id in enumerate(ranked, start=1):
                key = (qid, doc_id)
                best_rank[key] = min(rank, best_rank.get(key, rank))
    no_text = sorted({q for q, _ in best_rank if q not in queries})
    missing = sorted({d for q, d in best_rank if d not in docs and q in queries})
    pairs = [
        Pair(qid=q, query=queries[q], doc_id=d, text=docs[d].text, source="pool")
        for (q, d), _ in sorted(best_rank.items(), key=lambda item: (item[0][0], item[1], item[0][1]))
        if q in queries and d in docs
    ]
    if no_text:
        log.warning(
            "%d queries of the runs have no text in the queries file (e.g. %s): left out", len(no_text), no_text[0]
        )
    if missing:
        log.warning("%d documents of the runs are not in the corpus (e.g. %s): left out", len(missing), missing[0])
    if not pairs:
        raise QrelkitError("the pool is empty: do the runs' query and document ids match the queries and corpus?")
    stats = {
        "runs": len(runs),
        "depth": depth,
        "queries": len({p.qid for p in pairs}),
        "pairs": len(pairs),
        "queries_without_text": len(no_text),
        "documents_not_in_corpus": len(missing),
    }
    return pairs, stats
