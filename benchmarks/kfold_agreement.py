"""Teacher vs distilled student on real human labels, query-disjoint k-fold (first measurement for issue 5).

The student of each fold is trained only on the teacher's labels of the other folds' queries, then grades
the fold; both are compared with the NIST grades on the same pairs.

    python benchmarks/kfold_agreement.py --benchmark llmjudge-trecdl2023 --teacher Olz-gpt4o --folds 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from qrelkit.distill import distill
from qrelkit.evaluate import agreement, format_table
from qrelkit.io import iter_jsonl, read_qrels
from qrelkit.records import Pair

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def load(benchmark: str, teacher: str) -> tuple[list[Pair], dict, dict]:
    root = SHARED / benchmark
    human = read_qrels(root / "qrels" / "human.test-open.txt")
    labels = {k: min(v, 3) for k, v in read_qrels(root / "llm_labels" / "test" / f"{teacher}.txt").items()}
    queries = {str(r["qid"]): r["text"] for _, r in iter_jsonl(root / "queries.jsonl")}
    need = {d for _, d in human}
    texts = {str(r["pid"]): r["text"] for _, r in iter_jsonl(root / "passages.jsonl") if str(r["pid"]) in need}
    pairs = [Pair(qid=q, query=queries[q], doc_id=d, text=texts[d]) for q, d in sorted(human) if (q, d) in labels]
    return pairs, labels, human


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmark", default="llmjudge-trecdl2023")
    ap.add_argument("--teacher", default="Olz-gpt4o")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/kfold_agreement.json")
    args = ap.parse_args()
    pairs, teacher, human = load(args.benchmark, args.teacher)
    qids = sorted({p.qid for p in pairs})
    fold_of = {q: i % args.folds for i, q in enumerate(qids)}
    student_grades: dict[tuple[str, str], int] = {}
    train_s = 0.0
    for f in range(args.folds):
        train = [p for p in pairs if fold_of[p.qid] != f]
        test = [p for p in pairs if fold_of[p.qid] == f]
        t0 = time.perf_counter()
        student = distill(train, {(p.qid, p.doc_id): teacher[(p.qid, p.doc_id)] for p in train})
        train_s += time.perf_counter() - t0
        _, grades = student.predict_pairs(test)
        student_grades.update({(p.qid, p.doc_id): int(g) for p, g in zip(test, grades, strict=True)})
    keys = [(p.qid, p.doc_id) for p in pairs]
    h = np.array([human[k] for k in keys])
    rows = {
        f"teacher {args.teacher}": agreement(np.array([teacher[k] for k in keys]), h),
        "student (MiniLM + head, k-fold)": agreement(np.array([student_grades[k] for k in keys]), h),
    }
    print(
        f"{args.benchmark}: {len(pairs)} pairs, {len(qids)} open queries, {args.folds} folds by query, "
        f"student training {train_s:.0f} s in all"
    )
    print(format_table(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "benchmark": args.benchmark,
                "teacher": args.teacher,
                "folds": args.folds,
                "train_seconds": train_s,
                "metrics": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
