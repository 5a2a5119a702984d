"""Does query context (``qrelkit distill --query-context``) help on a pool a user would label, not only on NIST's
judged set? The judged set of a TREC query is shaped by the assessment itself (pools deepened where relevant
passages were found), so a student that reads a pair's standing among its query's pairs could learn that shape. This
grades the frozen student, with and without query context, ridge, spline and boosted heads, on three kinds of pool per
query: all judged pairs (as the cross-collection experiment), and the union of the top 10 and top 30 of thirteen
retrieval systems over the judged passages (``benchmarks/system_ranking.py``'s BM25, TF-IDF, query-likelihood,
MiniLM and fusion rerankers; not its random and length-prior ones). Each student trains on the pooled pairs of the
training fold's open queries (GPT-4o's labels, four collections, the experiment's 2 folds by query) and grades the
pooled pairs of the other fold; κ against NIST on those pairs, GPT-4o's own on the same pairs beside it. "+ query
context" is the pool's five statistics that ``--query-context`` read before the pool feedback
(``qrelkit.students.encoder.query_context``: z-score, percentile, distance to the best, the query's best and mean);
"+ --query-context" is today's ``--query-context``: the first three and each passage's likeness to the
query's best other passages of the same pool (``pool_feedback``).

    python benchmarks/query_context.py [--work DIR] [--out benchmarks/results]

Uses the frozen features and embeddings cached in ``--work`` by ``benchmarks/frozen_cross.py`` (about 20–35 minutes
on 2 CPU cores the first time); then about two minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from system_ranking import systems

from qrelkit.bench import machine_name
from qrelkit.benchmarks import BENCHMARKS, BenchmarkData, load_benchmark
from qrelkit.crossfold import fold_of_queries, frozen_embeddings, frozen_features, frozen_heads, with_query_context
from qrelkit.evaluate import evaluate_qrels
from qrelkit.io import atomic_write_text
from qrelkit.records import PairKey
from qrelkit.students.encoder import FEATURES, FEEDBACK, LATE_FEATURES, POOL_STATS, context_names
from qrelkit.tables import markdown_table

NOT_POOLED = ("random", "longest-first")  # no user pools a random or a longest-passage-first run
DEPTHS = (10, 30)


def run_pool(data: BenchmarkData, features: dict[tuple[str, str, str], np.ndarray], depth: int) -> set[PairKey]:
    """The union of each system's top ``depth`` per open query."""
    pool: set[PairKey] = set()
    for name, run in systems(data, features).items():
        if name not in NOT_POOLED:
            for qid, docs in run.items():
                pool.update((qid, d) for d in sorted(docs, key=lambda d: (-docs[d], d))[:depth])
    return pool


def agreement(datas: dict[str, BenchmarkData], grades: dict[str, dict[PairKey, int]]) -> dict[str, list[float]]:
    """κ and quadratic κ against NIST per benchmark, on the pairs graded."""
    out = {}
    for b, data in datas.items():
        m = evaluate_qrels(grades[b], data.human)
        out[b] = [m["kappa"], m["kappa_quadratic"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/.cross-work"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    datas = {b: load_benchmark(spec) for b, spec in BENCHMARKS.items()}
    teachers = {b: spec.teacher for b, spec in BENCHMARKS.items()}
    folds_of = {b: fold_of_queries([p.qid for p in d.open_pairs + d.heldout_pairs], 2) for b, d in datas.items()}
    late = frozen_features(datas, args.work)
    embeddings = frozen_embeddings(datas, args.work)
    names = FEATURES + LATE_FEATURES
    pools: dict[str, dict[str, set[PairKey]] | None] = {"all judged pairs": None}
    pools.update({f"top {k} of 13 systems": {b: run_pool(d, late, k) for b, d in datas.items()} for k in DEPTHS})
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for pool_name, pool in pools.items():
        plain = late if pool is None else {(b, *k): late[(b, *k)] for b in datas for k in sorted(pool[b])}
        context = with_query_context(datas, late, pool)
        feedback = with_query_context(datas, late, pool, embeddings)
        sizes[pool_name] = {b: sum(1 for k in plain if k[0] == b and k[1:] in d.human) for b, d in datas.items()}
        gpt4o = {b: {k: g for k, g in d.label_sets[teachers[b]].items() if (b, *k) in plain} for b, d in datas.items()}
        rows = {"GPT-4o (teacher)": agreement(datas, gpt4o)}
        for kind in ("ridge", "spline", "boosted"):
            rows[f"{kind}"] = agreement(datas, frozen_heads(datas, teachers, folds_of, plain, names, kind=kind))
            with_context = frozen_heads(datas, teachers, folds_of, context, names + context_names(names), kind=kind)
            rows[f"{kind} + query context"] = agreement(datas, with_context)
            pooled_names = names + context_names(names, POOL_STATS) + FEEDBACK
            with_feedback = frozen_heads(datas, teachers, folds_of, feedback, pooled_names, kind=kind)
            rows[f"{kind} + --query-context (3 statistics, pool feedback)"] = agreement(datas, with_feedback)
        results[pool_name] = rows
        logging.info("%s: %s", pool_name, {r: np.mean([v[0] for v in x.values()]).round(3) for r, x in rows.items()})
    report = ["# Query context on three kinds of pool (frozen student, κ / quadratic κ vs NIST, open queries)", ""]
    for pool_name, rows in results.items():
        report += [f"## {pool_name} ({sum(sizes[pool_name].values()):,} pairs)", ""]
        header = ["student", *(b.split("-")[0] for b in datas), "mean"]
        table = []
        for row, per in rows.items():
            mean = np.mean(list(per.values()), axis=0)
            cells = [f"{k:.3f} / {q:.3f}" for k, q in per.values()]
            table.append([row, *cells, f"{mean[0]:.3f} / {mean[1]:.3f}"])
        report += [markdown_table(header, table), ""]
    report.append(f"machine: {machine_name()}; wall {time.perf_counter() - t0:.1f} s")
    text = "\n".join(report) + "\n"
    atomic_write_text(args.out / "query-context.md", text)
    summary = {"results": results, "pairs": sizes, "machine": machine_name(), "wall_s": time.perf_counter() - t0}
    atomic_write_text(args.out / "query-context.json", json.dumps(summary, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
