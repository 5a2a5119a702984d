"""Label a million pairs on one machine, streaming: peak memory and throughput of `qrelkit label`.

The pairs are BM25 (bm25s) top-k passages for every query of both benchmarks over the union of their
passages (k = pairs / queries), written to Parquet in row groups. `qrelkit label` then runs in a child
process (Parquet in, Parquet out, checkpointed); its peak RSS is read from the kernel's child accounting.

    python benchmarks/million.py --student DIR --runtime onnx-int8 --pairs 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from qrelkit.benchmarks import benchmark_dir
from qrelkit.io import iter_jsonl
from qrelkit.mine import BM25Index
from qrelkit.records import Document

HERE = Path(__file__).resolve().parent
SCHEMA = pa.schema([("qid", pa.string()), ("query", pa.string()), ("doc_id", pa.string()), ("text", pa.string())])


def build_pairs(out: Path, n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    docs: list[Document] = []
    queries: list[tuple[str, str]] = []
    for bench in ("llmjudge-trecdl2023", "trecdl2019-passage"):
        docs += [
            Document(doc_id=f"{bench}:{r['pid']}", text=r["text"])
            for _, r in iter_jsonl(benchmark_dir(bench) / "passages.jsonl")
        ]
        queries += [(f"{bench}:{r['qid']}", r["text"]) for _, r in iter_jsonl(benchmark_dir(bench) / "queries.jsonl")]
    index = BM25Index(docs)
    k = min(math.ceil(n / len(queries)), len(docs))
    written = 0
    tmp = out.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        for qid, text in queries:
            if written >= n:
                break
            idx, _ = index.search([text], k=min(k, n - written))
            rows = [docs[i] for i in idx[0]]
            writer.write_table(
                pa.table(
                    {
                        "qid": [qid] * len(rows),
                        "query": [text] * len(rows),
                        "doc_id": [d.doc_id for d in rows],
                        "text": [d.text for d in rows],
                    },
                    schema=SCHEMA,
                ),
                row_group_size=50_000,
            )
            written += len(rows)
    tmp.replace(out)
    return {
        "pairs": written,
        "queries": len(queries),
        "passages": len(docs),
        "k": k,
        "build_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", required=True)
    ap.add_argument("--runtime", default="onnx-int8")
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--work", default="runs/million")
    ap.add_argument("--out", default="benchmarks/results/million.json")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pairs = work / f"pairs-{args.pairs}.parquet"
    built = build_pairs(pairs, args.pairs) if not pairs.exists() else {"pairs": pq.ParquetFile(pairs).metadata.num_rows}
    labels = work / "labels.parquet"
    for stale in (labels, labels.with_name(labels.name + ".checkpoint.json")):
        stale.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "qrelkit", "label", str(pairs), "--model", args.student, "-o", str(labels)]
    cmd += ["--runtime", args.runtime]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "QRELKIT_PROGRESS": "0"}, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    rows = pq.ParquetFile(labels).metadata.num_rows
    result = {
        **built,
        "runtime": args.runtime,
        "labelled": rows,
        "label_s": seconds,
        "pairs_per_s": rows / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "pairs_file_mb": pairs.stat().st_size / 2**20,
        "labels_file_mb": labels.stat().st_size / 2**20,
    }
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
