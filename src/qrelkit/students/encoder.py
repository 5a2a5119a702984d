"""The CPU student: a frozen MiniLM bi-encoder plus query-agnostic lexical signals, combined by a small
head fitted to the teacher's grades, then cut into 0–3 by ordinal thresholds.

Why frozen: a fresh head trained on a few thousand teacher labels of a few queries learns those
queries, not relevance, and scores below the base's own cosine similarity on unseen queries. Keeping
the encoder's similarity as a feature keeps its pretrained relevance knowledge; the head only learns
how the teacher maps similarity and term overlap to grades.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QrelkitError
from ..io import folder_replaced
from ..models import MINILM_ALIAS, resolve_encoder
from ..progress import progress_enabled
from ..records import Pair
from ..tables import markdown_table
from .grading import (
    clip_for_tokens,
    content_terms,
    distribution_thresholds,
    grades_from_thresholds,
    is_content_piece,
    strip_query_echoes,
)

FEATURES = ("cosine", "term_overlap", "query_terms", "log_doc_words", "cosine_x_overlap")
# Late interaction on the frozen encoder's own token vectors (as ColBERT scores, without training them): each
# content word-piece of the query against its best-matching passage token. The pooled cosine blurs a passage into
# one topic; these say whether every part of the query is matched somewhere. Same forward pass as the cosine.
LATE_FEATURES = ("maxsim_mean", "maxsim_min", "maxsim_over_0.6", "maxsim_over_0.8")
# Query context (a student made with ``query_context``): where a pair's cosine and late-interaction match stand
# among the other pairs of the same query in one call (a TREC pool, BM25's top k): z-score, percentile, distance to
# the query's best, and the query's best and mean. A cosine of 0.5 is a strong match for a hard query and a weak one
# for an easy query; the pool says which. Such a student's grade of a pair depends on the pairs labeled with it.
CONTEXT_OF = ("cosine", "maxsim_mean")
CONTEXT_STATS = ("z", "percentile", "below_best", "query_best", "query_mean")
# What students trained since 2026-11-30's pool feedback read: not the query's best and mean, the same for every pair
# of a query. With a few dozen training queries a head learnt a per-query offset from them (no agreement gained
# across four collections), and int8's small error in the query's best moved every grade of a query at once.
POOL_STATS = ("z", "percentile", "below_best")
# Pseudo-relevance feedback from the same pool (query-context students trained since 2026-11-30): a passage like
# the query's best other passages is likely relevant even where its own cosine to a short query is modest, and one
# unlike every other passage of the pool is likely off topic. Each passage is compared with the others only.
FEEDBACK = ("feedback_top3", "feedback_top10", "pool_centrality", "pool_centrality_weighted")
FEEDBACK_DEPTHS = (3, 10)
FEEDBACK_SHARPNESS = 20.0  # weights exp(20 · cosine): a passage 0.1 below the best counts e^-2 as much
TOKEN_CACHE_BYTES = 512 * 2**20  # token vectors are kept in fp16: ~75 KB a 100-token passage with MiniLM
# A query-context student grades a query that comes with fewer pairs than this by a second head on the pair's own
# columns (its "small_pools" head): measured on four TREC collections (pools cut into random chunks, spline head,
# mean κ / quadratic κ vs NIST), the pool columns of 1 pair gave 0.036 / 0.036, of 2 0.165 / 0.342, of 3 0.200 /
# 0.401, of 5 0.217 / 0.446, of 10 0.232 / 0.487, against 0.195 / 0.436 without them.
SMALL_POOL = 5


def feature_layout(*, late_interaction: bool, query_context: bool) -> tuple[str, ...]:
    """The columns a frozen student made today reads: :data:`FEATURES`, then :data:`LATE_FEATURES` (with
    ``late_interaction``), then for ``query_context`` the :func:`context_names` of :data:`POOL_STATS` and
    :data:`FEEDBACK`. Each layout is a prefix of the next (the cross-collection experiment's cached rows rely on it)."""
    names = FEATURES + LATE_FEATURES if late_interaction else FEATURES
    return names + context_names(names, POOL_STATS) + FEEDBACK if query_context else names


def context_names(features: Sequence[str], stats: Sequence[str] = CONTEXT_STATS) -> tuple[str, ...]:
    """The query-context columns added to ``features`` (those of :data:`CONTEXT_OF` among them): ``stats`` of each
    (:data:`CONTEXT_STATS`, as students saved before the pool feedback read, or :data:`POOL_STATS`)."""
    return tuple(f"{c}_{stat}" for c in CONTEXT_OF if c in features for stat in stats)


def query_context(
    x: np.ndarray, queries: Sequence[str], features: Sequence[str], stats: Sequence[str] = CONTEXT_STATS
) -> np.ndarray:
    """The :func:`context_names` columns (``stats``) of feature rows ``x`` (columns ``features``): each row against
    the rows of the same query text. A query with one pair gets z 0, percentile 0.5 and distance 0."""
    from scipy.stats import rankdata

    every: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "z": lambda v: (v - v.mean()) / (v.std() + 1e-6),
        "percentile": lambda v: (rankdata(v) - 0.5) / len(v),
        "below_best": lambda v: v.max() - v,
        "query_best": lambda v: np.full(len(v), v.max()),
        "query_mean": lambda v: np.full(len(v), v.mean()),
    }
    unknown = set(stats) - set(every)
    if unknown:
        raise QrelkitError(f"unknown pool statistic(s) {', '.join(sorted(unknown))}; known: {', '.join(every)}")
    columns = [list(features).index(c) for c in CONTEXT_OF if c in features]
    out = np.zeros((len(x), len(columns) * len(stats)))
    for rows in _rows_by_query(queries).values():
        for j, c in enumerate(columns):
            v = x[rows, c]
            out[rows, j * len(stats) : (j + 1) * len(stats)] = np.column_stack([every[s](v) for s in stats])
    return out


