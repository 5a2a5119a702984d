"""Pick the default offline teacher by measuring: grade human-labelled dev pairs with each candidate.

python benchmarks/teacher_probe.py --pairs 300 --models gguf:qwen2.5-coder-1.5b gguf:smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from qrelkit.benchmarks import benchmark_dir
from qrelkit.evaluate import agreement, format_table
from qrelkit.io import iter_jsonl, read_qrels
from qrelkit.judge import Judge
from qrelkit.records import Pair

BENCH = benchmark_dir("llmjudge-trecdl2023")


def sample_dev_pairs(n: int, seed: int = 13) -> tuple[list[Pair], dict[tuple[str, str], int]]:
    human = read_qrels(BENCH / "qrels" / "human.dev.txt")
    queries = {r["qid"]: r["text"] for _, r in iter_jsonl(BENCH / "queries.jsonl")}
    keys = sorted(human)
    rng = random.Random(seed)
    rng.shuffle(keys)
    keys = sorted(keys[:n])
    need = {d for _, d in keys}
    texts = {r["pid"]: r["text"] for _, r in iter_jsonl(BENCH / "passages.jsonl") if r["pid"] in need}
    pairs = [Pair(qid=q, query=queries[q], doc_id=d, text=texts[d]) for q, d in keys]
    return pairs, {k: human[k] for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument(
        "--models", nargs="+", default=["gguf:qwen2.5-coder-1.5b", "gguf:qwen2.5-coder-0.5b", "gguf:smollm2-135m"]
    )
    ap.add_argument("--out", default="benchmarks/results/teacher_probe.json")
    args = ap.parse_args()
    pairs, human = sample_dev_pairs(args.pairs)
    rows, results = {}, {}
    for spec in args.models:
        judge = Judge(spec, cache=Path.home() / ".cache" / "qrelkit" / "probe-cache.sqlite")
        t0 = time.perf_counter()
        js = judge.judge(pairs)
        secs = time.perf_counter() - t0
        y = [j.grade for j in js]
        h = [human[(j.qid, j.doc_id)] for j in js]
        m = agreement(y, h)
        m["s_per_pair"] = secs / len(pairs)
        m["grade_counts"] = [y.count(g) for g in range(4)]
        rows[spec] = m
        results[spec] = {"metrics": m, "judgments": [j.model_dump() for j in js]}
        print(format_table({spec: m}, extra=[("s_per_pair", "s/pair")]), flush=True)
        judge.llm.close()
    print(format_table(rows, extra=[("s_per_pair", "s/pair")]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
