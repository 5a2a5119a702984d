"""The distillation experiment on a human-labelled benchmark: does a student trained only on a teacher LLM's
labels agree with human assessors as well as the teacher does?

Query-disjoint k-fold on the benchmark's open test queries: each student variant is trained on the teacher's
labels of the other folds' queries and grades the fold, so no student ever sees a label of a query it is
scored on. The held-out test queries (human grades not distributed) are graded by the variant trained on all
open queries. Every variant's grades of every test pair are written as TREC qrels, with a report
(:mod:`qrelkit.report`) of teacher vs students vs the other LLM judges against the human grades.

Training data comes in three variants (the issue's a/b/c): the teacher's labels of the benchmark's own pairs,
a synthetic set (queries written by an LLM from the benchmark's passages, BM25 near misses, graded by an LLM
judge: :func:`build_synthetic`), or both. The synthetic set holds no benchmark query and no label of a
benchmark pair, so every fold may use all of it.

    qrelkit experiment                       # both benchmarks, results in benchmarks/results/
    qrelkit experiment --build-synthetic     # first (re)build the synthetic training sets (local LLM)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from .bench import machine_name
from .benchmarks import BENCHMARKS, Benchmark, BenchmarkData, SyntheticSet, benchmark_dir, load_benchmark
from .distill import distill, recalibrate
from .errors import QrelkitError
from .evaluate import format_table
from .io import Qrels, judgments_file, read_pairs, read_qrels, write_qrels
from .llm import DEFAULT_LLM, LLM, get_llm
from .records import Pair, PairKey, clip_grade
from .report import INTERVAL_METRICS, build_report, write_report
from .students.encoder import Student
from .students.targets import soft_targets
from .tables import markdown_table

log = logging.getLogger("qrelkit")


@dataclass(frozen=True)
class StudentSpec:
    """One student variant: its head, whose labels it learns from, and on which queries."""

    name: str
    head: str = "ridge"
    teachers: str = "teacher"  # "teacher" (the single teacher) or "ensemble" (every LLM label set)
    label_smoothing: float = 0.0
    dev: bool = False  # also train on the dev queries' LLM labels (other queries; never their human grades)
    data: str = "benchmark"  # "benchmark" (teacher labels of the fold's pairs), "synthetic", or "both"
    calibrate: bool = False  # refit the grade thresholds to the teacher's labels of the fold's training pairs
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
    StudentSpec(
        "minilm-cosine-synthetic",
        head="cosine",
        data="synthetic",
        about="frozen MiniLM cosine, thresholds fit to the local LLM judge's grades of the synthetic set",
    ),
    StudentSpec(
        "minilm-ridge-synthetic",
        data="synthetic",
        about="regression of the local LLM judge's expected grade on the synthetic set only",
    ),
    StudentSpec(
        "minilm-ridge-synthetic-calibrated",
        data="synthetic",
        calibrate=True,
        about="regression learnt on the synthetic set only; thresholds fit to the teacher's benchmark labels",
    ),
    StudentSpec(
        "minilm-ridge-both",
        data="both",
        about="regression on the teacher's benchmark labels plus the synthetic set",
    ),
    StudentSpec(
        "minilm-ridge-both-calibrated",
        data="both",
        calibrate=True,
        about="regression on the teacher's benchmark labels plus the synthetic set; thresholds fit to the teacher",
    ),
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


class Named(Protocol):
    @property
    def name(self) -> str: ...


NamedSpec = TypeVar("NamedSpec", bound=Named)


def pick_by_name(specs: Sequence[NamedSpec], names: Sequence[str], what: str) -> list[NamedSpec]:
    """The ``specs`` called ``names`` (once each, in that order), or one error listing the known ones."""
    known = {s.name: s for s in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise QrelkitError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def student_variants(names: Sequence[str] | None = None) -> list[StudentSpec]:
    """The variants called ``names`` (default: :data:`STUDENTS`), or an error listing the known ones."""
    return pick_by_name((*STUDENTS, *EXTRA_STUDENTS), names, "student variant") if names else list(STUDENTS)


SYNTHETIC_FILES = ("queries.jsonl", "pairs.parquet", "teacher.qrels", "synthetic.json")


def build_synthetic(
    benchmark: str,
    out: str | Path,
    *,
    llm: str | LLM = DEFAULT_LLM,
    n_seeds: int = 50,
    per_doc: int = 3,
    k: int = 4,
    n_random: int = 1,
    seed: int = 0,
    cache: str | Path | None = None,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """The paper's data recipe on a benchmark's passages: ``llm`` writes up to ``per_doc`` queries for each of
    ``n_seeds`` random passages (:func:`qrelkit.synth.synthesize`), BM25 adds ``k`` near misses and
    ``n_random`` random passages per query (:func:`qrelkit.mine.mine_pairs`), and ``llm`` grades every pair
    (:class:`qrelkit.judge.Judge`). Writes ``queries.jsonl``, ``pairs.parquet``, ``teacher.qrels`` (+
    judgments) and ``synthetic.json`` under ``out``, through the pipeline's stage functions (benchmark queries
    excluded from the synthetic ones). With ``cache`` a rerun resumes where a crash stopped."""
    from .pipeline import judge_file, mine_file, synth_file

    data = data_root or benchmark_dir(benchmark)
    out = Path(out)
    passages = data / "passages.jsonl"
    model = get_llm(llm) if isinstance(llm, str) else llm  # loaded once for both LLM stages
    t0 = time.perf_counter()
    synth_stats = synth_file(
        passages,
        out / "queries.jsonl",
        llm=model,
        n_seeds=n_seeds,
        per_doc=per_doc,
        seed=seed,
        exclude=data / "queries.jsonl",
        cache=cache,
        no_cache=cache is None,
    )
    mine_stats = mine_file(out / "queries.jsonl", passages, out / "pairs.parquet", k=k, n_random=n_random, seed=seed)
    t_judge = time.perf_counter()
    judge_stats = judge_file(
        out / "pairs.parquet", out / "teacher.qrels", llm=model, concurrency=8, cache=cache, no_cache=cache is None
    )
    about = {
        "benchmark": benchmark,
        "llm": model.spec,
        "queries": synth_stats["queries"],
        "pairs": mine_stats["pairs"],
        "graded": judge_stats["graded"],
        "settings": {"n_seeds": n_seeds, "per_doc": per_doc, "k": k, "n_random": n_random, "seed": seed},
        "synth": synth_stats,
        "mine": mine_stats,
        "judge": judge_stats,
        "seconds": {"synth_and_mine": round(t_judge - t0, 1), "judge": round(time.perf_counter() - t_judge, 1)},
    }
    (out / "synthetic.json").write_text(json.dumps(about, indent=1, default=float) + "\n")
    return about


def load_synthetic(folder: str | Path) -> SyntheticSet | None:
    """The synthetic training set written by :func:`build_synthetic`, or None where ``folder`` has none."""
    folder = Path(folder)
    if not all((folder / f).exists() for f in SYNTHETIC_FILES):
        return None
    judged = read_qrels(folder / "teacher.qrels", max_grade=None)
    grades = {(f"syn:{q}", d): clip_grade(g) for (q, d), g in judged.items()}
    expected = {(f"syn:{q}", d): v for (q, d), v in soft_targets(judgments_file(folder / "teacher.qrels")).items()}
    pairs = [p.model_copy(update={"qid": f"syn:{p.qid}"}) for p in read_pairs(folder / "pairs.parquet")]
    about = json.loads((folder / "synthetic.json").read_text())
    return SyntheticSet([p for p in pairs if (p.qid, p.doc_id) in grades], grades, expected, about)


def fold_of_queries(qids: Sequence[str], folds: int) -> dict[str, int]:
    """Queries sorted by id, dealt round-robin into ``folds`` folds (deterministic, balanced)."""
    ordered = sorted(set(qids))
    if len(ordered) < folds:
        raise QrelkitError(f"{len(ordered)} queries cannot make {folds} folds")
    return {q: i % folds for i, q in enumerate(ordered)}


def _train(
    spec: StudentSpec, base: Student, data: BenchmarkData, train_pairs: list[Pair], teacher: str
) -> tuple[Any, float]:
    """Fit one variant on ``train_pairs`` (or, per its ``data``, the synthetic set instead or as well; plus the
    dev pairs for ``dev`` variants); returns it and seconds."""
    grades: Qrels = data.label_sets[teacher]
    soft: dict[PairKey, float] = {}
    dist: dict[PairKey, list[float]] | None = None
    pairs = list(train_pairs)
    if spec.teachers == "ensemble":
        grades, soft, dist = data.judges
    if spec.data != "benchmark":
        if data.synthetic is None:
            raise QrelkitError(f"student {spec.name} needs a synthetic training set; build it with --build-synthetic")
        if spec.data == "synthetic":
            pairs, grades, soft = [], {}, {}
        syn = data.synthetic
        pairs, grades, soft = _with_labels(pairs, grades, soft, syn.pairs, syn.grades, syn.expected)
    if spec.dev:
        dev_hard, dev_mean, _ = data.dev_judges
        pairs, grades, soft = _with_labels(pairs, grades, soft, data.dev_pairs, dev_hard, dev_mean)
    t0 = time.perf_counter()
    if spec.head == "causal-lora":
        from .students.causal import distill_causal

        return distill_causal(pairs, grades, distribution=dist, base="smollm2-135m", epochs=1), time.perf_counter() - t0
    student = distill(
        pairs,
        grades,
        soft=soft if spec.head == "ridge" else None,
        distribution=dist if spec.head == "logistic" else None,
        head=spec.head,
        label_smoothing=spec.label_smoothing,
        student=base,
        card={"teacher": _teacher_name(spec, data, teacher), "train_data": spec.data},
    )
    if spec.calibrate:
        student = recalibrate(student, train_pairs, data.label_sets[teacher])
    return student, time.perf_counter() - t0


def _with_labels(
    pairs: list[Pair],
    grades: Qrels,
    soft: dict[PairKey, float],
    more_pairs: Sequence[Pair],
    more_grades: Qrels,
    more_soft: dict[PairKey, float],
) -> tuple[list[Pair], Qrels, dict[PairKey, float]]:
    """Training pairs and labels with another labelled set added, as new containers: the shared label sets
    (the benchmark's, the judges' ensemble) stay untouched."""
    added = [p for p in more_pairs if (p.qid, p.doc_id) in more_grades]
    return [*pairs, *added], {**grades, **more_grades}, {**soft, **more_soft}


def _teacher_name(spec: StudentSpec, data: BenchmarkData, teacher: str) -> str:
    name = teacher if spec.teachers == "teacher" else "ensemble of all LLM label sets"
    if spec.data == "benchmark" or data.synthetic is None:
        return name
    local = data.synthetic.about["llm"]
    source = local if spec.data == "synthetic" else f"{name} + {local} on the synthetic set"
    return f"{source}; thresholds fit to {teacher}" if spec.calibrate else source


def run_experiment(
    benchmark: str | Benchmark,
    *,
    out_dir: str | Path = "benchmarks/results",
    folds: int = 5,
    students: Sequence[StudentSpec] = STUDENTS,
    bootstrap: int = 1000,
    teacher: str | None = None,
    data_root: Path | None = None,
    synthetic: str | Path | None = None,
) -> dict[str, Any]:
    """Run the k-fold experiment on one benchmark; write qrels per student, the report and experiment.json
    under ``out_dir/<benchmark>/``. Returns the summary (also in experiment.json).

    ``synthetic`` is the folder of :func:`build_synthetic` (default ``out_dir/<benchmark>/synthetic``);
    variants that need it are skipped, with a warning, where it holds none."""
    spec = BENCHMARKS[benchmark] if isinstance(benchmark, str) else benchmark
    if teacher:
        spec = Benchmark(spec.name, teacher, spec.extra_train)
    data = load_benchmark(spec, data_root)
    out = Path(out_dir) / spec.name
    syn_dir = Path(synthetic) if synthetic else out / "synthetic"
    data.synthetic = load_synthetic(syn_dir)
    variants = [s for s in students if (not s.dev or data.dev_labels) and (s.data == "benchmark" or data.synthetic)]
    if len(variants) < len(students):
        skipped = ", ".join(s.name for s in students if s not in variants)
        log.warning("%s: skipping %s (no dev label sets, or no synthetic set in %s)", spec.name, skipped, syn_dir)
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
    notes = [
        f"benchmark {spec.name}; teacher {spec.teacher}; {folds}-fold by query over {len(fold_of)} open test queries "
        f"(each student grades a fold after training on the teacher's labels of the other folds' queries only)",
        "human grades are used only for evaluation (not for training or calibration)",
        *_synthetic_notes(data.synthetic, variants),
        f"student labeling speed (frozen MiniLM features, torch, 2 threads, cache cleared): {speed:.1f} pairs/s",
    ]
    teacher_name, report, paths = teacher_report(
        data,
        spec.teacher,
        grades,
        out / "report",
        title=f"qrelkit experiment: {spec.name}",
        notes=notes,
        bootstrap=bootstrap,
    )
    best = best_student(report, [v.name for v in variants])
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


def teacher_report(
    data: BenchmarkData,
    teacher: str,
    students: Mapping[str, Qrels],
    out: Path,
    *,
    title: str,
    notes: Sequence[str],
    bootstrap: int,
    point_only: Mapping[str, Qrels] | None = None,
) -> tuple[str, dict[str, Any], dict[str, Path]]:
    """The report of a benchmark's teacher and students against its human grades (every other LLM label set,
    and ``point_only`` labelers, a row without intervals), written under ``out``: the teacher's row name, the
    report and its files."""
    teacher_name = f"teacher {teacher}"
    report = build_report(
        {teacher_name: data.label_sets[teacher], **students},
        data.human,
        reference=teacher_name,
        queries=data.queries,
        bootstrap=bootstrap,
        title=title,
        notes=notes,
        point_only={**(point_only or {}), **{f"judge {n}": q for n, q in data.label_sets.items() if n != teacher}},
    )
    return teacher_name, report, write_report(report, out)


def _synthetic_notes(syn: SyntheticSet | None, variants: Sequence[StudentSpec]) -> list[str]:
    if syn is None or all(v.data == "benchmark" for v in variants):
        return []
    a = syn.about
    return [
        f"synthetic training set (students named *-synthetic / *-both): {a['queries']} queries that {a['llm']} "
        f"wrote from {a['settings']['n_seeds']} random passages of the benchmark, each with its seed passage, "
        f"{a['settings']['k']} BM25 near misses and {a['settings']['n_random']} random passage(s); "
        f"{len(syn.pairs)} pairs graded by the same local LLM (no benchmark query, no benchmark label)"
    ]


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


def best_student(report: Mapping[str, Any], names: Sequence[str]) -> str:
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


def format_headline(summary: Mapping[str, Any], *, timing_line: bool = True) -> str:
    rows = summary["headline"]
    lines = [
        f"{summary['benchmark']}: teacher {summary['teacher']} vs best student {summary['best_student']}, "
        f"{summary['folds']}-fold by query on {summary['open_queries']} open queries ({summary['open_pairs']} pairs), "
        "95% intervals from query resamples",
        "",
    ]
    body = []
    for name, metrics in rows.items():
        cells = [name]
        for k in INTERVAL_METRICS:
            v, ci = metrics[k]["value"], metrics[k]["ci95"]
            cells.append(f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        body.append(cells)
    lines.append(markdown_table(["labeler", *INTERVAL_METRICS], body))
    if not timing_line:
        return "\n".join(lines)
    lines += [
        "",
        f"student training: {summary['train_seconds_mean'][summary['best_student']]:.1f} s per fold (mean; "
        "includes encoding the pairs the embedding cache does not hold yet); student labeling: "
        f"{summary['student_pairs_per_s']:.1f} pairs/s ({summary['machine']})",
    ]
    return "\n".join(lines)