def _rows_by_query(queries: Sequence[str]) -> dict[str, list[int]]:
    """Positions of each query text's pairs (the pool of a query-context student)."""
    rows: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        rows.setdefault(q, []).append(i)
    return rows


def pool_feedback(query_emb: np.ndarray, doc_emb: np.ndarray, queries: Sequence[str]) -> np.ndarray:
    """The :data:`FEEDBACK` columns of pairs with unit embeddings ``query_emb`` and ``doc_emb``, each passage
    against the other passages of the same query text: its cosine to the centroid of the query's 3 and 10 best
    others (by cosine to the query), its mean cosine to all others, and the same weighted by how well each other
    passage matches the query. A query with one pair has no others: zeros. Linear in a query's pairs (no pair-by-pair
    matrix), so a pool of thousands costs no more than its embeddings."""
    out = np.zeros((len(queries), len(FEEDBACK)))
    for rows in _rows_by_query(queries).values():
        if len(rows) < 2:
            continue
        docs = np.asarray(doc_emb[rows], dtype=np.float64)
        cosine = docs @ np.asarray(query_emb[rows[0]], dtype=np.float64)
        self_dot = np.einsum("ij,ij->i", docs, docs)
        columns = [_leave_one_out_centroid_cosine(docs, np.argsort(-cosine, kind="stable"), k) for k in FEEDBACK_DEPTHS]
        columns.append((docs @ docs.sum(axis=0) - self_dot) / (len(rows) - 1))
        weight = np.exp(FEEDBACK_SHARPNESS * (cosine - cosine.max()))
        others = np.maximum(weight.sum() - weight, 1e-300)
        columns.append((docs @ (weight @ docs) - weight * self_dot) / others)
        out[rows] = np.column_stack(columns)
    return out


def with_small_pool_head(
    head: dict[str, Any], x: np.ndarray, target: np.ndarray, teacher_grades: np.ndarray, **fit: Any
) -> dict[str, Any]:
    """A query-context ``head`` (fit on rows ``x``) with a second head of the same kind on the rows' own columns (no
    pool columns), for the queries labeled with fewer than :data:`SMALL_POOL` pairs."""
    own = [n for n in head["features"] if n in FEATURES + LATE_FEATURES]
    small = fit_head(x[:, : len(own)], target, teacher_grades, features=own, kind=head["kind"], **fit)
    return {**head, "small_pools": {"min_pool": SMALL_POOL, "head": small}}


def onto_cut_points(scores: np.ndarray, cuts: Sequence[float], onto: Sequence[float]) -> np.ndarray:
    """``scores`` cut at ``cuts`` moved, piecewise linearly, so that each cut point lands on its counterpart in
    ``onto`` (beyond the outer cut points, by a shift): grades by ``onto`` then equal grades by ``cuts``, and one
    set of cut points serves two heads (the checked runtime's margin reads them)."""
    src = np.asarray(cuts, dtype=np.float64)
    dst = np.asarray(onto, dtype=np.float64)
    eps = 1e-9 * (1.0 + np.abs(src).max())
    src = np.maximum.accumulate(src + eps * np.arange(len(src)))  # equal cut points (an empty grade): keep order
    s = np.asarray(scores, dtype=np.float64)
    moved = np.interp(s, src, dst)
    moved = np.where(s < src[0], s - src[0] + dst[0], moved)
    return np.where(s > src[-1], s - src[-1] + dst[-1], moved)


