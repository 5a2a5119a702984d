"""Cross-collection distillation of fine-tuned students: train on the teacher's labels of the open queries of
*every* benchmark except the fold being graded, grade that fold, report per collection and on average.

Every test query of each benchmark (open and held-out) is dealt into one of ``folds`` folds (per benchmark,
sorted ids, round-robin). Student ``f`` trains on the teacher's labels of the open queries outside fold ``f``
of all benchmarks, and grades every pair of fold ``f``: so no student is scored on a query whose labels it saw,
and held-out queries (whose labels are never training data) are graded by a student of the same recipe.

A fold's scores are written as soon as it is graded and a finished fold is not trained again: an interrupted
run resumes (training itself resumes from its last checkpoint).

    qrelkit experiment --cross --student ce-minilm-bce          # results in benchmarks/results/<benchmark>/
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .bench import machine_name
from .benchmarks import BENCHMARKS, Benchmark, BenchmarkData, benchmark_dir, load_benchmark
from .errors import QrelkitError
from .evaluate import evaluate_qrels, format_table
from .experiment import fold_of_queries, format_headline, headline, pick_by_name, teacher_report
from .io import Qrels, atomic_write, read_qrels, write_qrels
from .records import Pair, PairKey
from .students.grading import distribution_thresholds, grades_from_thresholds
from .students.stacking import fit_stack_head, stack_scores
from .synth import normalize_query
from .tables import markdown_table

log = logging.getLogger("qrelkit")


@dataclass(frozen=True)
class CrossSpec:
    """A fine-tuned student recipe for the cross-collection experiment."""

    name: str
    # "cross-encoder"; "bi-encoder": the frozen student's encoder fine-tuned (CoSENT), ridge head; "causal": a small
    # causal LM with LoRA reading P(grade) from its next token (base: gguf:ALIAS|PATH or HF name; GPU)
    kind: str = "cross-encoder"
    loss: str = "bce"
    base: str = "all-MiniLM-L6-v2"
    epochs: float = 1.0
    max_pairs: int | None = 5000  # teacher-labelled training pairs per fold (query-stratified sample)
    max_length: int = 160
    batch_size: int = 16
    learning_rate: float = 4e-5
    synthetic_queries: int = 0  # stage 1: this many synthetic queries (seed passage +, BM25 neighbours −)
    # stage 1 continued from this recipe's stage-1 model on the queries beyond its count (the sample is
    # prefix-stable, so the two stages together see this recipe's synthetic_queries, each once); with the same
    # count, that recipe's stage 1 itself
    stage1_from: CrossSpec | None = None
    # stage 1 keeps only synthetic queries whose seed passage BM25 ranks within this many (None: every query)
    round_trip: int | None = None
    # the keyword-stuffing defence: off in the experiment (its passages hold no stuffing; the first recipes ran
    # without it), measured by benchmarks/injection.py instead
    strip_echoes: bool = False
    time_budget_s: float | None = None  # per fold's training (saved and used as trained when spent)
    # cross-encoder: this share of the training queries is kept out of training and the student stacked on them
    # with the frozen features (CrossEncoderStudent.stack: what `qrelkit distill --stack-held-out` does)
    stack_held_out: float = 0.0
    seed: int = 0  # stage 2's pair sample, order and dropout (fine-tuned encoders): a second seed measures noise
    about: str = ""


SYN3K = CrossSpec(
    "ce-minilm-syn3k-bce",
    synthetic_queries=3000,
    about="ce-minilm-syn-bce with three times the synthetic queries in stage 1 (3,000)",
)

SYNTHETIC_ALL = 40_000  # more than the synthetic query file holds: all of it
MPNET_SYN3K = CrossSpec(
    "ce-mpnet-syn3k-bce",
    base="all-mpnet-base-v2",
    synthetic_queries=3000,
    learning_rate=2e-5,
    about="ce-minilm-syn3k-bce on all-mpnet-base-v2 (110M, offline with qrelkit[mpnet]); a GPU recipe: on 2 CPU "
    "cores it trains about 6x and grades about 7x slower than MiniLM; not yet run",
)

# GPU recipes (benchmarks/gpu_student.sh): every teacher-labelled pair, batches of 64, and stage 1 on up to every
# synthetic query (32,329; 160,000 pairs: about 2 minutes on one H200, a day on 2 CPU cores)
MPNET_ALL = CrossSpec(
    "ce-mpnet-syn3k-bce-all",
    base=MPNET_SYN3K.base,
    synthetic_queries=3000,
    stage1_from=MPNET_SYN3K,
    max_pairs=None,
    batch_size=64,
    learning_rate=4e-5,
    about="ce-mpnet-syn3k-bce's stage 1, then BCE on every GPT-4o-labelled training pair of the fold (GPU)",
)

CROSS_STUDENTS = (
    CrossSpec(
        "minilm-ft-ridge",
        kind="bi-encoder",
        learning_rate=2e-5,
        about="MiniLM bi-encoder fine-tuned on GPT-4o grades (CoSENT), ridge head on cosine + lexical features",
    ),
    CrossSpec(
        "minilm-ft-ridge-all",
        kind="bi-encoder",
        learning_rate=2e-5,
        max_pairs=None,
        about="minilm-ft-ridge on every GPT-4o-labelled training pair of the fold (~12,000), not 5,000",
    ),
    CrossSpec("ce-minilm-bce", about="MiniLM cross-encoder, BCE on GPT-4o grade/3"),
    CrossSpec("ce-minilm-listnet", loss="listnet", about="MiniLM cross-encoder, ListNet over 8 passages a query"),
    CrossSpec(
        "ce-minilm-syn-bce",
        synthetic_queries=1000,
        about="MiniLM cross-encoder: stage 1 on synthetic queries, then BCE on GPT-4o grade/3",
    ),
    SYN3K,
    CrossSpec(
        "ce-minilm-syn3k-listnet",
        loss="listnet",
        synthetic_queries=3000,
        stage1_from=SYN3K,
        about="ce-minilm-syn3k-bce's stage 1, then ListNet over 8 passages a query on GPT-4o grades",
    ),
    CrossSpec(
        "ce-minilm-syn3k-bce-all",
        synthetic_queries=3000,
        stage1_from=SYN3K,
        max_pairs=None,
        about="ce-minilm-syn3k-bce's stage 1, then BCE on every GPT-4o-labelled training pair of the fold (~12,000)",
    ),
    CrossSpec(
        "ce-minilm-syn3k-bce-seed1",
        synthetic_queries=3000,
        stage1_from=SYN3K,
        seed=1,
        about="ce-minilm-syn3k-bce again with another stage-2 seed (sample, order, dropout): how much is noise",
    ),
    CrossSpec(
        "ce-minilm-syn3k-bce-stack25",
        synthetic_queries=3000,
        stage1_from=SYN3K,
        stack_held_out=0.25,
        about="ce-minilm-syn3k-bce's stage 1, stage 2 on 75% of the training queries, stacked with the frozen "
        "features on the other 25% (the product's `qrelkit distill --stack-held-out 0.25`)",
    ),
    CrossSpec(
        "ce-minilm-syn3k-bce-all-stack25",
        synthetic_queries=3000,
        stage1_from=SYN3K,
        max_pairs=None,
        stack_held_out=0.25,
        about="ce-minilm-syn3k-bce-stack25 on every GPT-4o-labelled pair of its 75% of the training queries (the "
        "product path of the best fixed variant, ce-minilm-syn3k-bce-all-stacked)",
    ),
    CrossSpec(
        "ce-minilm-syn3k-bce-stack50",
        synthetic_queries=3000,
        stage1_from=SYN3K,
        stack_held_out=0.5,
        about="ce-minilm-syn3k-bce-stack25 with half the training queries held out for the stacking head",
    ),
    CrossSpec(
        "ce-minilm-syn3k-rt20-bce",
        synthetic_queries=3000,
        round_trip=20,
        about="ce-minilm-syn3k-bce's stage 1 on 3,000 synthetic queries whose seed passage BM25 ranks in the top 20",
    ),
    CrossSpec(
        "ce-minilm-syn6k-bce",
        synthetic_queries=6000,
        stage1_from=SYN3K,
        about="ce-minilm-syn3k-bce's stage 1 continued on 3,000 more synthetic queries (6,000 in all)",
    ),
    MPNET_SYN3K,
    MPNET_ALL,
    replace(
        MPNET_ALL,
        name="ce-mpnet-syn3k-bce-all-stack25",
        stack_held_out=0.25,
        about="ce-mpnet-syn3k-bce-all on 75% of the training queries, stacked with the frozen MiniLM features on "
        "the other 25% (the product's `qrelkit distill --stack-held-out 0.25`; GPU)",
    ),
    replace(
        MPNET_ALL,
        name="ce-mpnet-synall-bce-all",
        synthetic_queries=SYNTHETIC_ALL,
        about="ce-mpnet-syn3k-bce-all with stage 1 continued on every other synthetic query (~32,000 in all; GPU)",
    ),
    CrossSpec(
        "ce-minilm-synall-bce-all",
        synthetic_queries=SYNTHETIC_ALL,
        stage1_from=SYN3K,
        max_pairs=None,
        batch_size=64,
        learning_rate=8e-5,
        about="ce-minilm-syn3k-bce-all with stage 1 continued on every other synthetic query (~32,000 in all; GPU)",
    ),
    CrossSpec(
        "ce-minilm-smoke",
        synthetic_queries=24,
        max_pairs=48,
        batch_size=8,
        stack_held_out=0.25,
        about="CPU twin of the GPU run: a few steps of both stages and the stacking head (mechanics, not quality)",
    ),
    # the paper's student (benchmarks/gpu_student.sh runs these on one GPU; max_length: passage tokens)
    CrossSpec(
        "causal-qwen0.5b",
        kind="causal",
        base="gguf:qwen2.5-coder-0.5b",
        max_pairs=None,
        max_length=192,
        batch_size=32,
        learning_rate=2e-4,
        time_budget_s=150,
        about="Qwen2.5-Coder-0.5B-Instruct + LoRA r16, soft CE on GPT-4o grades (P(grade) from the next token)",
    ),
    CrossSpec(
        "causal-qwen1.5b",
        kind="causal",
        base="gguf:qwen2.5-coder-1.5b",
        max_pairs=None,
        max_length=192,
        batch_size=32,
        learning_rate=1e-4,
        time_budget_s=150,
        about="Qwen2.5-Coder-1.5B-Instruct + LoRA r16, soft CE on GPT-4o grades (P(grade) from the next token)",
    ),
    CrossSpec(
        "causal-smollm2-smoke",
        kind="causal",
        base="gguf:smollm2-135m",
        max_pairs=48,
        max_length=96,
        batch_size=8,
        learning_rate=1e-3,
        about="CPU twin of the GPU run: SmolLM2-135M, a few LoRA steps (mechanics, not quality)",
    ),
)


# what `qrelkit experiment --cross` runs: the recipes behind the committed results (the others are selectable with
# --student; ce-minilm-listnet has no full-size run yet, the causal ones need a GPU)
DEFAULT_CROSS = (
    "ce-minilm-bce",
    "minilm-ft-ridge",
    "minilm-ft-ridge-all",
    "ce-minilm-syn-bce",
    "ce-minilm-syn3k-bce",
    "ce-minilm-syn3k-listnet",
    "ce-minilm-syn3k-bce-all",
    "ce-minilm-syn3k-rt20-bce",
    "ce-minilm-syn6k-bce",
    "ce-minilm-syn3k-bce-seed1",
    "ce-minilm-syn3k-bce-stack25",
    "ce-minilm-syn3k-bce-all-stack25",
)


def cross_recipes(names: Sequence[str] | None = None) -> list[CrossSpec]:
    """The recipes called ``names`` (default: :data:`DEFAULT_CROSS`), or an error listing the known ones."""
    return pick_by_name(CROSS_STUDENTS, names or DEFAULT_CROSS, "cross student")


def _fold_scores_path(work: Path, spec: CrossSpec, fold: int) -> Path:
    return work / spec.name / f"fold{fold}.scores.jsonl"


def run_cross_collection(
    benchmarks: Sequence[str | Benchmark] = tuple(BENCHMARKS),
    *,
    students: Sequence[CrossSpec] = CROSS_STUDENTS[:1],
    folds: int = 2,
    out_dir: str | Path = "benchmarks/results",
    work_dir: str | Path | None = None,
    bootstrap: int = 1000,
    data_root: Path | None = None,
    synthetic_file: str | Path | None = None,
    device: str | None = None,
    stack: bool = False,
    max_queries: int | None = None,
    max_pairs_per_query: int | None = None,
) -> dict[str, Any]:
    """Train and grade every student recipe across ``benchmarks``; write ``<student>.qrels`` (every test pair)
    and ``cross/`` (report, headline, experiment.json) under ``out_dir/<benchmark>/``, and a summary with the
    mean over collections in ``out_dir/cross-collection.json`` / ``.md``.

    ``stack`` adds the frozen MiniLM tier on the same folds (:func:`frozen_rows`, ``--query-context`` ones included)
    and, per recipe, stacked students: a ridge over the cross-encoder's score and the frozen student's five features
    (``<recipe>-stacked``), those and its late-interaction features (``<recipe>-stacked-late``), or those and the
    ``--query-context`` columns, pool statistics and pool feedback, each query's judged pairs being its pool
    (``<recipe>-stacked-feedback``; ``-stacked-feedback-boosted``: boosted trees over the same columns).
    ``max_queries`` keeps the first open and held-out queries of each benchmark, ``max_pairs_per_query`` the
    first pairs of each (smoke runs, e.g. the CPU twin of ``benchmarks/gpu_student.sh``); their folds are cached
    apart from full runs."""
    out = Path(out_dir)
    work = Path(work_dir) if work_dir else out / ".cross-work"
    specs = [BENCHMARKS[b] if isinstance(b, str) else b for b in benchmarks]
    datas = {s.name: load_benchmark(s, data_root / s.name if data_root else None) for s in specs}
    if max_queries:
        datas = {b: d.first_queries(max_queries, max_pairs_per_query) for b, d in datas.items()}
        work = work / f"first{max_queries}x{max_pairs_per_query or 'all'}"
    teachers = {s.name: s.teacher for s in specs}
    folds_of = {b: fold_of_queries([p.qid for p in d.open_pairs + d.heldout_pairs], folds) for b, d in datas.items()}
    t_start = time.perf_counter()
    timing: dict[str, Any] = {}
    every_recipe: list[dict[str, dict[PairKey, float]]] = []
    grades: dict[str, dict[str, dict[PairKey, int]]] = {b: {} for b in datas}
    wanted = stack or any(s.stack_held_out for s in students)
    late = frozen_features(datas, work, device) if wanted else None
    features = five_features(late) if late is not None else None
    stack_on = features if stack else None  # the frozen features the -stacked heads read (None: no heads)
    embeddings = frozen_embeddings(datas, work, device) if stack else None
    pooled = with_query_context(datas, late, embeddings=embeddings) if late is not None and embeddings else None
    for spec in students:
        stage1: Path | None = None  # trained (or found) only when a fold still needs training
        timing[spec.name] = {"folds": []}
        scored: dict[str, dict[PairKey, float]] = {b: {} for b in datas}
        thresholds: dict[int, dict[str, list[float]]] = {}
        for f in range(folds):
            path = _fold_scores_path(work, spec, f)
            if not path.exists():
                if spec.synthetic_queries and stage1 is None:
                    stage1 = _stage1(spec, datas, work, synthetic_file, data_root, device)
                _train_and_score(spec, f, datas, teachers, folds_of, stage1, path, device, features)
            fold = json.loads(gzip.decompress(path.read_bytes()))
            timing[spec.name]["folds"].append(fold["stats"])
            thresholds[f] = fold["thresholds"]
            for b in datas:
                scored[b].update({(q, d): s for q, d, s in fold["scores"][b]})
        for b in datas:
            # one global cut per fold (fit on all its training pairs), or each collection's own training pairs
            for suffix, key in (("", "all"), ("-calibrated", b)):
                cuts = {f: t[key] for f, t in thresholds.items()}
                grades[b][spec.name + suffix] = _cut_by_fold(list(scored[b]), scored[b], folds_of[b], cuts)
        # thresholds from the other folds' scores by the other students (out of sample, like the graded fold's)
        crossfit = _calibrated_per_collection(datas, teachers, folds_of, scored)
        for b in datas:
            grades[b][f"{spec.name}-xcal"] = crossfit[b]
        if stack_on is not None and late is not None and not spec.stack_held_out:  # held-out-stacked: stacked already
            # the head over the five features, over them with the late-interaction ones, and with the pool's columns
            # (and the boosted trees the frozen feedback student reads them with: a ridge is linear in the pool's)
            heads = {"-stacked": stack_on, "-stacked-late": late, "-stacked-feedback": pooled}
            runs = [(suffix, columns, "ridge") for suffix, columns in heads.items() if columns is not None]
            runs += [("-stacked-feedback-boosted", pooled, "boosted")] if pooled is not None else []
            for suffix, columns, kind in runs:
                grades_stacked = _stacked(datas, teachers, folds_of, columns, [scored], kind=kind)
                for b in datas:
                    grades[b][f"{spec.name}{suffix}"] = grades_stacked[b]
        every_recipe.append(scored)
    if stack_on is not None and len(every_recipe) > 1:
        # one head over every recipe's scores: do the fine-tuned students err on different pairs?
        grades_stacked = _stacked(datas, teachers, folds_of, stack_on, every_recipe)
        for b in datas:
            grades[b]["stacked-all"] = grades_stacked[b]
    if stack and late is not None:
        for name, by_benchmark in frozen_rows(datas, teachers, folds_of, late, pooled).items():
            for b in datas:
                grades[b][name] = by_benchmark[b]
    return _write_results(
        out, datas, teachers, grades, folds, [asdict(s) for s in students], timing, bootstrap, t_start
    )


def add_cross_rows(
    rows: Mapping[str, Mapping[str, Qrels]],
    benchmarks: Sequence[str | Benchmark] = tuple(BENCHMARKS),
    *,
    out_dir: str | Path = "benchmarks/results",
    data_root: Path | None = None,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """Add student rows (name → benchmark → grades of every test pair) to a finished cross-collection experiment
    in ``out_dir`` and write its reports and summary again, with every row it had (read back from its qrels):
    a new row is compared without training the recipes again."""
    out = Path(out_dir)
    before = json.loads((out / "cross-collection.json").read_text())
    specs = [BENCHMARKS[b] if isinstance(b, str) else b for b in benchmarks]
    datas = {s.name: load_benchmark(s, data_root / s.name if data_root else None) for s in specs}
    grades: dict[str, dict[str, Qrels]] = {}
    for b in datas:
        names = json.loads((out / b / "cross" / "experiment.json").read_text())["all_students"]
        grades[b] = {n: read_qrels(out / b / f"{n}.qrels") for n in names}
        grades[b].update({n: by_benchmark[b] for n, by_benchmark in rows.items()})
    teachers = {s.name: s.teacher for s in specs}
    t_start = time.perf_counter() - float(before["wall_seconds"])
    return _write_results(
        out, datas, teachers, grades, before["folds"], before["students"], before["timing"], bootstrap, t_start
    )


def _write_results(
    out: Path,
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    grades: Mapping[str, Mapping[str, Qrels]],
    folds: int,
    students: list[dict[str, Any]],
    timing: dict[str, Any],
    bootstrap: int,
    t_start: float,
) -> dict[str, Any]:
    """Every row's qrels, each benchmark's report and the summary over collections."""
    for b in datas:
        for name, g in grades[b].items():
            write_qrels(out / b / f"{name}.qrels", ((q, d, v) for (q, d), v in sorted(g.items())))
    summaries = {
        b: _report(b, teachers[b], datas[b], grades[b], folds, students, timing, out / b / "cross", bootstrap)
        for b in datas
    }
    summary = {
        "benchmarks": list(datas),
        "folds": folds,
        "students": students,
        "timing": timing,
        "machine": machine_name(),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "per_collection": {b: s["headline"] for b, s in summaries.items()},
        "mean": _mean_over_collections(summaries),
        "same_student_everywhere": _same_student_everywhere(summaries),
    }
    (out / "cross-collection.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (out / "cross-collection.md").write_text(format_cross(summary, summaries) + "\n")
    return summary


def _all_keys(data: BenchmarkData) -> list[PairKey]:
    return [(p.qid, p.doc_id) for p in data.open_pairs + data.heldout_pairs]


def frozen_features(
    datas: Mapping[str, BenchmarkData], work: Path, device: str | None = None
) -> dict[tuple[str, str, str], np.ndarray]:
    """The frozen student's :data:`qrelkit.students.encoder.FEATURES` then ``LATE_FEATURES`` for every test pair
    (:func:`five_features` keeps the first), cached in ``work``: an hour on 2 CPU cores is not repeated; seconds on
    a GPU, the default ``device`` when present."""
    from .students.encoder import Student
    from .students.training import default_device

    path = work / "frozen-features-late.npz"
    keys = [(b, q, d) for b, data in datas.items() for q, d in _all_keys(data)]
    if path.exists():
        with np.load(path, allow_pickle=False) as cached:  # read each array once: NpzFile reloads on every access
            stored, x = cached["keys"].tolist(), cached["x"]
        index = {tuple(k): i for i, k in enumerate(stored)}
        if all(k in index for k in keys):
            return {k: x[index[k]] for k in keys}
    # strip_echoes off as in the cross-encoder recipes (see CrossSpec.strip_echoes)
    student = Student.from_base(strip_echoes=False, device=device or default_device(), late_interaction=True)
    rows = []
    for data in datas.values():
        pairs = data.open_pairs + data.heldout_pairs
        log.info("%s: frozen MiniLM features of %d pairs", data.name, len(pairs))
        rows.append(student.features([p.query for p in pairs], [p.text for p in pairs]))
    x = np.concatenate(rows)
    with atomic_write(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, keys=np.array(keys), x=x)
    return {k: x[i] for i, k in enumerate(keys)}


def frozen_embeddings(
    datas: Mapping[str, BenchmarkData], work: Path, device: str | None = None
) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
    """The frozen student's unit query and passage embeddings of every test pair (what
    :func:`qrelkit.students.encoder.pool_feedback` compares), cached in ``work`` as :func:`frozen_features`."""
    from .students.encoder import Student
    from .students.training import default_device

    path = work / "frozen-embeddings.npz"
    keys = [(b, q, d) for b, data in datas.items() for q, d in _all_keys(data)]
    if path.exists():
        with np.load(path, allow_pickle=False) as cached:
            stored, query, doc = cached["keys"].tolist(), cached["q"], cached["d"]
        index = {tuple(k): i for i, k in enumerate(stored)}
        if all(k in index for k in keys):
            return {k: (query[index[k]], doc[index[k]]) for k in keys}
    student = Student.from_base(strip_echoes=False, device=device or default_device())
    parts = []
    for data in datas.values():
        pairs = data.open_pairs + data.heldout_pairs
        log.info("%s: frozen MiniLM embeddings of %d pairs", data.name, len(pairs))
        parts.append(student.embeddings([p.query for p in pairs], [p.text for p in pairs]))
    query, doc = (np.concatenate([part[i] for part in parts]).astype(np.float32) for i in (0, 1))
    with atomic_write(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, keys=np.array(keys), q=query, d=doc)
    return {k: (query[i], doc[i]) for i, k in enumerate(keys)}


def five_features(rows: Mapping[tuple[str, str, str], np.ndarray]) -> dict[tuple[str, str, str], np.ndarray]:
    """:func:`frozen_features` rows without their late-interaction columns (what a stacking head reads)."""
    from .students.encoder import FEATURES

    return {k: v[: len(FEATURES)] for k, v in rows.items()}


def frozen_rows(
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    folds_of: Mapping[str, dict[str, int]],
    late_features: Mapping[tuple[str, str, str], np.ndarray],
    feedback_rows: Mapping[tuple[str, str, str], np.ndarray] | None = None,
) -> dict[str, dict[str, dict[PairKey, int]]]:
    """The frozen tier on the cross-collection folds (row name → benchmark → grades): ``minilm-cosine-cross``, the
    cosine cut at each collection's grade shares; ``minilm-ridge-cross`` and ``minilm-late-cross``, the product's
    frozen student (``qrelkit distill``, ridge head; ``--late-interaction``) trained on the fold's training pairs;
    ``minilm-late-boosted-cross`` and ``minilm-late-spline-cross``, the same with ``--head boosted`` and ``spline``;
    ``minilm-late-context-cross`` and ``minilm-late-context-boosted-cross``, with the query-context columns of
    ``--query-context`` before the pool feedback ones (each query's judged pairs are its pool); with
    ``feedback_rows`` (:func:`with_query_context` with :func:`frozen_embeddings`), ``minilm-late-feedback-spline-cross``
    and ``minilm-late-feedback-boosted-cross``, today's ``--query-context`` (both), and their ``-calibrated-cross``
    twins, each collection cut at its own training pairs' grade shares as the stacked rows are.
    ``late_features``: :func:`frozen_features`' rows."""
    from .students.encoder import FEATURES, LATE_FEATURES, context_names

    features = five_features(late_features)
    pooled = with_query_context(datas, late_features)
    pooled_names = (*FEATURES, *LATE_FEATURES, *context_names(FEATURES + LATE_FEATURES))
    cosine = {b: {k: float(features[(b, *k)][0]) for k in _all_keys(datas[b])} for b in datas}
    feedback: dict[str, dict[str, dict[PairKey, int]]] = {}
    if feedback_rows is not None:
        names = _frozen_column_names(len(next(iter(feedback_rows.values()))))
        for kind in ("spline", "boosted"):
            by_cut = frozen_head_grades(datas, teachers, folds_of, feedback_rows, names, kind=kind)
            feedback[f"minilm-late-feedback-{kind}-cross"] = by_cut["all"]
            feedback[f"minilm-late-feedback-{kind}-calibrated-cross"] = by_cut["own"]  # cut as the stacked rows are
    return {
        "minilm-cosine-cross": _calibrated_per_collection(datas, teachers, folds_of, cosine),
        "minilm-ridge-cross": frozen_heads(datas, teachers, folds_of, features, FEATURES),
        "minilm-late-cross": frozen_heads(datas, teachers, folds_of, late_features, FEATURES + LATE_FEATURES),
        "minilm-late-boosted-cross": frozen_heads(
            datas, teachers, folds_of, late_features, FEATURES + LATE_FEATURES, kind="boosted"
        ),
        "minilm-late-spline-cross": frozen_heads(
            datas, teachers, folds_of, late_features, FEATURES + LATE_FEATURES, kind="spline"
        ),
        "minilm-late-context-cross": frozen_heads(datas, teachers, folds_of, pooled, pooled_names),
        "minilm-late-context-boosted-cross": frozen_heads(
            datas, teachers, folds_of, pooled, pooled_names, kind="boosted"
        ),
        **feedback,
    }


def with_query_context(
    datas: Mapping[str, BenchmarkData],
    rows: Mapping[tuple[str, str, str], np.ndarray],
    pools: Mapping[str, set[PairKey]] | None = None,
    embeddings: Mapping[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[tuple[str, str, str], np.ndarray]:
    """:func:`frozen_features` rows with the query-context columns (:func:`qrelkit.students.encoder.query_context`),
    each query's pool being all its judged pairs (open or held-out), as ``qrelkit label`` reads a pool; or, with
    ``pools``, only the pairs of each benchmark's pool (then only those are returned). Without ``embeddings`` the
    five :data:`~qrelkit.students.encoder.CONTEXT_STATS` of students made before the pool feedback; with them
    (:func:`frozen_embeddings`), today's ``--query-context`` columns: :data:`~qrelkit.students.encoder.POOL_STATS`
    and the pool feedback ones (:func:`qrelkit.students.encoder.pool_feedback`)."""
    from .students.encoder import CONTEXT_STATS, FEATURES, LATE_FEATURES, POOL_STATS, pool_feedback, query_context

    stats = CONTEXT_STATS if embeddings is None else POOL_STATS
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for b, data in datas.items():
        keys = sorted(pools[b]) if pools is not None else _all_keys(data)
        queries = [q for q, _ in keys]  # a query id stands for its text: both group a query's pairs
        x = np.array([rows[(b, *k)] for k in keys])
        x = np.column_stack([x, query_context(x, queries, FEATURES + LATE_FEATURES, stats)])
        if embeddings is not None:
            query_emb, doc_emb = (np.array([embeddings[(b, *k)][i] for k in keys]) for i in (0, 1))
            x = np.column_stack([x, pool_feedback(query_emb, doc_emb, queries)])
        out.update({(b, *k): row for k, row in zip(keys, x, strict=True)})
    return out


def frozen_heads(
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    folds_of: Mapping[str, dict[str, int]],
    features: Mapping[tuple[str, str, str], np.ndarray],
    names: Sequence[str],
    kind: str = "ridge",
) -> dict[str, dict[PairKey, int]]:
    """Per fold, :func:`~qrelkit.students.encoder.fit_head` (``kind``, cut at the teacher's grade shares on every
    training pair) on the frozen features (columns ``names``) of the teacher-labelled open pairs of every
    collection outside it. Only the pairs ``features`` holds are trained on and graded (all test pairs, or a pool)."""
    return frozen_head_grades(datas, teachers, folds_of, features, names, kind)["all"]


def frozen_head_grades(
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    folds_of: Mapping[str, dict[str, int]],
    features: Mapping[tuple[str, str, str], np.ndarray],
    names: Sequence[str],
    kind: str = "ridge",
) -> dict[str, dict[str, dict[PairKey, int]]]:
    """:func:`frozen_heads`' grades under two cuts of the same heads: ``"all"`` (the teacher's grade shares on every
    training pair, the product's rule on one collection) and ``"own"`` (each collection cut at its own training pairs'
    shares, as the stacked rows are)."""
    from .students.encoder import fit_head, head_scores

    out: dict[str, dict[str, dict[PairKey, int]]] = {cut: {b: {} for b in datas} for cut in ("all", "own")}
    for f in sorted({v for fo in folds_of.values() for v in fo.values()}):
        pairs, grades, source = _training_pairs(datas, teachers, folds_of, f)
        split = (p.qid.split(":", 1) for p in pairs)  # training qids are "benchmark:qid"
        keys = [(b, q, p.doc_id) for (b, q), p in zip(split, pairs, strict=True)]
        kept = [i for i, k in enumerate(keys) if k in features]
        x = np.array([features[keys[i]] for i in kept])
        target = np.array([grades[i] for i in kept])
        head = fit_head(x, target.astype(float), target, kind=kind, features=names)
        cuts = _cuts_by_collection(head_scores(head, x), target, np.array([source[i] for i in kept]), datas)
        for b, data in datas.items():
            test = [k for k in _all_keys(data) if folds_of[b][k[0]] == f and (b, *k) in features]
            if test:
                scores = head_scores(head, np.array([features[(b, *k)] for k in test]))
                for cut, points in (("all", head["thresholds"]), ("own", cuts[b])):
                    g = grades_from_thresholds(points, scores)
                    out[cut][b].update(zip(test, g.tolist(), strict=True))
    return out


def _calibrated_per_collection(
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    folds_of: Mapping[str, dict[str, int]],
    scores: Mapping[str, Mapping[PairKey, float]],
) -> dict[str, dict[PairKey, int]]:
    """Grades from scores cut at thresholds that give each fold the teacher's grade shares on the same
    collection's open pairs of the other folds (no label of a graded query is used)."""
    out: dict[str, dict[PairKey, int]] = {}
    for b, data in datas.items():
        teacher, fold_of = data.label_sets[teachers[b]], folds_of[b]
        cuts: dict[int, list[float]] = {}
        for f in sorted(set(fold_of.values())):
            train = [k for k in ((p.qid, p.doc_id) for p in data.open_pairs) if fold_of[k[0]] != f and k in teacher]
            if len(train) >= 10:
                cuts[f] = distribution_thresholds(
                    np.array([scores[b][k] for k in train]), np.array([teacher[k] for k in train])
                )
            else:  # no open query of this collection outside the fold (smoke runs): every collection's
                cuts[f] = _pooled_cuts(datas, teachers, folds_of, scores, f)
        out[b] = _cut_by_fold(_all_keys(data), scores[b], fold_of, cuts)
    return out


def _cut_by_fold(
    keys: Sequence[PairKey],
    scores: Mapping[PairKey, float],
    fold_of: Mapping[str, int],
    cuts: Mapping[int, Sequence[float]],
) -> dict[PairKey, int]:
    """The grade of each pair in ``keys``: its score cut at the cut points of its query's fold."""
    out: dict[PairKey, int] = {}
    for f, fold_cuts in cuts.items():
        test = [k for k in keys if fold_of[k[0]] == f]
        g = grades_from_thresholds(fold_cuts, np.array([scores[k] for k in test]))
        out.update(zip(test, g.tolist(), strict=True))
    return out


def _cuts_by_collection(
    scores: np.ndarray, grades: np.ndarray, source: np.ndarray, collections: Iterable[str]
) -> dict[str, list[float]]:
    """Cut points giving training pairs the teacher's grade shares: ``"all"`` over every pair, and per collection
    over its own pairs (``source``), or ``"all"``'s where a collection has fewer than 10."""
    cuts = {"all": distribution_thresholds(scores, grades)}
    for b in collections:
        mask = source == b
        cuts[b] = distribution_thresholds(scores[mask], grades[mask]) if mask.sum() >= 10 else cuts["all"]
    return cuts


def _pooled_cuts(
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    folds_of: Mapping[str, dict[str, int]],
    scores: Mapping[str, Mapping[PairKey, float]],
    fold: int,
) -> list[float]:
    """Cut points from the open pairs of every collection outside ``fold``."""
    s, g = [], []
    for b, data in datas.items():
        teacher = data.label_sets[teachers[b]]
        for p in data.open_pairs:
            k = (p.qid, p.doc_id)
            if folds_of[b][p.qid] != fold and k in teacher:
                s.append(scores[b][k])
                g.append(teacher[k])
    return distribution_thresholds(np.array(s), np.array(g))


def _frozen_column_names(width: int) -> tuple[str, ...]:
    """The names of the first ``width`` columns of a frozen feature row: the five features, then the
    late-interaction ones, then today's ``--query-context`` columns (:func:`with_query_context` with embeddings);
    each layout is a prefix of the next."""
    from .students.encoder import feature_layout

    names = feature_layout(late_interaction=True, query_context=True)
    if width > len(names):
        raise QrelkitError(f"a frozen feature row has at most {len(names)} columns, not {width}")
    return names[:width]


def _stacked(
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    folds_of: Mapping[str, dict[str, int]],
    features: Mapping[tuple[str, str, str], np.ndarray],
    recipe_scores: Sequence[Mapping[str, Mapping[PairKey, float]]],
    kind: str = "ridge",
) -> dict[str, dict[PairKey, int]]:
    """A ridge (or another head ``kind`` of :func:`~qrelkit.students.encoder.fit_head`: spline, boosted) over [each
    fine-tuned student's score, frozen features] per fold, cross-fitted: the head for fold ``f`` learns from the
    other folds' open pairs, whose student scores come from students that never saw them.

    Each fold's scores are cut where that fold's head gives each collection's training pairs the teacher's grade
    shares: the head's own scale. (Cut points fit on the other folds' stacked scores, as before, came from
    other heads, each on its own scale: a ridge over the frozen cosine alone, a monotone map of it, lost 0.03 κ
    and 0.10 quadratic κ against the cosine cut directly.)"""
    width = len(next(iter(features.values())))  # the five features, with the late-interaction ones, or the pool's
    columns = [f"recipe{i}" for i in range(len(recipe_scores))] + list(_frozen_column_names(width))

    def row(b: str, k: PairKey) -> np.ndarray:
        return np.concatenate([[s[b][k] for s in recipe_scores], features[(b, *k)]])

    stacked: dict[str, dict[PairKey, float]] = {b: {} for b in datas}
    cuts: dict[str, dict[int, list[float]]] = {b: {} for b in datas}
    for f in sorted({v for fo in folds_of.values() for v in fo.values()}):
        x, y, source = [], [], []
        for b, data in datas.items():
            teacher = data.label_sets[teachers[b]]
            for p in data.open_pairs:
                k = (p.qid, p.doc_id)
                if folds_of[b][p.qid] != f and k in teacher:
                    x.append(row(b, k))
                    y.append(teacher[k])
                    source.append(b)
        xa, ya, src = np.array(x), np.array(y), np.array(source)
        score = _stacking_head(xa, ya, columns, kind)
        fold_cuts = _cuts_by_collection(score(xa), ya, src, datas)
        for b, data in datas.items():
            cuts[b][f] = fold_cuts[b]
            test = [k for k in _all_keys(data) if folds_of[b][k[0]] == f]
            if test:
                pred = score(np.array([row(b, k) for k in test]))
                stacked[b].update({k: float(v) for k, v in zip(test, pred, strict=True)})
    return {b: _cut_by_fold(_all_keys(d), stacked[b], folds_of[b], cuts[b]) for b, d in datas.items()}


def _stacking_head(
    x: np.ndarray, y: np.ndarray, columns: Sequence[str], kind: str
) -> Callable[[np.ndarray], np.ndarray]:
    """Fit a head of ``kind`` on ``x`` → the teacher's grades ``y``; returns its scoring function."""
    if kind == "ridge":
        ridge = fit_stack_head(x, y, features=columns)
        return lambda rows: stack_scores(ridge, rows)
    from .students.encoder import fit_head, head_scores

    head = fit_head(x, y.astype(float), y, kind=kind, features=columns)
    return lambda rows: head_scores(head, rows)


def _training_pairs(
    datas: Mapping[str, BenchmarkData], teachers: Mapping[str, str], folds_of: Mapping[str, dict[str, int]], fold: int
) -> tuple[list[Pair], list[int], list[str]]:
    """The teacher-labelled open pairs of every benchmark outside ``fold``, their grades and benchmarks."""
    pairs, grades, source = [], [], []
    for b, d in datas.items():
        teacher = d.label_sets[teachers[b]]
        for p in d.open_pairs:
            if folds_of[b][p.qid] != fold and (p.qid, p.doc_id) in teacher:
                pairs.append(p.model_copy(update={"qid": f"{b}:{p.qid}"}))
                grades.append(teacher[(p.qid, p.doc_id)])
                source.append(b)
    return pairs, grades, source


def _train_and_score(
    spec: CrossSpec,
    fold: int,
    datas: Mapping[str, BenchmarkData],
    teachers: Mapping[str, str],
    folds_of: Mapping[str, dict[str, int]],
    stage1: Path | None,
    path: Path,
    device: str | None,
    features: Mapping[tuple[str, str, str], np.ndarray] | None = None,
) -> None:
    from .students.targets import sample_by_query, split_by_query

    pairs, grades, source = _training_pairs(datas, teachers, folds_of, fold)
    held: tuple[list[Pair], list[int], list[str]] | None = None
    if spec.stack_held_out:
        train, out = split_by_query(pairs, spec.stack_held_out, spec.seed)
        held = _rows_at(out, pairs, grades, source)
        pairs, grades, source = _rows_at(train, pairs, grades, source)
    available = len(pairs)
    if spec.max_pairs and len(pairs) > spec.max_pairs:
        keep = sorted(sample_by_query(pairs, spec.max_pairs, spec.seed))
        pairs, grades, source = _rows_at(keep, pairs, grades, source)
    log.info("%s fold %d: training on %d of %d teacher-labelled pairs", spec.name, fold, len(pairs), available)
    t0 = time.perf_counter()
    stacking = (held[0], held[1], features) if held else None
    scorer, training, student, held_scores = _fit(
        spec, pairs, grades, stage1, path.parent / f"fold{fold}.ckpt", device, stacking
    )
    train_s = time.perf_counter() - t0
    # cut points where the scores are as on new queries: a stacked student's held-out pairs
    cut_on = held or (pairs, grades, source)
    cut_scores = scorer(cut_on[0]) if held_scores is None else held_scores
    thresholds = _cuts_by_collection(cut_scores, np.array(cut_on[1]), np.array(cut_on[2]), datas)
    if student is not None:
        student.thresholds = thresholds["all"]
        student.card.update({"train_pairs": len(pairs), "fold": fold, "recipe": spec.name})
        student.save(path.parent / f"fold{fold}.student")
    t1 = time.perf_counter()
    scores: dict[str, list[tuple[str, str, float]]] = {}
    n_test = 0
    for b, d in datas.items():
        test = [p for p in d.open_pairs + d.heldout_pairs if folds_of[b][p.qid] == fold]
        s = scorer([p.model_copy(update={"qid": f"{b}:{p.qid}"}) for p in test])  # as the training pairs
        scores[b] = [(p.qid, p.doc_id, float(v)) for p, v in zip(test, s, strict=True)]
        n_test += len(test)
    stats = {
        "fold": fold,
        "train_pairs_available": available,
        "train_pairs": len(pairs),
        "train_queries": len({p.qid for p in pairs}),
        "train_seconds": round(train_s, 1),
        "training": training,
        "graded_pairs": n_test,
        "grade_seconds": round(time.perf_counter() - t1, 1),
        "pairs_per_s": n_test / (time.perf_counter() - t1),
    }
    with atomic_write(path) as tmp:
        tmp.write_bytes(
            gzip.compress(json.dumps({"stats": stats, "thresholds": thresholds, "scores": scores}).encode())
        )


def _rows_at(
    idx: Sequence[int], pairs: list[Pair], grades: list[int], source: list[str]
) -> tuple[list[Pair], list[int], list[str]]:
    """The training pairs, grades and benchmarks at ``idx``."""
    return [pairs[i] for i in idx], [grades[i] for i in idx], [source[i] for i in idx]


def _fit(
    spec: CrossSpec,
    pairs: list[Pair],
    grades: list[int],
    stage1: Path | None,
    ckpt: Path,
    device: str | None,
    stacking: tuple[list[Pair], list[int], Mapping[tuple[str, str, str], np.ndarray] | None] | None = None,
) -> tuple[Callable[[Sequence[Pair]], np.ndarray], dict[str, Any], Any, np.ndarray | None]:
    """Train one fold's student; returns its scoring function (pairs → continuous 0–3 scores), stats, for the
    causal and the stacked cross-encoder students the model (saved beside the fold's scores: the benchmarks label
    with it), and for a stacked student its scores of the held-out pairs. ``stacking``: the held-out pairs, their
    grades and the frozen features to stack on."""
    if spec.kind == "causal":
        from .students.causal import CausalStudent

        lm = CausalStudent.from_base(spec.base, max_passage_tokens=spec.max_length, device=device)
        training = lm.fit(
            pairs,
            np.eye(4)[grades],
            epochs=spec.epochs,
            learning_rate=spec.learning_rate,
            batch_size=spec.batch_size,
            checkpoint_dir=ckpt,
            time_budget_s=spec.time_budget_s,
        )

        def lm_scores(ps: Sequence[Pair]) -> np.ndarray:
            return lm.scores([p.query for p in ps], [p.text for p in ps], batch_size=4 * spec.batch_size)

        return lm_scores, {**training, "base": spec.base, "device": str(lm.model.device)}, lm, None
    if spec.kind == "bi-encoder":
        from .students.bi_encoder import fine_tune_encoder
        from .students.encoder import Student, fit_head, head_scores

        base = Student.from_base(spec.base, max_length=spec.max_length, strip_echoes=spec.strip_echoes)
        tuned = fine_tune_encoder(
            base,
            pairs,
            grades,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            checkpoint_dir=ckpt,
            seed=spec.seed,
        )
        x = tuned.features([p.query for p in pairs], [p.text for p in pairs])
        g = np.array(grades)
        head = fit_head(x, g.astype(float), g, kind="ridge")

        def bi_scores(ps: Sequence[Pair]) -> np.ndarray:
            return head_scores(head, tuned.features([p.query for p in ps], [p.text for p in ps]))

        return bi_scores, {**tuned.card["fine_tuned"], "head": "ridge", "coef": head["coef"]}, None, None
    from .students.cross_encoder import CrossEncoderStudent

    # trained directly, not through distill_cross_encoder: the fold fits its own cut points on the scores of its
    # training pairs, so the student's own calibration would score all of them a second time
    student = CrossEncoderStudent.from_base(
        str(stage1) if stage1 else spec.base, max_length=spec.max_length, device=device, strip_echoes=spec.strip_echoes
    )
    training = student.fit(
        pairs,
        [float(g) for g in grades],
        loss=spec.loss,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        checkpoint_dir=ckpt,
        seed=spec.seed,
    )

    def ce_scores(ps: Sequence[Pair]) -> np.ndarray:
        return student.scores([p.query for p in ps], [p.text for p in ps])

    if stacking is None:
        return ce_scores, training, None, None
    held, held_grades, features = stacking
    if features is None:
        raise QrelkitError(f"{spec.name}: stacking needs the frozen features")

    def companion_rows(ps: Sequence[Pair]) -> np.ndarray:  # cached features of "benchmark:qid" pairs
        keys = ([*p.qid.split(":", 1), p.doc_id] for p in ps)
        return np.array([features[(b, q, d)] for b, q, d in keys])

    held_rows = np.column_stack([ce_scores(held), companion_rows(held)])  # scored once: stacked, then cut
    training["stack"] = student.stack(held, held_grades, features=held_rows[:, 1:], own=held_rows[:, 0])
    assert student.stack_head is not None

    def stacked_scores(ps: Sequence[Pair]) -> np.ndarray:
        return student.scores([p.query for p in ps], [p.text for p in ps], features=companion_rows(ps))

    # the student is saved beside the fold's scores (for `qrelkit bench`); the held-out pairs' stacked scores
    return stacked_scores, training, student, stack_scores(student.stack_head, held_rows)


def _stage1(
    spec: CrossSpec,
    datas: Mapping[str, BenchmarkData],
    work: Path,
    synthetic_file: str | Path | None,
    data_root: Path | None,
    device: str | None,
) -> Path:
    """Stage 1 once per recipe (no benchmark label is used, so every fold may start from it): synthetic queries
    written from the benchmarks' passages, each with its seed passage as positive and BM25 neighbours as
    negatives. Never a query equal to a benchmark query. With ``spec.stage1_from``, that recipe's stage 1 is
    trained (or reused) first and continued on the queries of the sample beyond its count (none: shared as is)."""
    from .students.cross_encoder import CrossEncoderStudent, synthetic_stage_pairs

    folder = work / spec.name / "stage1"
    if (folder / "student.json").exists():
        return folder
    before = spec.stage1_from
    start: Path | None = None
    if before:
        if (before.base, before.max_length, before.round_trip) != (spec.base, spec.max_length, spec.round_trip):
            raise QrelkitError(
                f"{spec.name} continues {before.name}'s stage 1: base, max_length and round_trip must be the same"
            )
        if before.synthetic_queries > spec.synthetic_queries:
            raise QrelkitError(f"{spec.name} continues {before.name}'s stage 1: it needs as many synthetic queries")
        start = _stage1(before, datas, work, synthetic_file, data_root, device)
        if before.synthetic_queries == spec.synthetic_queries:
            return start  # the same stage 1 (e.g. another loss in stage 2): shared, not trained again
    src = Path(synthetic_file) if synthetic_file else _synthetic_queries_file(data_root)
    if not src.exists():
        raise QrelkitError(f"{spec.name} needs synthetic queries: {src} not found")
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    real = {normalize_query(q) for d in datas.values() for q in d.queries.values()}
    rng = np.random.default_rng(0)
    rows = [r for r in rows if r["benchmark"] in datas and normalize_query(r["text"]) not in real]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    docs_of = {b: _passages(b, data_root) for b in datas}
    if spec.round_trip:
        rows = _round_trip_kept(rows, docs_of, spec.round_trip)
    rows = rows[: spec.synthetic_queries]
    seen = min(before.synthetic_queries, len(rows)) if before else 0
    total, rows = len(rows), rows[seen:]
    if not rows:
        after = f" beyond the {seen} {before.name} trained on" if before else ""
        raise QrelkitError(f"{spec.name}: no synthetic queries for these benchmarks{after} in {src}")
    pairs: list[Pair] = []
    targets: list[float] = []
    for b, docs in docs_of.items():
        mine = [(i, r) for i, r in enumerate(rows, seen) if r["benchmark"] == b]
        queries = [(f"syn:{b}:{i}", r["text"], str(r["seed_pid"])) for i, r in mine]
        p, t = synthetic_stage_pairs(queries, docs, seed=0)
        pairs += p
        targets += t
    log.info("%s stage 1: %d synthetic pairs from %d queries", spec.name, len(pairs), len(rows))
    student = CrossEncoderStudent.from_base(
        str(start) if start else spec.base, max_length=spec.max_length, device=device, strip_echoes=spec.strip_echoes
    )
    student.pretrain(
        pairs,
        targets,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        checkpoint_dir=folder.with_name("stage1.ckpt"),
    )
    student.card["stage1_queries"] = total  # with stage1_from: the earlier recipe's queries too
    if before:
        student.card["stage1_continues"] = {"recipe": before.name, "queries": seen}
    student.save(folder)  # a base for the folds only: no cut points (each fold fits its own)
    return folder


def _synthetic_queries_file(data_root: Path | None) -> Path:
    """The shared synthetic queries: beside the benchmarks in ``data_root`` when it holds them (a staged copy, as
    on the GPU machine), else where :func:`qrelkit.benchmarks.benchmark_dir` finds research data."""
    default = "smollm2-135m.jsonl.gz"
    if data_root is not None and (data_root / "synthetic-queries" / default).exists():
        return data_root / "synthetic-queries" / default
    return benchmark_dir("synthetic-queries", marker=default) / default


def _passages(benchmark: str, data_root: Path | None) -> dict[str, str]:
    from .io import read_documents

    root = data_root / benchmark if data_root else benchmark_dir(benchmark)  # a benchmark's folder name
    return {d.doc_id: d.text for d in read_documents(root / "passages.jsonl")}


def _round_trip_kept(
    rows: Sequence[dict[str, Any]], docs_of: Mapping[str, dict[str, str]], depth: int
) -> list[dict[str, Any]]:
    """The synthetic query rows (in their order) whose seed passage BM25 ranks within ``depth`` in its benchmark."""
    from .students.cross_encoder import synthetic_stage_pairs

    kept: set[int] = set()
    for b, docs in docs_of.items():
        queries = [(str(i), r["text"], str(r["seed_pid"])) for i, r in enumerate(rows) if r["benchmark"] == b]
        pairs, _ = synthetic_stage_pairs(queries, docs, negatives=0, n_random=0, round_trip=depth)
        kept.update(int(p.qid) for p in pairs)
    return [r for i, r in enumerate(rows) if i in kept]


def _report(
    name: str,
    teacher: str,
    data: BenchmarkData,
    students: Mapping[str, Qrels],
    folds: int,
    specs: list[dict[str, Any]],
    timing: Mapping[str, Any],
    out: Path,
    bootstrap: int,
) -> dict[str, Any]:
    notes = [
        f"benchmark {name}; teacher {teacher}; {folds} folds by query per benchmark; each student grades "
        "its fold after training on the teacher's labels of the open queries of the other folds of all benchmarks",
        "grade cut points: <recipe> fits them to the teacher's grade shares on all its training pairs; "
        "*-calibrated on this benchmark's training pairs; *-xcal on this benchmark's other folds' pairs as scored "
        "by the students that did not train on them; *-stacked is a ridge over the student's score and the "
        "frozen MiniLM features, trained on the other folds' pairs and cut at this benchmark's grade shares on them "
        "(stacked-all: over every recipe's score); "
        "minilm-cosine-cross is the frozen MiniLM cosine; minilm-ridge-cross and minilm-late-cross the frozen student "
        "(ridge head, without and with its late-interaction features) trained on the fold's training pairs; "
        "minilm-late-boosted-cross and minilm-late-spline-cross the same with late features and gradient-boosted "
        "trees or one spline a feature as its head; "
        "*-context-* also read each pair's standing among the judged pairs of its query (--query-context before "
        "2026-11-30's pool feedback), *-feedback-* that and each passage's likeness to the query's best other judged "
        "passages (today's --query-context)",
        "human grades are used only for evaluation (not for training or calibration)",
    ]
    out.mkdir(parents=True, exist_ok=True)
    title = f"qrelkit cross-collection experiment: {name}"
    # intervals (a bootstrap costs about 0.1 s per resample and labeler here) for the teacher and the best
    # student, chosen by point agreement; every other student is a point-only row
    point = {n: evaluate_qrels(q, data.human) for n, q in students.items()}
    best = max(point, key=lambda n: (point[n]["kappa"] + point[n]["kappa_quadratic"]) / 2)
    teacher_name, report, paths = teacher_report(
        data,
        teacher,
        {best: students[best]},
        out / "report",
        title=title,
        notes=notes,
        bootstrap=bootstrap,
        point_only={n: q for n, q in students.items() if n != best},
    )
    m = report["metrics"]
    summary = {
        "benchmark": name,
        "teacher": teacher,
        "folds": folds,
        "open_queries": len({p.qid for p in data.open_pairs}),
        "open_pairs": len(data.open_pairs),
        "heldout_queries": len({p.qid for p in data.heldout_pairs}),
        "heldout_pairs": len(data.heldout_pairs),
        "students": specs,
        "timing": timing,
        "best_student": best,
        "machine": machine_name(),
        "headline": headline(report, teacher_name, best),
        "all_students": {n: {k: m[n][k] for k in ("kappa", "kappa_quadratic", "binary_kappa")} for n in students},
        "table": format_table({n: m[n] for n in report["labelers"]}),
        "report": str(paths["html"]),
    }
    (out / "experiment.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    text = format_headline(summary, timing_line=False)
    (out / "headline.md").write_text(text + "\n")
    return summary


def _mean_over_collections(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Mean over collections of each labeler role (teacher, best student, difference) and each metric."""
    roles: dict[str, dict[str, list[float]]] = {"teacher": {}, "student": {}, "student - teacher": {}}
    for s in summaries.values():
        for (_, metrics), role in zip(s["headline"].items(), roles, strict=True):
            for k, v in metrics.items():
                roles[role].setdefault(k, []).append(v["value"])
    return {role: {k: float(np.mean(v)) for k, v in ms.items()} for role, ms in roles.items()}


def _same_student_everywhere(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The one variant with the best mean agreement over collections. The per-collection best student is chosen
    on the human grades it is scored on; a single variant fixed for every collection is the less flattering and
    fairer figure."""
    names = set.intersection(*(set(s["all_students"]) for s in summaries.values()))
    means = {
        n: {
            k: float(np.mean([s["all_students"][n][k] for s in summaries.values()]))
            for k in ("kappa", "kappa_quadratic", "binary_kappa")
        }
        for n in names
    }
    best = max(sorted(means), key=lambda n: means[n]["kappa"] + means[n]["kappa_quadratic"])
    return {"student": best, **means[best]}


def format_cross(summary: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [f"# Cross-collection experiment ({summary['folds']} folds by query per benchmark)", ""]
    for s in summaries.values():
        lines += [format_headline(s, timing_line=False), ""]
    metrics = list(summary["mean"]["teacher"])
    rows = ([role, *(f"{ms[k]:.3f}" for k in metrics)] for role, ms in summary["mean"].items())
    lines += ["## Mean over collections", "", markdown_table(["role", *metrics], rows)]
    same = summary["same_student_everywhere"]
    lines += [
        "",
        f"One variant for every collection (best mean): {same['student']}, mean κ {same['kappa']:.3f}, "
        f"quadratic κ {same['kappa_quadratic']:.3f}, binary κ {same['binary_kappa']:.3f} "
        "(the rows above take each collection's best variant, chosen on the human grades they are scored on).",
    ]
    lines += ["", f"machine: {summary['machine']}; wall {summary['wall_seconds']} s"]
    return "\n".join(lines)
