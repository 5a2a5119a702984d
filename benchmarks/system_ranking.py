"""Do the students' labels rank retrieval systems as NIST's do? System-ranking correlation on the four benchmarks.

The benchmarks ship no TREC runs, so this builds fifteen systems that rerank each open query's judged passages:
BM25 in six settings (bm25s), TF-IDF cosine and query likelihood with Dirichlet smoothing (scikit-learn counts),
the frozen MiniLM cosine and its late-interaction score, query-term overlap, two hybrids (reciprocal rank fusion),
a length prior and a random order. Every system is scored by nDCG@10 with the
NIST grades and with each labeler's (``qrelkit.system_ranking``), on the open pairs all of them graded, and the
orderings are compared (Kendall's τ, Spearman's ρ, τ_AP, the same best system; 95% intervals from query resamples).
Labelers: GPT-4o (the teacher), the other LLM label sets of DL 2019–2021, and the committed students' qrels
(cross-fitted: no student grades a query whose labels it trained on).

    python benchmarks/system_ranking.py [--work DIR] [--out benchmarks/results] [--results benchmarks/results]
        [--bootstrap 1000] [--pool-depth 10] [--lexical-only]

The frozen features (cosine, late interaction, term overlap) come from ``qrelkit.crossfold.frozen_features``,
cached in ``--work`` (about 25 minutes on 2 CPU cores the first time); the rest takes a minute or two. The systems'
TREC runs are written to ``--work/systems/<benchmark>/`` (not committed: tens of MB, rebuilt in a minute), for
``qrelkit evaluate --runs`` or ``qrelkit report --runs`` with other qrels. Results: ``--out``/system-ranking.md
and .json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from qrelkit.bench import machine_name
from qrelkit.benchmarks import BENCHMARKS, BenchmarkData, load_benchmark
from qrelkit.crossfold import frozen_features
from qrelkit.evaluate import group_by_query
from qrelkit.io import Run, atomic_write_text, read_qrels, write_run
from qrelkit.pool import pool_pairs
from qrelkit.records import Document, Pair
from qrelkit.students.encoder import FEATURES, LATE_FEATURES
from qrelkit.system_ranking import compare_system_rankings, format_system_ranking

STUDENTS = {  # committed cross-fitted qrels under benchmarks/results/<benchmark>/
    "student ce-minilm-syn3k-bce-all-stacked (best fixed)": "ce-minilm-syn3k-bce-all-stacked",
    "student ce-minilm-syn3k-bce-stack25 (product, stacked)": "ce-minilm-syn3k-bce-stack25",
    "student minilm-late-cross (frozen, ridge head)": "minilm-late-cross",
    "student minilm-late-spline-cross (product, frozen: spline head)": "minilm-late-spline-cross",
    "student minilm-late-context-boosted-cross (frozen, boosted, pool statistics)": "minilm-late-context-boosted-cross",
    "student minilm-late-feedback-spline-cross (frozen, spline, --query-context)": "minilm-late-feedback-spline-cross",
    "student minilm-late-feedback-boosted-cross (boosted, --query-context)": "minilm-late-feedback-boosted-cross",
    "student minilm-cosine-cross (frozen cosine)": "minilm-cosine-cross",
    "student ce-minilm-syn3k-bce-all (cross-encoder alone)": "ce-minilm-syn3k-bce-all",
}
BM25_SETTINGS = {
    "bm25-lucene": {"method": "lucene", "k1": 1.5, "b": 0.75},
    "bm25-k0.9-b0.4": {"method": "lucene", "k1": 0.9, "b": 0.4},
    "bm25-robertson": {"method": "robertson", "k1": 1.2, "b": 0.75},
    "bm25l": {"method": "bm25l", "k1": 1.5, "b": 0.75},
    "bm25plus": {"method": "bm25+", "k1": 1.5, "b": 0.75},
    "bm25-no-length-norm": {"method": "lucene", "k1": 1.2, "b": 0.0},
}
COLUMNS = {name: i for i, name in enumerate(FEATURES + LATE_FEATURES)}
# the systems that read none of the frozen or stacked students' features (MiniLM cosine and token vectors, term
# overlap, length): closer to one another, as submitted runs are, and free of a student's self-preference
LEXICAL = (*BM25_SETTINGS, "tfidf-cosine", "ql-dirichlet", "random")


def bm25_scores(pairs: list[Pair], settings: Mapping[str, object]) -> np.ndarray:
    """Each pair's BM25 score over the collection's judged passages (English stopwords removed)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    passages = sorted({p.doc_id: p.text for p in pairs}.items())
    column = {pid: i for i, (pid, _) in enumerate(passages)}
    retriever = bm25s.BM25(**settings)
    retriever.index(bm25s.tokenize([t for _, t in passages], stopwords="en", show_progress=False), show_progress=False)
    out = np.zeros(len(pairs))
    for idx in group_by_query([(p.qid, p.doc_id) for p in pairs]).values():
        tokens = bm25s.tokenize([pairs[idx[0]].query], stopwords="en", show_progress=False, return_ids=False)[0]
        scores = retriever.get_scores(tokens)
        out[idx] = scores[[column[pairs[i].doc_id] for i in idx]]
    return out


