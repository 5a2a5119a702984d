"""Human-labelled benchmarks: where they live, which are known, and how they are read. One copy, used by the
experiment, the cross-collection experiment, ``qrelkit bench`` and the injection benchmark.

A benchmark folder (``--data DIR``, ``$QRELKIT_BENCHMARKS`` or ``../shared/benchmarks``) holds one folder per
benchmark with this layout::

    <name>/queries.jsonl                   {"qid", "text"} per line
    <name>/passages.jsonl                  {"pid", "text"} per line
    <name>/pairs/test-open.tsv             qid<TAB>pid: pairs whose human grades are given
    <name>/pairs/test-heldout.tsv          qid<TAB>pid: pairs graded only (human grades kept elsewhere)
    <name>/qrels/human.test-open.txt       TREC qrels, grades 0–3
    <name>/llm_labels/test/<label set>.txt TREC qrels of each LLM judge (the teacher is one of them)
    <name>/pairs/dev.tsv, qrels/human.dev.txt, llm_labels/dev/*.txt   optional: other queries (bench, +dev students)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import QrelkitError
from .io import Qrels, iter_jsonl, read_qrels
from .records import Pair, PairKey, clip_grade
from .students.targets import ensemble

BENCHMARKS_ENV = "QRELKIT_BENCHMARKS"
LAYOUT = (
    "queries.jsonl, passages.jsonl, pairs/test-open.tsv, pairs/test-heldout.tsv, qrels/human.test-open.txt, "
    "llm_labels/test/<label set>.txt (see the README, 'Benchmark data')"
)


@dataclass(frozen=True)
class Benchmark:
    name: str
    teacher: str  # label set under llm_labels/test/ the students learn from
    extra_train: tuple[str, ...] = ()  # label sets under llm_labels/dev/ (other queries) for "+dev" students


# The teacher everywhere is GPT-4o (LLMJudge's Olz-gpt4o submission on DL 2023; the UMBRELA prompt on DL 2019–2021);
# every other label set is an extra judge: a row in the report and a member of the ensemble teachers.
BENCHMARKS = {
    "llmjudge-trecdl2023": Benchmark(
        "llmjudge-trecdl2023", "Olz-gpt4o", ("llama3-8b-baseline-0123", "llama3-8b-baseline-3210")
    ),
    "trecdl2019-passage": Benchmark("trecdl2019-passage", "gpt4o-umbrela"),
    "trecdl2020-passage": Benchmark("trecdl2020-passage", "gpt4o-umbrela"),
    "trecdl2021-passage": Benchmark("trecdl2021-passage", "gpt4o-umbrela"),
}
DEFAULT_BENCHMARK = "llmjudge-trecdl2023"


def benchmark_dir(
    name: str = DEFAULT_BENCHMARK, data: str | Path | None = None, *, marker: str = "queries.jsonl"
) -> Path:
    """The folder of benchmark ``name``: under ``data`` when given, else ``$QRELKIT_BENCHMARKS``, else
    ``../shared/benchmarks`` beside the working or project folder; the first that holds ``marker`` (another file
    for folders of other research data, e.g. ``synthetic-queries``). A clear error says what is needed."""
    if data is not None:
        roots = [Path(data)]
    else:
        roots = [Path(os.environ[BENCHMARKS_ENV])] if BENCHMARKS_ENV in os.environ else []
        roots += [
            Path.cwd().parent / "shared" / "benchmarks",
            Path(__file__).resolve().parents[3] / "shared" / "benchmarks",
        ]
    for root in roots:
        if (root / name / marker).exists():
            return root / name
    where = ", ".join(str(r) for r in roots)
    raise QrelkitError(
        f"benchmark data {name!r} not found (looked in {where}); pass --data DIR or set {BENCHMARKS_ENV} to a "
        f"folder holding {name}/ with {LAYOUT if marker == 'queries.jsonl' else marker}"
    )


def pair_keys(path: Path) -> list[PairKey]:
    """The (qid, pid) pairs of a ``pairs/*.tsv`` file; none where it does not exist."""
    if not path.exists():
        return []
    rows = [line.split()[:2] for line in path.read_text().splitlines() if line.strip()]
    return [(q, d) for q, d in rows]


def label_set(path: Path) -> Qrels:
    """A published LLM label set, grades clipped to 0–3 (some judges wrote 4 or 10)."""
    return {k: clip_grade(v) for k, v in read_qrels(path, max_grade=None).items()}


def benchmark_pairs(data: Path, keys: list[PairKey]) -> list[Pair]:
    """The (qid, pid) ``keys`` of a benchmark folder as pairs with their query and passage texts."""
    queries = {str(r["qid"]): str(r["text"]) for _, r in iter_jsonl(data / "queries.jsonl")}
    wanted = {d for _, d in keys}
    texts = {str(r["pid"]): str(r["text"]) for _, r in iter_jsonl(data / "passages.jsonl") if str(r["pid"]) in wanted}
    return [Pair(qid=q, query=queries[q], doc_id=d, text=texts[d]) for q, d in keys]


def bench_pairs(data: Path, n: int, *, seed: int = 0) -> tuple[list[Pair], dict[PairKey, int]]:
    """``n`` human-judged dev pairs (none of their queries is in the student's training data), sorted by query."""
    human = read_qrels(data / "qrels" / "human.dev.txt")
    keys = sorted(human)
    random.Random(seed).shuffle(keys)
    chosen = sorted(keys[:n])
    return benchmark_pairs(data, chosen), {k: human[k] for k in chosen}


def teacher_label_file(data: Path) -> Path:
    """The teacher's label set of a benchmark folder (the registry's teacher; GPT-4o's for unknown folders)."""
    return data / "llm_labels" / "test" / f"{teacher_of(data)}.txt"


def teacher_of(data: Path) -> str:
    return BENCHMARKS.get(data.name, BENCHMARKS[DEFAULT_BENCHMARK]).teacher


def teacher_training_set(data: Path, teacher: str | None = None) -> tuple[list[Pair], Qrels]:
    """The open test queries' pairs that the teacher (the registry's for this benchmark unless named) graded,
    and those grades clipped to 0–3: the benchmark students' training data. No dev query is among them."""
    teacher = teacher or teacher_of(data)
    grades = label_set(data / "llm_labels" / "test" / f"{teacher}.txt")
    keys = [k for k in pair_keys(data / "pairs" / "test-open.tsv") if k in grades]
    return benchmark_pairs(data, keys), grades


@dataclass
class SyntheticSet:
    """Judge-graded training pairs on synthetic queries (:func:`qrelkit.experiment.build_synthetic`); query ids
    get a ``syn:`` prefix so they can never meet a benchmark query's id."""

    pairs: list[Pair]
    grades: Qrels
    expected: dict[PairKey, float]  # the judge's expected grade where it returned a grade distribution
    about: dict[str, Any]


@dataclass
class BenchmarkData:
    name: str
    open_pairs: list[Pair]
    heldout_pairs: list[Pair]
    dev_pairs: list[Pair]
    human: Qrels
    label_sets: dict[str, Qrels]  # every LLM label set on the test pairs, grades clipped to 0–3
    dev_labels: dict[str, Qrels]
    queries: dict[str, str]
    synthetic: SyntheticSet | None = None

    @cached_property
    def judges(self) -> tuple[Qrels, dict[PairKey, float], dict[PairKey, list[float]]]:
        """Every LLM label set as one ensemble teacher (:func:`qrelkit.students.targets.ensemble`), built once for all
        folds and variants."""
        return ensemble(list(self.label_sets.values()))

    @cached_property
    def dev_judges(self) -> tuple[Qrels, dict[PairKey, float], dict[PairKey, list[float]]]:
        """The dev label sets as one ensemble (other queries than the test ones)."""
        if not self.dev_labels:
            raise QrelkitError(f"{self.name} has no dev label sets")
        return ensemble(list(self.dev_labels.values()))

    def first_queries(self, n: int, pairs_per_query: int | None = None) -> BenchmarkData:
        """The same benchmark cut to its first ``n`` open and ``n`` held-out queries (by id), and to the first
        ``pairs_per_query`` pairs of each: smoke runs."""
        keep = set(sorted({p.qid for p in self.open_pairs})[:n]) | set(sorted({p.qid for p in self.heldout_pairs})[:n])
        seen: dict[str, int] = {}

        def kept(p: Pair) -> bool:
            seen[p.qid] = seen.get(p.qid, 0) + 1
            return p.qid in keep and (pairs_per_query is None or seen[p.qid] <= pairs_per_query)

        def cut(q: Qrels) -> Qrels:
            return {k: v for k, v in q.items() if k[0] in keep}

        return replace(
            self,
            open_pairs=[p for p in self.open_pairs if kept(p)],
            heldout_pairs=[p for p in self.heldout_pairs if kept(p)],
            human=cut(self.human),
            label_sets={k: cut(v) for k, v in self.label_sets.items()},
        )


def load_benchmark(spec: Benchmark, root: Path | None = None) -> BenchmarkData:
    """Pairs (with texts), human grades of the open queries and every LLM label set of a benchmark folder."""
    data = root or benchmark_dir(spec.name)
    sets = {p.stem: label_set(p) for p in sorted((data / "llm_labels" / "test").glob("*.txt"))}
    if spec.teacher not in sets:
        raise QrelkitError(f"{data}: no teacher label set {spec.teacher!r} (have: {', '.join(sets)})")
    dev = {n: label_set(data / "llm_labels" / "dev" / f"{n}.txt") for n in spec.extra_train}
    return BenchmarkData(
        name=spec.name,
        open_pairs=benchmark_pairs(data, pair_keys(data / "pairs" / "test-open.tsv")),
        heldout_pairs=benchmark_pairs(data, pair_keys(data / "pairs" / "test-heldout.tsv")),
        dev_pairs=benchmark_pairs(data, pair_keys(data / "pairs" / "dev.tsv")) if dev else [],
        human=read_qrels(data / "qrels" / "human.test-open.txt"),
        label_sets=sets,
        dev_labels=dev,
        queries={str(r["qid"]): str(r["text"]) for _, r in iter_jsonl(data / "queries.jsonl")},
    )
