"""Hard-negative mining: BM25 (bm25s) retrieves near-miss documents for each query."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import QrelkitError
from .records import Document, Pair, Query


class BM25Index:
    """A bm25s index over documents, English stopwords removed.

    >>> index = BM25Index(docs)                 # doctest: +SKIP
    >>> index.search(["vpn client"], k=10)      # doctest: +SKIP
    """

    def __init__(self, docs: Sequence[Document], *, show_progress: bool = False):
        import logging

        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import
        if not docs:
            raise QrelkitError("cannot index an empty corpus")
        self.doc_ids = [d.doc_id for d in docs]
        self._bm25s = bm25s
        corpus = [f"{d.title} {d.text}".strip() for d in docs]
        self.retriever = bm25s.BM25()
        self.retriever.index(
            bm25s.tokenize(corpus, stopwords="en", show_progress=show_progress), show_progress=show_progress
        )

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` document indices and scores per query (fewer when the corpus is smaller)."""
        k = min(k, len(self.doc_ids))
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        docs, scores = self.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return np.asarray(docs), np.asarray(scores)


def mine_pairs(
    queries: Sequence[Query], docs: Sequence[Document], *, k: int = 20, n_random: int = 2, seed: int = 0
) -> tuple[list[Pair], dict[str, Any]]:
    """For each query: its seed document (always, as the positive candidate), BM25's top ``k`` near misses,
    and ``n_random`` random documents.

    Random documents anchor the bottom of the scale: without them every training pair is a seed or a near
    miss, and a student learns that almost everything is relevant. Documents BM25 scores 0 (no shared
    term) are not near misses and are skipped.
    """
    by_id = {d.doc_id: d for d in docs}
    index = BM25Index(docs)
    idx, scores = index.search([q.text for q in queries], k=k)
    pairs: list[Pair] = []
    missing_seed = 0
    for qi, q in enumerate(queries):
        taken: set[str] = set()
        if q.seed_doc_id is not None:
            if q.seed_doc_id in by_id:
                seed_doc = by_id[q.seed_doc_id]
                pairs.append(Pair(qid=q.qid, query=q.text, doc_id=seed_doc.doc_id, text=seed_doc.text, source="seed"))
                taken.add(seed_doc.doc_id)
            else:
                missing_seed += 1
        for rank, (di, score) in enumerate(zip(idx[qi], scores[qi], strict=True), start=1):
            doc = docs[int(di)]
            if score <= 0:
                continue
            if doc.doc_id in taken:  # the seed found by BM25: record its rank on the seed row
                for p in pairs[::-1]:
                    if p.qid == q.qid and p.doc_id == doc.doc_id:
                        p.bm25_rank, p.bm25_score = rank, float(score)
                        break
                continue
            taken.add(doc.doc_id)
            pairs.append(
                Pair(
                    qid=q.qid,
                    query=q.text,
                    doc_id=doc.doc_id,
                    text=doc.text,
                    source="bm25",
                    bm25_rank=rank,
                    bm25_score=float(score),
                )
            )
        rng = random.Random(f"{seed}:{q.qid}")  # per query: adding queries does not change others' draws
        drawn = [docs[i] for i in rng.sample(range(len(docs)), min(len(docs), n_random + len(taken)))]
        pairs.extend(
            Pair(qid=q.qid, query=q.text, doc_id=d.doc_id, text=d.text, source="random")
            for d in [d for d in drawn if d.doc_id not in taken][:n_random]
        )
    by_source = {src: sum(p.source == src for p in pairs) for src in ("seed", "bm25", "random")}
    stats = {"queries": len(queries), "pairs": len(pairs), "missing_seed": missing_seed, "by_source": by_source}
    return pairs, stats