def _warn_on_lone_pairs(queries: Sequence[str]) -> None:
    """A query-context student grades a query's one pair without a pool (its feedback columns are zero, which no
    training pool had): say so, once per call site, so that single pairs are not labeled unknowingly."""
    counts = Counter(queries)
    lone = sum(1 for n in counts.values() if n == 1)
    if lone:
        warnings.warn(
            f"{lone} of {len(counts)} queries came with one pair: this student grades each pair among its query's "
            "other pairs (query context) and a lone pair has none: label a pool of each query's passages together",
            UserWarning,
            stacklevel=3,
        )


def _leave_one_out_centroid_cosine(docs: np.ndarray, order: np.ndarray, depth: int) -> np.ndarray:
    """Each row's cosine to the centroid of the ``depth`` best rows other than itself (``order``: best first)."""
    top = order[: depth + 1]
    centroid = np.tile(docs[order[:depth]].sum(axis=0), (len(docs), 1))
    if len(top) > depth:  # a row among the best is replaced by the next best
        centroid[order[:depth]] = docs[top].sum(axis=0) - docs[order[:depth]]
    else:  # fewer than depth others: all of them
        centroid[top] = docs[top].sum(axis=0) - docs[top]
    norms = np.linalg.norm(centroid, axis=1)
    return np.asarray(np.einsum("ij,ij->i", docs, centroid) / np.maximum(norms, 1e-12))


def has_query_context(features: Sequence[str]) -> bool:
    """Whether a head's feature columns include query-context ones (:func:`context_names`, :data:`FEEDBACK`)."""
    return bool(set(context_names(FEATURES + LATE_FEATURES) + FEEDBACK) & set(features))


def _context_stats(features: Sequence[str]) -> tuple[str, ...]:
    """Which :data:`CONTEXT_STATS` a student's feature columns hold."""
    return tuple(s for s in CONTEXT_STATS if f"{CONTEXT_OF[0]}_{s}" in features)


def saved_with_query_context(path: str | Path) -> bool:
    """Whether the frozen student folder ``path`` reads query context (without loading its encoder)."""
    head = json.loads((student_dir(path) / "head.json").read_text())
    return has_query_context(head.get("features") or [])


def student_dir(path: str | Path) -> Path:
    """``path`` as a student folder (one that :meth:`Student.save` wrote), or a clear error."""
    p = Path(path)
    if not (p / "head.json").exists():
        raise QrelkitError(f"{p}: not a qrelkit student folder (no head.json)")
    return p


