"""The distillation experiment on a human-labelled benchmark: does a student trained only on a teacher LLM's
labels agree with human assessors as well as the teacher does?

Query-disjoint k-fold on the benchmark's open test queries: each student variant is trained on the teacher's
labels of the other folds' queries and grades the fold, so no student ever sees a label of a query it is
scored on. The held-out test queries (human grades not distributed) are graded by the variant trained on all
open queries. Every variant's grades of every test pair are written as TREC qrels, with a report
(:mod:`qrelkit.report`) of teacher vs students vs the other LLM judges against the human grades.

    qrelkit experiment                       # both benchmarks, results in benchmarks/results/
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .bench import benchmark_dir, benchmark_pairs, machine_name
from .distill import PairKey, distill, ensemble
from .errors import QrelkitError
from .evaluate import format_table
from .io import Qrels, iter_jsonl, read_qrels, write_qrels
from .records import Pair, clip_grade
from .report import INTERVAL_METRICS, build_report, write_report
from .student import Student

log = logging.getLogger("qrelkit")


@dataclass(frozen=True)
class Benchmark:
    name: str
    teacher: str  # label set under llm_labels/test/ the students learn from
    extra_train: tuple[str, ...] = ()  # label sets under llm_labels/dev/ (other queries) for "+dev" students


BENCHMARKS = {
    "llmjudge-trecdl2023": Benchmark(
        "llmjudge-trecdl2023", "Olz-gpt4o", ("llama3-8b-baseline-0123", "llama3-8b-baseline-3210")
    ),
    "trecdl2019-passage": Benchmark("trecdl2019-passage", "llama3.3-70b-4prompts"),
}


@dataclass(frozen=True)
class StudentSpec:
    """One student variant: its head, whose labels it learns from, and on which queries."""

    name: str
    head: str = "ridge"
    teachers: str = "teacher"  # "teacher" (the single teacher) or "ensemble" (every LLM label set)
    label_smoothing: float = 0.0
    dev: bool = False  # also train on the dev queries' LLM labels (other queries; never their human grades)
    about: str = ""


STUDENTS = (
    StudentSpec("minilm-cosine", head="cosine", about="frozen MiniLM cosine, thresholds fit to the teacher"),
    StudentSpec("minilm-ridge", about="regression of the teacher grade on cosine + lexical features"),
    StudentSpec("minilm-logistic", head="logistic", about="4-class classification of the teacher grade"),
    StudentSpec(
        "minilm-logistic-smooth", head="logistic", label_smoothing=0.1, about="classification, label smoothing 0.1"
    ),
    StudentSpec("minilm-ridge-ensemble", teachers="ensemble", about="regression of the mean grade of all LLM judges"),
    StudentSpec(
        "minilm-logistic-ensemble",
        head="logistic",
        teachers="ensemble",
        about="classification on soft labels: the share of LLM judges giving each grade",
    ),
    StudentSpec("minilm-ridge-dev", dev=True, about="regression; also the dev queries' Llama-3-8B labels"),
)
# Selectable with --student, not run by default: a LoRA-tuned causal LM wants a GPU (hours on 2 CPU cores).
EXTRA_STUDENTS = (
    StudentSpec(
        "smollm2-lora",
        head="causal-lora",
        teachers="ensemble",
        about="SmolLM2-135M + LoRA reading P(grade) from its next token, soft labels of all LLM judges",
    ),
)


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

    @cached_property
    def judges(self) -> tuple[Qrels, dict[PairKey, float], dict[PairKey, list[float]]]:
        """Every LLM label set as one ensemble teacher (:func:`qrelkit.distill.ensemble`), built once for all
        folds and variants."""
        return ensemble(list(self.label_sets.values()))

    @cached_property
    def dev_judges(self) -> tuple[Qrels, dict[PairKey, float], dict[PairKey, list[float]]]:
        """The dev label sets as one ensemble (other queries than the test ones)."""
        if not self.dev_labels:
            raise QrelkitError(f"{self.name} has no dev label sets")
        return ensemble(list(self.dev_labels.values()))


def _pair_keys(path: Path) -> list[PairKey]:
    if not path.exists():
        return []
    rows = [line.split()[:2] for line in path.read_text().splitlines() if line.strip()]
    return [(q, d) for q, d in rows]


def _clipped(path: Path) -> Qrels:
    return {k: clip_grade(v) for k, v in read_qrels(path).items()}


def load_benchmark(spec: Benchmark, root: Path | None = None) -> BenchmarkData:
    """Pairs (with texts), human grades of the open queries and every LLM label set of a benchmark folder."""
    data = root or benchmark_dir(spec.name)
    sets = {p.stem: _clipped(p) for p in sorted((data / "llm_labels" / "test").glob("*.txt"))}
    if spec.teacher not in sets:
        raise QrelkitError(f"{data}: no teacher label set {spec.teacher!r} (have: {', '.join(sets)})")
    dev = {n: _clipped(data / "llm_labels" / "dev" / f"{n}.txt") for n in spec.extra_train}
    return BenchmarkData(
        name=spec.name,
        open_pairs=benchmark_pairs(data, _pair_keys(data / "pairs" / "test-open.tsv")),
        heldout_pairs=benchmark_pairs(data, _pair_keys(data / "pairs" / "test-heldout.tsv")),
        dev_pairs=benchmark_pairs(data, _pair_keys(data / "pairs" / "dev.tsv")) if dev else [],
        human=read_qrels(data / "qrels" / "human.test-open.txt"),
        label_sets=sets,
        dev_labels=dev,
        queries={str(r["qid"]): str(r["text"]) for _, r in iter_jsonl(data / "queries.jsonl")},
    )


def fold_of_queries(qids: Sequence[str], folds: int) -> dict[str, int]:
    """Queries sorted by id, dealt round-robin into ``folds`` folds (deterministic, balanced)."""
    ordered = sorted(set(qids))
    if len(ordered) < folds:
        raise QrelkitError(f"{len(ordered)} queries cannot make {folds} folds")
    return {q: i % folds for i, q in enumerate(ordered)}


def _train(
    spec: StudentSpec, base: Student, data: BenchmarkData, train_pairs: list[Pair], teacher: str
) -> tuple[Any, float]:
    """Fit one variant on ``train_pairs`` (plus the dev pairs for ``dev`` variants); returns it and seconds."""
    grades: Qrels = data.label_sets[teacher]
    soft: dict[PairKey, float] | None = None
    dist: dict[PairKey, list[float]] | None = None
    pairs = list(train_pairs)
    if spec.teachers == "ensemble":
        grades, soft, dist = data.judges
    if spec.dev:
        dev_hard, dev_mean, _ = data.dev_judges
        grades = {**grades, **dev_hard}  # a new dict: the shared label sets stay untouched
        soft = {**(soft or {}), **dev_mean}
        pairs += [p for p in data.dev_pairs if (p.qid, p.doc_id) in dev_hard]
    t0 = time.perf_counter()
    if spec.head == "causal-lora":
        from .causal_student import distill_causal

        return distill_causal(pairs, grades, distribution=dist, base="smollm2-135m", epochs=1), time.perf_counter() - t0
    student = distill(
        pairs,
        grades,
        soft=soft if spec.head == "ridge" else None,
        distribution=dist if spec.head == "logistic" else None,
        head=spec.head,
        label_smoothing=spec.label_smoothing,
        student=base,
        card={"teacher": teacher if spec.teachers == "teacher" else "ensemble of all LLM label sets"},
    )
    return student, time.perf_counter() - t0


def run_experiment(
    benchmark: str | Benchmark,
    *,
    out_dir: str | Path = "benchmarks/results",
    folds: int = 5,
    students: Sequence[StudentSpec] = STUDENTS,
    bootstrap: int = 1000,
    teacher: str | None = None,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Run the k-fold experiment on one benchmark; write qrels per student, the report and experiment.json
    under ``out_dir/<benchmark>/``. Returns the summary (also in experiment.json)."""
    spec = BENCHMARKS[benchmark] if isinstance(benchmark, str) else benchmark
    if teacher:
        spec = Benchmark(spec.name, teacher, spec.extra_train)
    data = load_benchmark(spec, data_root)
    variants = [s for s in students if not s.dev or data.dev_labels]
    out = Path(out_dir) / spec.name
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    base = Student.from_base()
    speed = _labeling_speed(base, data.open_pairs + data.heldout_pairs)
    open_pairs = [p for p in data.open_pairs if (p.qid, p.doc_id) in data.label_sets[spec.teacher]]
    fold_of = fold_of_queries([p.qid for p in open_pairs], folds)
    grades: dict[str, dict[PairKey, int]] = {}
    train_seconds: dict[str, list[float]] = {}
    for variant in variants:
        log.info("%s: %d folds on %d open pairs", variant.name, folds, len(open_pairs))
        graded: dict[PairKey, int] = {}
        secs = []
        for f in range(folds):
            train = [p for p in open_pairs if fold_of[p.qid] != f]
            test = [p for p in data.open_pairs if fold_of.get(p.qid) == f]
            student, s = _train(variant, base, data, train, spec.teacher)
            secs.append(s)
            graded.update(_grade(student, test))
        final, s = _train(variant, base, data, open_pairs, spec.teacher)  # all open queries → held-out queries
        secs.append(s)
        graded.update(_grade(final, data.heldout_pairs))
        grades[variant.name] = graded
        train_seconds[variant.name] = secs
        write_qrels(out / f"{variant.name}.qrels", ((q, d, g) for (q, d), g in sorted(graded.items())))
    teacher_name = f"teacher {spec.teacher}"
    labelers: dict[str, Qrels] = {teacher_name: data.label_sets[spec.teacher], **grades}
    others = {f"judge {n}": q for n, q in data.label_sets.items() if n != spec.teacher}
    notes = [
        f"benchmark {spec.name}; teacher {spec.teacher}; {folds}-fold by query over {len(fold_of)} open test queries "
        f"(each student grades a fold after training on the teacher's labels of the other folds' queries only)",
        "human grades are used only for evaluation (not for training or calibration)",
        f"student labeling speed (frozen MiniLM features, torch, 2 threads, cache cleared): {speed:.1f} pairs/s",
    ]
    report = build_report(
        labelers,
        data.human,
        reference=teacher_name,
        queries=data.queries,
        bootstrap=bootstrap,
        title=f"qrelkit experiment: {spec.name}",
        notes=notes,
        point_only=others,
    )
    paths = write_report(report, out / "report")
    best = _best_student(report, [v.name for v in variants])
    summary = {
        "benchmark": spec.name,
        "teacher": spec.teacher,
        "folds": folds,
        "open_queries": len(fold_of),
        "open_pairs": len(data.open_pairs),
        "heldout_queries": len({p.qid for p in data.heldout_pairs}),
        "heldout_pairs": len(data.heldout_pairs),
        "students": [asdict(v) for v in variants],
        "train_seconds_mean": {k: float(np.mean(v)) for k, v in train_seconds.items()},
        "student_pairs_per_s": speed,
        "best_student": best,
        "machine": machine_name(),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "headline": headline(report, teacher_name, best),
        "table": format_table({n: report["metrics"][n] for n in report["labelers"]}),
        "qrels": {v.name: str(out / f"{v.name}.qrels") for v in variants},
        "report": str(paths["html"]),
    }
    (out / "experiment.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (out / "headline.md").write_text(format_headline(summary) + "\n")
    return summary


def _grade(student: Any, pairs: Sequence[Pair]) -> dict[PairKey, int]:
    if not pairs:
        return {}
    _, grades = student.predict_pairs(pairs)
    return {(p.qid, p.doc_id): int(g) for p, g in zip(pairs, grades, strict=True)}


def _labeling_speed(base: Student, pairs: Sequence[Pair], limit: int = 1000) -> float:
    """Pairs/s of the student's feature pass on up to ``limit`` test pairs from an empty embedding cache (the
    head adds microseconds); every head shares it. Fills the cache for the k-fold that follows."""
    sample = list(pairs)[:limit]
    base.clear_cache()
    t0 = time.perf_counter()
    base.features([p.query for p in sample], [p.text for p in sample])
    return len(sample) / (time.perf_counter() - t0)


def _best_student(report: Mapping[str, Any], names: Sequence[str]) -> str:
    """The variant with the highest mean of Cohen's kappa and quadratic kappa on the open queries' k-fold grades
    (selected on those queries: the held-out queries, scored independently, are the unbiased check)."""
    m = report["metrics"]
    return max(names, key=lambda n: (m[n]["kappa"] + m[n]["kappa_quadratic"]) / 2)


def headline(report: Mapping[str, Any], teacher: str, student: str) -> dict[str, Any]:
    diff = f"{student} - {teacher}"
    rows: dict[str, Any] = {}
    for name in (teacher, student, diff):
        point = report["differences"][diff] if name == diff else report["metrics"][name]
        ci = report["intervals"].get(name, {})
        rows[name] = {k: {"value": point[k], "ci95": ci.get(k)} for k in INTERVAL_METRICS}
    return rows


def format_headline(summary: Mapping[str, Any]) -> str:
    rows = summary["headline"]
    lines = [
        f"{summary['benchmark']}: teacher {summary['teacher']} vs best student {summary['best_student']}, "
        f"{summary['folds']}-fold by query on {summary['open_queries']} open queries ({summary['open_pairs']} pairs), "
        "95% intervals from query resamples",
        "",
        "| labeler | " + " | ".join(INTERVAL_METRICS) + " |",
        "|---" * (len(INTERVAL_METRICS) + 1) + "|",
    ]
    for name, metrics in rows.items():
        cells = []
        for k in INTERVAL_METRICS:
            v, ci = metrics[k]["value"], metrics[k]["ci95"]
            cells.append(f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"student training: {summary['train_seconds_mean'][summary['best_student']]:.1f} s per fold (features "
        f"cached); student labeling: {summary['student_pairs_per_s']:.1f} pairs/s",
    ]
    return "\n".join(lines)
