"""Build the compact TREC DL 2020 copy that act 2 of ``qrelkit demo`` ships (src/qrelkit/data/trec-dl2020/).

Open queries of ../shared/benchmarks/trecdl2020-passage, split by query (seeded): TRAIN_QUERIES queries give the
student's training pairs with their recorded GPT-4o grades; the others are the test queries, with NIST human
grades and GPT-4o's grades on the same pairs. At most PAIRS_PER_QUERY pairs a query, sampled at random (the
grade mix stays as judged). Rerun to rebuild: ``python tools/make_demo_trec.py [--data DIR]``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from qrelkit.benchmarks import label_set, pair_keys
from qrelkit.io import iter_jsonl, read_qrels

TRAIN_QUERIES = 20
PAIRS_PER_QUERY = 60
SEED = 2020
OUT = Path(__file__).resolve().parents[1] / "src" / "qrelkit" / "data" / "trec-dl2020"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/benchmarks/trecdl2020-passage"))
    data = ap.parse_args().data
    queries = {str(r["qid"]): str(r["text"]) for _, r in iter_jsonl(data / "queries.jsonl")}
    texts = {str(r["pid"]): str(r["text"]) for _, r in iter_jsonl(data / "passages.jsonl")}
    gpt4o = label_set(data / "llm_labels" / "test" / "gpt4o-umbrela.txt")
    human = read_qrels(data / "qrels" / "human.test-open.txt")
    by_query: dict[str, list[str]] = {}
    for qid, pid in pair_keys(data / "pairs" / "test-open.tsv"):
        by_query.setdefault(qid, []).append(pid)
    rng = random.Random(SEED)
    qids = sorted(by_query)
    rng.shuffle(qids)
    OUT.mkdir(parents=True, exist_ok=True)
    for split, chosen in (("train", qids[:TRAIN_QUERIES]), ("test", qids[TRAIN_QUERIES:])):
        rows = []
        for qid in sorted(chosen):
            pids = sorted(by_query[qid])
            for pid in sorted(rng.sample(pids, min(PAIRS_PER_QUERY, len(pids)))):
                row = {"qid": qid, "query": queries[qid], "doc_id": pid, "text": texts[pid], "gpt4o": gpt4o[(qid, pid)]}
                if split == "test":
                    row["human"] = human[(qid, pid)]
                rows.append(row)
        with (OUT / f"{split}.jsonl").open("w") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(split, len(chosen), "queries", len(rows), "pairs")


if __name__ == "__main__":
    main()
