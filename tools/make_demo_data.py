"""Build the embedded demo data (src/qrelkit/data/demo/) from the LLMJudge dev split in ../shared.

Dev queries only (never test), a fixed seed, passages cut to 2,000 characters. Rerunning gives the same files.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "llmjudge-trecdl2023"
OUT = ROOT / "src" / "qrelkit" / "data" / "demo"
EVAL_PER_QUERY, CORPUS_SIZE, MAX_CHARS, SEED = 6, 2000, 2000, 7


def main() -> None:
    rng = random.Random(SEED)
    queries = [json.loads(x) for x in (BENCH / "queries.jsonl").open()]
    dev = {q["qid"]: q["text"] for q in queries if q["split"] == "dev"}
    by_query: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for line in (BENCH / "qrels" / "human.dev.txt").open():
        qid, _, pid, grade = line.split()
        by_query[qid].append((pid, int(float(grade))))
    eval_pairs = []
    for qid in sorted(by_query, key=lambda q: int(q[1:])):
        eval_pairs += [(qid, pid, g) for pid, g in sorted(rng.sample(by_query[qid], EVAL_PER_QUERY))]
    judged = sorted({pid for pairs in by_query.values() for pid, _ in pairs}, key=lambda p: int(p[1:]))
    chosen = {pid for _, pid, _ in eval_pairs}
    rest = [p for p in judged if p not in chosen]
    chosen |= set(rng.sample(rest, CORPUS_SIZE - len(chosen)))
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "corpus.jsonl").open("w") as fh:
        for line in (BENCH / "passages.jsonl").open():
            p = json.loads(line)
            if p["pid"] in chosen:
                text = p["text"][:MAX_CHARS]
                fh.write(json.dumps({"doc_id": p["pid"], "text": text}, ensure_ascii=False) + "\n")
    with (OUT / "queries.jsonl").open("w") as fh:
        for qid in sorted(dev, key=lambda q: int(q[1:])):
            fh.write(json.dumps({"qid": qid, "text": dev[qid]}) + "\n")
    with (OUT / "human.qrels").open("w") as fh:
        fh.writelines(f"{q} 0 {p} {g}\n" for q, p, g in eval_pairs)
    print(f"{len(chosen)} passages, {len(dev)} queries, {len(eval_pairs)} human-graded pairs -> {OUT}")


if __name__ == "__main__":
    main()