def lexical_scores(pairs: list[Pair]) -> dict[str, np.ndarray]:
    """TF-IDF cosine and Dirichlet-smoothed query likelihood (mu 1000) of each pair, over the judged passages."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    passages = sorted({p.doc_id: p.text for p in pairs}.items())
    row = {pid: i for i, (pid, _) in enumerate(passages)}
    texts = [t for _, t in passages]
    docs_idx = np.array([row[p.doc_id] for p in pairs])
    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit(texts)
    d, q = tfidf.transform(texts), tfidf.transform([p.query for p in pairs])
    cosine = np.asarray(q.multiply(d[docs_idx]).sum(axis=1)).ravel()
    counts = CountVectorizer(stop_words="english").fit(texts)
    tf = counts.transform(texts).tocsr()
    lengths = np.asarray(tf.sum(axis=1)).ravel()
    collection = np.asarray(tf.sum(axis=0)).ravel() / tf.sum()
    mu, ql = 1000.0, np.zeros(len(pairs))
    query_terms = counts.transform([p.query for p in pairs]).tocsr()
    for i, j in enumerate(docs_idx):
        terms = query_terms[i].indices
        if len(terms):
            tf_td = tf[j, terms].toarray().ravel()
            ql[i] = np.sum(np.log((tf_td + mu * collection[terms]) / (lengths[j] + mu)))
        else:
            ql[i] = -np.inf
    ql[np.isinf(ql)] = ql[~np.isinf(ql)].min() - 1 if np.isfinite(ql).any() else 0.0
    return {"tfidf-cosine": cosine, "ql-dirichlet": ql}


def rrf(pairs: list[Pair], *scores: np.ndarray, k: int = 60) -> np.ndarray:
    """Reciprocal rank fusion of several systems' scores, ranks taken within each query."""
    fused = np.zeros(len(pairs))
    for idx in map(np.array, group_by_query([(p.qid, p.doc_id) for p in pairs]).values()):
        for s in scores:
            ranks = np.empty(len(idx))
            ranks[np.argsort(-s[idx], kind="stable")] = np.arange(1, len(idx) + 1)
            fused[idx] += 1.0 / (k + ranks)
    return fused


def systems(data: BenchmarkData, features: Mapping[tuple[str, str, str], np.ndarray]) -> dict[str, Run]:
    pairs = data.open_pairs
    x = np.array([features[data.name, p.qid, p.doc_id] for p in pairs])
    scores: dict[str, np.ndarray] = {name: bm25_scores(pairs, s) for name, s in BM25_SETTINGS.items()}
    scores.update(lexical_scores(pairs))
    scores["minilm-cosine"] = x[:, COLUMNS["cosine"]]
    scores["minilm-maxsim"] = x[:, COLUMNS["maxsim_mean"]]
    scores["term-overlap"] = x[:, COLUMNS["term_overlap"]]
    scores["rrf-bm25-cosine"] = rrf(pairs, scores["bm25-k0.9-b0.4"], scores["minilm-cosine"])
    scores["rrf-bm25-maxsim"] = rrf(pairs, scores["bm25-lucene"], scores["minilm-maxsim"])
    scores["longest-first"] = x[:, COLUMNS["log_doc_words"]]
    scores["random"] = np.random.default_rng(0).random(len(pairs))
    runs: dict[str, Run] = {}
    for name, s in scores.items():
        run: Run = {}
        for p, v in zip(pairs, s, strict=True):
            run.setdefault(p.qid, {})[p.doc_id] = float(v)
        runs[name] = run
    return runs