class Student:
    """A relevance labeler distilled from a teacher. Save with :meth:`save`, load with :meth:`load`.

    >>> student = Student.load("runs/demo/student")                        # doctest: +SKIP
    >>> scores, grades = student.predict(["vpn client"], ["Install the VPN client from ..."])  # doctest: +SKIP
    """

    def __init__(
        self, encoder: Any, head: dict[str, Any], card: dict[str, Any] | None = None, *, cache_size: int = 100_000
    ):
        self.encoder = encoder
        self.head = head
        self.card = card or {}
        # The encoder is frozen, so a text's embedding never changes: labeling BM25 top-k pairs meets the
        # same passages and queries again and again. Bounded FIFO keyed by a digest (≈1.6 KB an entry).
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._tokens = _TokenCache(TOKEN_CACHE_BYTES if cache_size > 0 else 0)
        self._pieces: tuple[Any, np.ndarray, np.ndarray] | None = None  # see _piece_table
        self._cache_owner = id(encoder)
        bases = (FEATURES, FEATURES + LATE_FEATURES)
        known = []
        for base in bases:  # no context; before pool feedback; its first hours; since
            pooled = (context_names(base), context_names(base) + FEEDBACK, context_names(base, POOL_STATS) + FEEDBACK)
            known += [base, *((*base, *extra) for extra in pooled)]
        if self.feature_names not in known:
            raise QrelkitError(f"unknown student features {list(self.feature_names)}: made by a newer qrelkit?")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The columns of :meth:`features`: the head's, or before training :data:`FEATURES` (plus
        :data:`LATE_FEATURES` for a student made with ``late_interaction``, then the :func:`context_names` of
        :data:`POOL_STATS` and :data:`FEEDBACK` for one made with ``query_context``; students saved before the pool
        feedback read the five :data:`CONTEXT_STATS` and no feedback, and label as they did)."""
        if self.head.get("features"):
            return tuple(self.head["features"])
        return feature_layout(
            late_interaction=bool(self.card.get("late_interaction")), query_context=bool(self.card.get("query_context"))
        )

    @property
    def query_context(self) -> bool:
        """Whether a pair's grade depends on the other pairs of its query in the same call (see
        :func:`query_context`): label a query's pairs together."""
        return has_query_context(self.feature_names)

    def clear_cache(self) -> None:
        """Forget cached embeddings (benchmarks call this so that every timed text is really encoded)."""
        self._cache.clear()
        self._tokens.clear()

    def with_head(self, head: dict[str, Any], card: dict[str, Any] | None = None) -> Student:
        """A student sharing this one's encoder and embedding cache, with another head (k-fold training
        fits many heads over one frozen encoder)."""
        sibling = Student(self.encoder, head, {**self.card, **(card or {})}, cache_size=self.cache_size)
        sibling._cache, sibling._tokens = self._cache, self._tokens
        return sibling

    # ------------------------------------------------------------ construction

    @classmethod
    def from_base(
        cls,
        base: str = MINILM_ALIAS,
        *,
        max_length: int = 256,
        device: str = "cpu",
        strip_echoes: bool = True,
        late_interaction: bool = False,
    ) -> Student:
        """An untrained student over the frozen ``base``; ``late_interaction`` adds :data:`LATE_FEATURES`."""
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(resolve_encoder(base), device=device)
        encoder.max_seq_length = max_length
        card = {"base": base, "max_length": max_length, "strip_query_echoes": strip_echoes}
        if late_interaction:
            card["late_interaction"] = True
        return cls(encoder, head={}, card=card)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", runtime: str = "torch") -> Student:
        """Load a student folder written by :meth:`save` (or ``qrelkit distill``).

        ``runtime``: ``torch`` (sentence-transformers), ``onnx`` (ONNX Runtime fp32) or ``onnx-int8`` (dynamic
        int8 quantisation); the ONNX files come from :func:`qrelkit.students.onnx.export_onnx` (``qrelkit export``).
        """
        from .onnx import (
            ONNX_FILES,
            TOKENS_OUTPUT,
            OnnxEncoder,
            onnx_tokenizer,
            tokenless_export_error,
            unknown_runtime_error,
        )

        p = student_dir(path)
        if runtime != "torch" and runtime not in ONNX_FILES:
            raise unknown_runtime_error(runtime)
        head = json.loads((p / "head.json").read_text())
        card = json.loads((p / "card.json").read_text()) if (p / "card.json").exists() else {}
        max_length = int(card.get("max_length", 256))
        encoder: Any
        if runtime == "torch":
            from sentence_transformers import SentenceTransformer

            encoder = SentenceTransformer(str(p / "encoder"), device=device)
            encoder.max_seq_length = max_length
        else:
            encoder = OnnxEncoder(p / ONNX_FILES[runtime], onnx_tokenizer(p / "encoder"), max_length=max_length)
        student = cls(encoder, head, {**card, "runtime": runtime})
        if (
            runtime != "torch"
            and LATE_FEATURES[0] in student.feature_names
            and TOKENS_OUTPUT not in encoder.output_names
        ):
            raise tokenless_export_error(encoder.model_path)
        return student

    def save(self, path: str | Path) -> None:
        with folder_replaced(path) as tmp:
            self.encoder.save(str(tmp / "encoder"))
            (tmp / "head.json").write_text(json.dumps(self.head, indent=1))
            (tmp / "card.json").write_text(json.dumps(self.card, indent=1, default=str))
            (tmp / "README.md").write_text(model_card(self.card, self.head))

    # ------------------------------------------------------------ features and prediction

    def features(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """One row of :attr:`feature_names` per pair. Each distinct text is embedded once. Students trained with
        the keyword-stuffing defence (card ``strip_query_echoes``) read each passage without copies of its query."""
        x, query_emb, doc_emb = self.pair_features(queries, docs, batch_size=batch_size)
        return self.with_pool_columns(x, query_emb, doc_emb, queries)

    def pair_features(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each pair's own columns of :attr:`feature_names` (:data:`FEATURES`, :data:`LATE_FEATURES`: nothing read
        from other pairs), and the unit query and passage embeddings they came from."""
        late = LATE_FEATURES[0] in self.feature_names
        docs = self._stripped(queries, docs)
        read = self._clipped(docs)
        if late:
            q_emb, q_tokens = self._embed_tokens(queries, batch_size, query=True)
            d_emb, d_tokens = self._embed_tokens(read, batch_size, query=False)
        else:
            q_emb, d_emb = self._embed(queries, batch_size), self._embed(read, batch_size)
        cosine = np.sum(q_emb * d_emb, axis=1)
        rows = []
        for q, d, c in zip(queries, docs, cosine, strict=True):
            qt, dt = content_terms(q), content_terms(d)
            overlap = len(qt & dt) / len(qt) if qt else 0.0
            rows.append([c, overlap, math.log1p(len(qt)), math.log1p(len(d.split())), c * overlap])
        x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
        if late:
            x = np.column_stack([x, late_interaction(q_tokens, d_tokens)])
        return x, q_emb, d_emb

    def with_pool_columns(
        self, x: np.ndarray, query_emb: np.ndarray, doc_emb: np.ndarray, queries: Sequence[str]
    ) -> np.ndarray:
        """:meth:`pair_features` rows with the query-context columns this student reads (none for most), each pair
        among the pairs of its query in ``queries``."""
        names = FEATURES + LATE_FEATURES if LATE_FEATURES[0] in self.feature_names else FEATURES
        if stats := _context_stats(self.feature_names):
            x = np.column_stack([x, query_context(x, queries, names, stats)])
        if FEEDBACK[0] in self.feature_names:
            x = np.column_stack([x, pool_feedback(query_emb, doc_emb, queries)])
            if "small_pools" not in self.head:  # students since have a head for small pools
                _warn_on_lone_pairs(queries)
        return x

    def embeddings(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """The unit embeddings of each pair's query and passage (the passage as :meth:`features` reads it)."""
        return self._embed(queries, batch_size), self._embed(self._clipped(self._stripped(queries, docs)), batch_size)

    def _stripped(self, queries: Sequence[str], docs: Sequence[str]) -> Sequence[str]:
        """The passages without copies of their query, for students trained with the keyword-stuffing defence
        (card ``strip_query_echoes``)."""
        if self.card.get("strip_query_echoes"):
            return [strip_query_echoes(q, d) for q, d in zip(queries, docs, strict=True)]
        return docs

    def _clipped(self, docs: Sequence[str]) -> list[str]:
        """The passages as the encoder reads them: their first tokens."""
        max_length = int(getattr(self.encoder, "max_seq_length", None) or self.card.get("max_length", 256))
        return [clip_for_tokens(d, max_length) for d in docs]

    def _embed(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        keys = self._cache_keys(texts)
        todo = [t for t, k in keys.items() if k not in self._cache]
        found = {t: self._cache[k] for t, k in keys.items() if k in self._cache}
        if todo:
            show = len(todo) > 500 and progress_enabled()
            emb = self.encoder.encode(
                todo, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=show
            )
            for t, e in zip(todo, np.asarray(emb), strict=True):
                found[t] = e = e.copy()  # a row of its own, so the batch array can be freed
                if self.cache_size > 0:
                    self._cache[keys[t]] = e
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

    def _embed_tokens(
        self, texts: Sequence[str], batch_size: int, *, query: bool
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Pooled embeddings and unit token vectors (a query's content word-pieces, a passage's every token) from
        one forward pass per distinct text, cached together (a text's role is part of its key)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), []
        keys = self._cache_keys(texts, role=b"q" if query else b"d")
        found = {t: hit for t, k in keys.items() if (hit := self._tokens.get(k)) is not None}
        todo = [t for t in keys if t not in found]
        if todo:
            show = len(todo) > 500 and progress_enabled()
            counted, content = self._piece_table()
            for t, (pooled, tokens, ids) in zip(todo, encode_tokens(self.encoder, todo, batch_size, show), strict=True):
                keep = counted[ids]
                if query and (words := keep & content[ids]).any():  # a query of stop words only keeps them all
                    keep = words
                kept = tokens[keep]
                kept = kept / np.maximum(np.linalg.norm(kept, axis=1, keepdims=True), 1e-9)
                found[t] = (pooled, kept.astype(np.float16))
                self._tokens.put(keys[t], found[t])
        return np.stack([found[t][0] for t in texts]), [found[t][1] for t in texts]

    def _cache_keys(self, texts: Sequence[str], role: bytes = b"") -> dict[str, bytes]:
        """A digest per distinct text (``role`` tells a query's token vectors from a passage's); both caches are
        emptied first when the encoder was replaced, since every entry came from the old one."""
        if self._cache_owner != id(self.encoder):
            self._cache.clear()
            self._tokens.clear()
            self._cache_owner = id(self.encoder)
        return {
            t: hashlib.blake2b(t.encode("utf-8"), digest_size=16, person=role).digest() for t in dict.fromkeys(texts)
        }

    def _piece_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Per token id of the encoder's vocabulary: whether it counts at all (not a special token) and whether it
        is a content word-piece (:func:`~qrelkit.students.grading.is_content_piece`); built once per tokenizer."""
        tokenizer = self.encoder.tokenizer
        if self._pieces is None or self._pieces[0] is not tokenizer:
            pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
            counted = np.ones(len(pieces), dtype=bool)
            counted[[i for i in tokenizer.all_special_ids if i < len(pieces)]] = False
            content = np.array([is_content_piece(p) for p in pieces], dtype=bool)
            self._pieces = (tokenizer, counted, content)
        return self._pieces[1], self._pieces[2]

    def score_features(self, x: np.ndarray, queries: Sequence[str] | None = None) -> np.ndarray:
        """A continuous 0–3 grade estimate per row of :meth:`features` (the head's kind decides how). With the rows'
        ``queries``, a query-context student grades the rows of a query with fewer than :data:`SMALL_POOL` rows by
        its small-pool head (own columns only), its scores moved onto the main head's cut points."""
        h = self.head
        if not h:
            raise QrelkitError("this student has no trained head; run distill first")
        scores = head_scores(h, x)
        small = h.get("small_pools")
        if small is None or queries is None:
            return scores
        rows = [i for r in _rows_by_query(queries).values() if len(r) < small["min_pool"] for i in r]
        if rows:
            own = x[rows, : len(small["head"]["features"])]
            moved = onto_cut_points(head_scores(small["head"], own), small["head"]["thresholds"], h["thresholds"])
            scores[rows] = moved
        return scores

    @property
    def thresholds(self) -> list[float] | None:
        """The head's grade cut points (None before training)."""
        return self.head.get("thresholds")

    def grades_from_scores(self, scores: np.ndarray) -> np.ndarray:
        """0–3 grades of :meth:`score_features` scores, by the head's cut points."""
        if self.thresholds is None:
            raise QrelkitError("this student has no grade cut points; run distill first")
        return grades_from_thresholds(self.thresholds, scores)

    def predict(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores (a continuous 0–3 grade estimate) and 0–3 grades for query–document pairs."""
        scores = self.score_features(self.features(queries, docs, batch_size=batch_size), queries)
        return scores, self.grades_from_scores(scores)

    def predict_pairs(self, pairs: Sequence[Pair], *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        return self.predict([p.query for p in pairs], [p.text for p in pairs], batch_size=batch_size)


def late_interaction(queries: Sequence[np.ndarray], docs: Sequence[np.ndarray]) -> np.ndarray:
    """:data:`LATE_FEATURES` per pair, from unit token vectors: each query piece's best cosine over the passage's
    tokens, then their mean, their minimum and the shares above 0.6 and 0.8 (zeros when either side is empty)."""
    rows = np.zeros((len(queries), len(LATE_FEATURES)))
    for i, (q, d) in enumerate(zip(queries, docs, strict=True)):
        if len(q) and len(d):
            best = (q.astype(np.float32) @ d.astype(np.float32).T).max(axis=1)
            rows[i] = best.mean(), best.min(), (best > 0.6).mean(), (best > 0.8).mean()
    return rows


def encode_tokens(encoder: Any, texts: Sequence[str], batch_size: int, show: bool = False) -> list[tuple[Any, ...]]:
    """(unit pooled embedding, token vectors, token ids) per text, from a SentenceTransformer or an ONNX encoder."""
    if hasattr(encoder, "encode_tokens"):
        return list(encoder.encode_tokens(texts, batch_size=batch_size))
    out = encoder.encode(list(texts), batch_size=batch_size, output_value=None, show_progress_bar=show)
    rows = []
    for o in out:
        mask = o["attention_mask"].bool()
        pooled = o["sentence_embedding"].float().cpu().numpy()
        rows.append(
            (
                pooled / max(float(np.linalg.norm(pooled)), 1e-12),
                o["token_embeddings"][mask].float().cpu().numpy(),
                o["input_ids"][mask].cpu().numpy(),
            )
        )
    return rows


class _TokenCache:
    """A FIFO of (pooled, fp16 token vectors) per text digest, bounded by the bytes the token vectors take."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self.entries: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, key: bytes) -> tuple[np.ndarray, np.ndarray] | None:
        return self.entries.get(key)

    def put(self, key: bytes, value: tuple[np.ndarray, np.ndarray]) -> None:
        if self.max_bytes <= 0 or key in self.entries:
            return
        self.entries[key] = value
        self.bytes += value[1].nbytes
        while self.bytes > self.max_bytes and self.entries:
            self.bytes -= self.entries.popitem(last=False)[1][1].nbytes

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


HEADS = ("ridge", "logistic", "cosine", "boosted", "spline")


def fit_head(
    x: np.ndarray,
    target: np.ndarray,
    teacher_grades: np.ndarray,
    *,
    kind: str = "ridge",
    distribution: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    alpha: float = 1.0,
    features: Sequence[str] = FEATURES,
) -> dict[str, Any]:
    """Fit a head on feature rows ``x`` (columns ``features``: a student's :attr:`Student.feature_names`) and cut
    its scores into grades by ordinal thresholds that reproduce the teacher's grade distribution on the training
    pairs.

    ``kind``:
    - ``ridge``: regression of ``target`` (the teacher's grade, or its expected grade) on standardised features.
    - ``logistic``: 4-class classification; the score is the expected grade under the predicted distribution.
      Trains on ``distribution`` (one row of P(grade 0..3) per pair: the teacher's, or several judges') where
      given, else on the hard grade with ``label_smoothing``.
    - ``cosine``: the encoder's cosine similarity alone, only calibrated (no weights learnt): the most
      query-agnostic student, and the one that keeps the base's relevance ranking untouched.
    - ``boosted``: gradient-boosted regression trees on the same target as ``ridge`` (depth 3, 200 trees): the
      features interact (a high cosine means more when every query term is matched), which a ridge cannot
      express. Stored as plain arrays in head.json and evaluated with numpy, as the other heads.
    - ``spline``: a smooth curve per feature instead of a straight line (cubic B-splines, 5 knots, ridge on their
      bases; a generalised additive model): grade rises steeply with the cosine only past some point, say. Smooth,
      so a small int8 error in a feature moves the score a little, unlike a tree's jump.
    """
    if kind not in HEADS:
        raise QrelkitError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    if x.shape[1] != len(features):
        raise QrelkitError(f"{x.shape[1]} feature columns for {len(features)} feature names")
    head: dict[str, Any] = {"kind": kind, "features": list(features), "mean": mean.tolist(), "scale": scale.tolist()}
    z = (x - mean) / scale
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=alpha).fit(z, target)
        head.update(coef=model.coef_.tolist(), intercept=float(model.intercept_))
    elif kind == "logistic":
        head.update(_fit_logistic(z, teacher_grades, distribution, label_smoothing, alpha))
    elif kind == "boosted":
        head.update(_fit_boosted(z, target))
    elif kind == "spline":
        head.update(_fit_spline(z, target, alpha))
    head["thresholds"] = distribution_thresholds(head_scores(head, x), teacher_grades)
    return head


def _fit_spline(z: np.ndarray, target: np.ndarray, alpha: float, knots: int = 5, degree: int = 3) -> dict[str, Any]:
    """Per feature, cubic B-spline bases (scikit-learn ``SplineTransformer``, knots spread evenly over the training
    pairs' range) and one ridge over all bases; stored as each feature's knot vector and basis weights. Beyond the
    training range a curve stays at its end value."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import SplineTransformer

    varying = np.flatnonzero(np.ptp(z, axis=0) > 0)  # a feature constant in training has no curve (None)
    curves: dict[str, list[Any]] = {"knots": [None] * z.shape[1], "coef": [None] * z.shape[1]}
    if not len(varying):
        return {"degree": degree, **curves, "intercept": float(np.mean(target))}
    bases = SplineTransformer(n_knots=knots, degree=degree).fit(z[:, varying])
    model = Ridge(alpha=alpha).fit(bases.transform(z[:, varying]), target)
    per = len(model.coef_) // len(varying)
    for i, j in enumerate(varying):
        curves["knots"][j] = bases.bsplines_[i].t.tolist()
        curves["coef"][j] = model.coef_[i * per : (i + 1) * per].tolist()
    return {"degree": degree, **curves, "intercept": float(model.intercept_)}


def _spline_scores(head: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """The spline head's score for standardised rows ``z``: the intercept plus each feature's curve."""
    from scipy.interpolate import BSpline

    k = int(head["degree"])
    total = np.full(len(z), float(head["intercept"]))
    for j, (knots, coef) in enumerate(zip(head["knots"], head["coef"], strict=True)):
        if knots is None:
            continue
        t = np.asarray(knots)
        total += BSpline(t, np.asarray(coef), k, extrapolate=True)(np.clip(z[:, j], t[k], t[-k - 1]))
    return total


def _fit_boosted(z: np.ndarray, target: np.ndarray, trees: int = 200, depth: int = 3) -> dict[str, Any]:
    """Gradient-boosted trees (scikit-learn) as plain arrays: per tree, each node's feature, threshold, children
    (-1 at a leaf) and value; the score is ``init + learning_rate * sum of the trees' leaf values``."""
    from sklearn.ensemble import GradientBoostingRegressor

    leaf = max(5, len(z) // 500)  # no leaf for a handful of pairs: a few hundred training pairs are common
    model = GradientBoostingRegressor(
        n_estimators=trees, max_depth=depth, learning_rate=0.05, subsample=0.8, min_samples_leaf=leaf, random_state=0
    ).fit(z, target)
    nodes = [e.tree_ for e in model.estimators_[:, 0]]
    return {
        "init": float(model.init_.constant_.ravel()[0]),
        "learning_rate": model.learning_rate,
        "trees": [
            {
                "feature": t.feature.tolist(),
                "threshold": t.threshold.tolist(),
                "left": t.children_left.tolist(),
                "right": t.children_right.tolist(),
                "value": t.value[:, 0, 0].tolist(),
            }
            for t in nodes
        ],
    }


def _boosted_scores(head: dict[str, Any], z: np.ndarray) -> np.ndarray:
    """The boosted head's prediction for standardised rows ``z``, equal to scikit-learn's (which compares the
    features in float32)."""
    z32 = np.asarray(z, dtype=np.float32)
    rows = np.arange(len(z32))
    total = np.zeros(len(z32))
    for tree in head["trees"]:
        feature, left, right = (np.asarray(tree[k]) for k in ("feature", "left", "right"))
        threshold = np.asarray(tree["threshold"])
        node = np.zeros(len(z32), dtype=np.int64)
        inner = left[node] != -1
        while inner.any():
            go_left = z32[rows, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            inner = left[node] != -1
        total += np.asarray(tree["value"])[node]
    return np.asarray(head["init"] + head["learning_rate"] * total, dtype=np.float64)


def _fit_logistic(
    z: np.ndarray, grades: np.ndarray, distribution: np.ndarray | None, smoothing: float, alpha: float
) -> dict[str, Any]:
    """Multinomial logistic regression on soft targets: each pair appears once per grade, weighted by that
    grade's probability (the cross-entropy with a soft target is exactly this weighted sum)."""
    from sklearn.linear_model import LogisticRegression

    if distribution is None:
        distribution = np.full((len(grades), 4), smoothing / 3)
        distribution[np.arange(len(grades)), np.clip(grades, 0, 3)] = 1.0 - smoothing
    dist = np.asarray(distribution, dtype=float)
    dist = dist / dist.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(z)), 4)
    labels = np.tile(np.arange(4), len(z))
    weights = dist.reshape(-1)
    keep = weights > 0
    model = LogisticRegression(C=1.0 / alpha, max_iter=2000)
    model.fit(z[rows[keep]], labels[keep], sample_weight=weights[keep])
    coef = np.zeros((4, z.shape[1]))
    intercept = np.full(4, -1e9)  # a grade never seen in training gets probability 0
    for i, c in enumerate(model.classes_):
        coef[c] = model.coef_[i] if len(model.classes_) > 2 else (model.coef_[0] if i else -model.coef_[0])
        intercept[c] = model.intercept_[i] if len(model.classes_) > 2 else (model.intercept_[0] if i else 0.0)
    return {"coef": coef.tolist(), "intercept": intercept.tolist()}


def head_scores(head: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The head's continuous 0–3 score for feature rows ``x`` (heads without ``kind`` are ridge heads)."""
    kind = head.get("kind", "ridge")
    if kind == "cosine":
        return np.asarray(x[:, FEATURES.index("cosine")], dtype=np.float64)
    z = (x - np.asarray(head["mean"])) / np.asarray(head["scale"])
    if kind == "logistic":
        logits = z @ np.asarray(head["coef"]).T + np.asarray(head["intercept"])
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return np.asarray(p @ np.arange(4, dtype=np.float64))
    if kind == "boosted":
        return np.clip(_boosted_scores(head, z), 0.0, 3.0)
    if kind == "spline":
        return np.clip(_spline_scores(head, z), 0.0, 3.0)
    return np.clip(z @ np.asarray(head["coef"]) + head["intercept"], 0.0, 3.0)


def model_card(card: dict[str, Any], head: dict[str, Any]) -> str:
    kind = head.get("kind", "ridge")
    if kind == "ridge":
        pairs = zip(head.get("features", []), head.get("coef", []), strict=False)
        weights = "standardised feature weights: " + ", ".join(f"{f} {c:+.3f}" for f, c in pairs)
    elif kind == "logistic":
        weights = "4-class logistic regression on the standardised features; score = expected grade"
    elif kind == "boosted":
        weights = f"{len(head['trees'])} gradient-boosted regression trees on the standardised features"
    elif kind == "spline":
        weights = "one cubic spline a standardised feature (an additive model), summed"
    else:
        weights = "cosine similarity of the frozen encoder, calibrated by thresholds only"
    lines = [
        "# qrelkit student",
        "",
        "A relevance labeler (grades 0–3) distilled from an LLM teacher with qrelkit.",
        "",
        "```python",
        "from qrelkit import Student",
        'student = Student.load("this/folder")',
        'scores, grades = student.predict(["query"], ["document text"])',
        "```",
        "",
    ]
    fields = (
        "base",
        "teacher",
        "teacher_prompt",
        "train_pairs",
        "train_queries",
        "target",
        "seed",
        "epochs",
        "max_length",
        "teacher_grade_counts",
        "trained_at",
        "train_seconds",
    )
    lines.append(markdown_table(["field", "value"], ([k, card[k]] for k in fields if k in card)))
    lines += ["", f"Head ({kind}): {weights}", f"Thresholds: {head.get('thresholds')}", ""]
    if has_query_context(head.get("features") or []):
        lines += [
            "Query context: each pair is graded among the other pairs of its query passed in the same call (its "
            "standing, and its likeness to the query's best other passages), so label a pool (a query's retrieved "
            "passages, ten or more as in training) with the query's pairs together.",
            "",
        ]
        if small := head.get("small_pools"):
            lines += [
                f"A query passed with fewer than {small['min_pool']} pairs is graded by a second head on each pair's "
                "own columns, without the pool's.",
                "",
            ]
    return "\n".join(lines)
