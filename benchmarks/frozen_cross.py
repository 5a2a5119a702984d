"""The frozen tier's rows of the cross-collection experiment, added to its committed results without training the
fine-tuned recipes again: ``minilm-cosine-cross`` (the cosine cut at each collection's grade shares),
``minilm-ridge-cross`` and ``minilm-late-cross`` (the product's frozen student, ``qrelkit distill`` with and
without ``--late-interaction``, trained per fold on GPT-4o's labels of the open queries outside it, all four
collections), ``minilm-late-boosted-cross`` and ``minilm-late-spline-cross`` (``--head boosted``, ``spline``), the
query-context rows (``minilm-late-context-cross``, ``minilm-late-context-boosted-cross``: the pool's statistics only)
and ``minilm-late-feedback-spline-cross`` and ``minilm-late-feedback-boosted-cross`` (today's ``--query-context``:
statistics and pool feedback), with their ``-calibrated-cross`` twins (each collection cut at its own training
pairs' grade shares, as the stacked rows are). Writes their qrels and every report again
(``qrelkit.crossfold.add_cross_rows``).

    python benchmarks/frozen_cross.py [--work DIR] [--out benchmarks/results] [--bootstrap 1000]

The frozen features of every test pair (open and held-out, four collections) take about 8–25 minutes on 2 CPU cores
the first time, their embeddings about 10 more; both are cached in ``--work``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from qrelkit.benchmarks import BENCHMARKS, load_benchmark
from qrelkit.crossfold import (
    add_cross_rows,
    fold_of_queries,
    frozen_embeddings,
    frozen_features,
    frozen_rows,
    with_query_context,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/.cross-work"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    datas = {b: load_benchmark(spec) for b, spec in BENCHMARKS.items()}
    teachers = {b: spec.teacher for b, spec in BENCHMARKS.items()}
    # the experiment's folds: 2 by query per benchmark (see cross-collection.json)
    folds_of = {b: fold_of_queries([p.qid for p in d.open_pairs + d.heldout_pairs], 2) for b, d in datas.items()}
    t0 = time.perf_counter()
    late = frozen_features(datas, args.work)
    logging.info("features of %d pairs in %.0f s", len(late), time.perf_counter() - t0)
    embeddings = frozen_embeddings(datas, args.work)
    rows = frozen_rows(datas, teachers, folds_of, late, with_query_context(datas, late, embeddings=embeddings))
    summary = add_cross_rows(rows, list(datas), out_dir=args.out, bootstrap=args.bootstrap)
    print((args.out / "cross-collection.md").read_text())
    print(summary["same_student_everywhere"])


if __name__ == "__main__":
    main()