def labelers(data: BenchmarkData, teacher: str, results: Path) -> dict[str, dict[tuple[str, str], int]]:
    out = {f"GPT-4o ({teacher}, the teacher)": data.label_sets[teacher]}
    if not data.name.startswith("llmjudge"):  # DL 2023's 33 submissions: see its own report
        out.update({name: q for name, q in data.label_sets.items() if name != teacher})
    for label, name in STUDENTS.items():
        path = results / data.name / f"{name}.qrels"
        if path.exists():
            out[label] = read_qrels(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/.cross-work"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="the committed student qrels")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--pool-depth",
        type=int,
        default=None,
        help="grade only the union of the systems' top N per query, as a user who pools runs to label them would "
        "(default: every judged pair)",
    )
    parser.add_argument("--lexical-only", action="store_true", help=f"rank only {', '.join(LEXICAL)}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    datas = {b: load_benchmark(spec) for b, spec in BENCHMARKS.items()}
    features = frozen_features(datas, args.work)
    depth = f", pooled to depth {args.pool_depth}" if args.pool_depth else ""
    depth += ", lexical systems only" if args.lexical_only else ""
    report = [f"# System-ranking correlation: do the labels rank systems as NIST's grades do?{depth}", ""]
    summary: dict[str, dict[str, dict[str, object]]] = {}
    for name, data in datas.items():
        runs = systems(data, features)
        for system, run in runs.items():  # the systems themselves, for anyone to score with other qrels
            write_run(args.work / "systems" / name / f"{system}.run", run, tag=system)
        if args.lexical_only:
            runs = {system: run for system, run in runs.items() if system in LEXICAL}
        judges = labelers(data, BENCHMARKS[name].teacher, args.results)
        human = {k: v for k, v in data.human.items() if k[0] in {p.qid for p in data.open_pairs}}
        if args.pool_depth:  # the pooled pairs, as `qrelkit pool --depth N` makes them
            texts = {p.qid: p.query for p in data.open_pairs}
            docs = {p.doc_id: Document(doc_id=p.doc_id, text=p.text) for p in data.open_pairs}
            pooled = {(p.qid, p.doc_id) for p in pool_pairs(runs, texts, docs, depth=args.pool_depth)[0]}
            human = {k: v for k, v in human.items() if k in pooled}
        result = compare_system_rankings(runs, human, judges, bootstrap=args.bootstrap)
        summary[name] = {label: dict(r) for label, r in result["correlation"].items()}
        report += [f"## {name}", "", format_system_ranking(result), ""]
        logging.info("%s: %d systems, %d queries", name, len(runs), result["queries"])
    report += [mean_table(summary), "", machine_line(time.perf_counter() - t0)]
    stem = "system-ranking" + (f"-depth{args.pool_depth}" if args.pool_depth else "")
    stem += "-lexical" if args.lexical_only else ""
    atomic_write_text(args.out / f"{stem}.md", "\n".join(report) + "\n")
    atomic_write_text(args.out / f"{stem}.json", json.dumps(summary, indent=1) + "\n")
    print("\n".join(report))


def mean_table(summary: Mapping[str, Mapping[str, Mapping[str, object]]]) -> str:
    """Mean Kendall τ and τ_AP over the collections, for the labelers every collection has."""
    from qrelkit.tables import markdown_table

    def short(label: str) -> str:
        return "GPT-4o (the teacher)" if label.startswith("GPT-4o") else label

    per: dict[str, list[Mapping[str, object]]] = {}
    for collection in summary.values():
        for label, r in collection.items():
            per.setdefault(short(label), []).append(r)

    def mean(rs: list[Mapping[str, object]], c: str) -> str:
        return f"{np.mean([float(str(r[c])) for r in rs]):.3f}"

    table = [
        [label, mean(rs, "kendall_tau"), mean(rs, "tau_ap"), f"{sum(bool(r['same_best']) for r in rs)} of {len(rs)}"]
        for label, rs in per.items()
        if len(rs) == len(summary)
    ]
    return "## Mean over the four collections\n\n" + markdown_table(
        ["labeler", "Kendall τ", "τ_AP", "same best system"], table
    )


def machine_line(seconds: float) -> str:
    return f"machine: {machine_name()}; wall {seconds:.0f} s"


if __name__ == "__main__":
    main()
