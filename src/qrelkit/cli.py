"""``qrelkit <stage>``: a thin command line over the stage functions in :mod:`qrelkit.pipeline`."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text
from typer.core import TyperOption

from .errors import QrelkitError
from .llm import DEFAULT_LLM

_type_column = getattr(TyperOption, "display_type_rich", None)  # typer 0.29; other versions print no <bool>


def _flag_type_column(self: TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so its help row shows no type (typer writes ``<bool>`` there)."""
    return None if getattr(self, "is_bool_flag", False) or _type_column is None else _type_column(self, ctx)


if _type_column is not None:
    TyperOption.display_type_rich = _flag_type_column  # type: ignore[method-assign]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distil an LLM relevance judge into a fast student labeler.",
)
err = Console(stderr=True)
# stdout carries results only (JSON, Markdown tables), never wrapped: `qrelkit evaluate ... > m.md` stays valid Markdown
out = Console(soft_wrap=True, highlight=False)

Duplicates = Annotated[
    bool,
    typer.Option(
        "--allow-duplicates", help="a pair graded twice in a qrels file: keep its last grade and warn (not an error)"
    ),
]
Runs = Annotated[
    list[Path] | None,
    typer.Option(
        help="TREC run files, or folders of them (repeatable): how the labels rank these systems against the human "
        "grades (Kendall τ, Spearman ρ, τ_AP, same best)"
    ),
]
Measure = Annotated[str, typer.Option(help="what ranks the systems (ir_measures notation)")]
Llm = Annotated[
    str,
    typer.Option(
        "--llm", help="gguf:PATH|ALIAS, hf:NAME, openai:MODEL, azure:DEPLOYMENT, http://HOST:PORT/v1#MODEL, or an alias"
    ),
]
Cache = Annotated[
    Path | None,
    typer.Option(help="SQLite cache of LLM results (default: <output stem>.cache.sqlite; reruns make no model calls)"),
]
DataDir = Annotated[
    Path | None,
    typer.Option(help="folder holding the benchmark folders (default: $QRELKIT_BENCHMARKS or ../shared/benchmarks)"),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="keep no cache (an interrupted run starts over)")]


def _show(result: dict[str, Any]) -> None:
    out.print_json(json.dumps(result, default=str))


def _at_least(minimum: float, **values: float | None) -> None:
    """One ``error:`` line (exit 2) for a numeric option below its minimum, before any work starts."""
    for name, value in values.items():
        if value is not None and value < minimum:
            flag = "--" + name.replace("_", "-")
            raise QrelkitError(f"{flag} must be at least {minimum:g}, got {value:g}")


@app.command()
def ingest(
    corpus: Annotated[Path, typer.Argument(help="JSONL/CSV/TSV/Parquet file or a folder of .txt/.md/.html/.pdf")],
    output: Annotated[Path, typer.Option("-o", "--output", help="documents.parquet to write")] = Path(
        "documents.parquet"
    ),
    id_field: Annotated[str | None, typer.Option(help="id column (default: doc_id/docid/id/pid/_id)")] = None,
    text_field: Annotated[str | None, typer.Option(help="text column (default: text/contents/body/...)")] = None,
    title_field: Annotated[str | None, typer.Option(help="column holding a title, prepended to the text")] = None,
    skip_bad: Annotated[bool, typer.Option(help="skip malformed lines and non-UTF-8 files instead of failing")] = False,
    passage_words: Annotated[
        int | None,
        typer.Option(help="cut documents longer than this many words into passages <doc_id>#<k> (e.g. 200)"),
    ] = None,
    passage_overlap: Annotated[int, typer.Option(help="words each passage repeats from the one before")] = 0,
) -> None:
    """Read a corpus into documents.parquet (long documents cut into passages with --passage-words)."""
    from .pipeline import ingest_file

    _show(
        ingest_file(
            corpus,
            output,
            id_field=id_field,
            text_field=text_field,
            title_field=title_field,
            skip_bad=skip_bad,
            passage_words=passage_words,
            passage_overlap=passage_overlap,
        )
    )


@app.command()
def synth(
    docs: Annotated[Path, typer.Argument(help="documents.parquet from ingest")],
    output: Annotated[Path, typer.Option("-o", "--output", help="queries.jsonl to write")] = Path("queries.jsonl"),
    llm: Llm = DEFAULT_LLM,
    n_seeds: Annotated[int, typer.Option(help="number of seed documents")] = 50,
    per_doc: Annotated[int, typer.Option(help="queries per seed document (one per style)")] = 3,
    seed: Annotated[int, typer.Option(help="random seed for picking the seed documents")] = 0,
    cache: Cache = None,
    no_cache: NoCache = False,
    prompt: Annotated[str, typer.Option(help="prompt id or YAML file")] = "synth-queries",
    batch_size: Annotated[
        int, typer.Option(help="prompts per batched generation (hf: backend; on a GPU, try 256)")
    ] = 16,
    concurrency: Annotated[int, typer.Option(help="requests in flight (HTTP backends)")] = 4,
) -> None:
    """Write synthetic queries (keyword, question, short) from seed documents."""
    from .pipeline import synth_file

    _at_least(1, batch_size=batch_size, concurrency=concurrency)
    _show(
        synth_file(
            docs,
            output,
            llm=llm,
            n_seeds=n_seeds,
            per_doc=per_doc,
            seed=seed,
            cache=cache,
            prompt=prompt,
            no_cache=no_cache,
            batch_size=batch_size,
            concurrency=concurrency,
        )
    )


@app.command()
def mine(
    queries: Annotated[Path, typer.Argument(help="queries.jsonl from synth (or your own: qid, text)")],
    docs: Annotated[Path, typer.Argument(help="documents.parquet from ingest")],
    output: Annotated[Path, typer.Option("-o", "--output", help="pairs.parquet to write")] = Path("pairs.parquet"),
    k: Annotated[int, typer.Option("--k", help="BM25 candidates per query")] = 20,
    n_random: Annotated[int, typer.Option("--random", help="random documents per query (easy negatives)")] = 2,
    seed: Annotated[int, typer.Option(help="random seed for the random documents")] = 0,
) -> None:
    """Pair each query with its seed document, BM25's top-k near misses and a few random documents."""
    from .pipeline import mine_file

    _at_least(0, k=k, random=n_random)

    _show(mine_file(queries, docs, output, k=k, n_random=n_random, seed=seed))


@app.command()
def pool(
    runs: Annotated[list[Path], typer.Argument(help="TREC run files, or folders of them")],
    queries: Annotated[Path, typer.Option(help="query texts: JSONL (qid, text) or TSV (qid<TAB>text)")],
    docs: Annotated[Path, typer.Option(help="documents.parquet from ingest")],
    output: Annotated[Path, typer.Option("-o", "--output", help="pairs.parquet to write")] = Path("pairs.parquet"),
    depth: Annotated[int, typer.Option(help="each run's top documents per query that enter the pool")] = 10,
) -> None:
    """Pool retrieval runs (the union of each run's top documents per query) into pairs to label."""
    from .pipeline import pool_file

    _at_least(1, depth=depth)
    _show(pool_file(runs, queries, docs, output, depth=depth))


@app.command()
def judge(
    pairs: Annotated[Path, typer.Argument(help="pairs.parquet from mine, or JSONL with qid, query, doc_id, text")],
    output: Annotated[Path, typer.Option("-o", "--output", help="teacher qrels to write (+ sidecars)")] = Path(
        "teacher.qrels"
    ),
    llm: Llm = DEFAULT_LLM,
    cache: Cache = None,
    no_cache: NoCache = False,
    prompt: Annotated[str, typer.Option(help="prompt id or YAML file")] = "judge-rubric",
    max_chars: Annotated[int, typer.Option(help="truncate documents to this many characters")] = 1200,
    concurrency: Annotated[int, typer.Option(help="requests in flight (HTTP backends)")] = 4,
    batch_size: Annotated[
        int | None, typer.Option(help="pairs per forward pass (hf: backend; default 32 on a GPU, 1 on CPU)")
    ] = None,
    prices: Annotated[Path | None, typer.Option(help="YAML price table: {model: {input: $/1M, output: $/1M}}")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="estimate tokens and cost; call nothing")] = False,
    rpm: Annotated[float | None, typer.Option(help="max requests per minute (HTTP backends)")] = None,
    tpm: Annotated[float | None, typer.Option(help="max tokens per minute (HTTP backends)")] = None,
) -> None:
    """Grade pairs 0–3 with the teacher LLM (TREC qrels + judgments.jsonl + run.json with tokens and cost)."""
    from .judge import failures_file
    from .pipeline import judge_file

    _at_least(1, max_chars=max_chars, concurrency=concurrency, batch_size=batch_size)
    _at_least(0.001, rpm=rpm, tpm=tpm)

    stats = judge_file(
        pairs,
        output,
        llm=llm,
        cache=cache,
        no_cache=no_cache,
        prompt=prompt,
        max_chars=max_chars,
        concurrency=concurrency,
        batch_size=batch_size,
        prices=prices,
        dry_run=dry_run,
        rpm=rpm,
        tpm=tpm,
    )
    _show(stats)
    if dry_run:
        return
    if stats["failures"]:
        err.print(f"[red]{stats['failures']} pair(s) could not be graded; see {failures_file(output)}")
        raise typer.Exit(1)


@app.command()
def distill(
    pairs: Annotated[Path, typer.Argument(help="pairs.parquet (or JSONL) the teacher graded")],
    teacher: Annotated[
        list[Path],
        typer.Argument(help="teacher.qrels (judgments.jsonl beside it adds soft labels); several: an ensemble"),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="student folder to write")] = Path("model"),
    head: Annotated[
        str, typer.Option(help="spline (a curve a feature), ridge (a line), boosted (trees), logistic, cosine")
    ] = "spline",
    label_smoothing: Annotated[float, typer.Option(help="logistic head, hard labels: mass on other grades")] = 0.0,
    base: Annotated[
        str, typer.Option(help="encoder (sentence-transformers/HF name or folder); causal: gguf:ALIAS|PATH or HF name")
    ] = "all-MiniLM-L6-v2",
    max_length: Annotated[
        int, typer.Option(help="tokens per text (frozen), per query+passage (cross-encoder), per passage (causal)")
    ] = 256,
    seed: Annotated[int, typer.Option(help="random seed (sampling, shuffling, initialisation)")] = 0,
    student: Annotated[
        str, typer.Option(help="frozen (MiniLM + head, seconds), cross-encoder or causal (fine-tuned: GPU or patience)")
    ] = "frozen",
    loss: Annotated[str, typer.Option(help="cross-encoder: bce, mse (pointwise); listnet, lambda (listwise)")] = "bce",
    epochs: Annotated[float, typer.Option(help="fine-tuned: passes over the training pairs")] = 1.0,
    max_pairs: Annotated[
        int | None, typer.Option(help="fine-tuned: train on at most this many pairs (query-stratified)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="fine-tuned: pairs per training step")] = 16,
    time_budget: Annotated[
        float | None, typer.Option(help="fine-tuned: stop training after this many seconds (saved)")
    ] = None,
    fine_tune_epochs: Annotated[
        float, typer.Option(help="frozen student: first fine-tune its encoder on the teacher's grades (epochs)")
    ] = 0.0,
    learning_rate: Annotated[
        float | None, typer.Option(help="fine-tuned: step size (default 4e-5 cross-encoder, 2e-4 causal LoRA)")
    ] = None,
    allow_duplicates: Duplicates = False,
    pretrain_queries: Annotated[
        Path | None,
        typer.Option(help="cross-encoder: first train on these synthetic queries (queries.jsonl with seed_doc_id)"),
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="cross-encoder: the documents the synthetic queries were written from")
    ] = None,
    pretrain_max_queries: Annotated[
        int | None, typer.Option(help="cross-encoder: pre-train on at most this many synthetic queries (a sample)")
    ] = None,
    stack_held_out: Annotated[
        float,
        typer.Option(
            help="cross-encoder: keep this share of the queries out of training and stack the student on them with "
            "the frozen MiniLM's features (0: no stacking)"
        ),
    ] = 0.0,
    late_interaction: Annotated[
        bool | None,
        typer.Option(
            "--late-interaction/--no-late-interaction",
            help="frozen student: also match each query word-piece to its best passage token (MiniLM's own token "
            "vectors, same forward pass) [default: on]",
            show_default=False,
        ),
    ] = None,
    query_context: Annotated[
        bool,
        typer.Option(
            help="frozen student: also read where each pair's scores stand among its query's other pairs in the same "
            "file (a pool, BM25's top k) and how like the query's best other passages it is; labels then depend on "
            "the pairs labeled together (a query with fewer than 5 pairs is graded without them; see README)"
        ),
    ] = False,
) -> None:
    """Train the student on the teacher's grades (or several teachers' as an ensemble) and save it as a folder.

    A cross-encoder or causal run is resumable: rerun the same command after a crash and it continues from its last
    checkpoint (``<output>.ckpt/``)."""
    from .pipeline import distill_file

    _at_least(1, max_length=max_length, batch_size=batch_size, time_budget=time_budget)
    _at_least(10, max_pairs=max_pairs)
    _at_least(1, pretrain_max_queries=pretrain_max_queries)
    _at_least(0.01, epochs=epochs)
    _at_least(1e-7, learning_rate=learning_rate)
    _at_least(0, fine_tune_epochs=fine_tune_epochs)
    if not 0 <= stack_held_out < 1:
        raise QrelkitError(f"--stack-held-out must be in [0, 1), got {stack_held_out:g}")
    _show(
        distill_file(
            pairs,
            teacher,
            output,
            head=head,
            label_smoothing=label_smoothing,
            base=base,
            max_length=max_length,
            seed=seed,
            student=student,
            loss=loss,
            epochs=epochs,
            max_pairs=max_pairs,
            batch_size=batch_size,
            time_budget_s=time_budget,
            fine_tune_epochs=fine_tune_epochs,
            learning_rate=learning_rate,
            duplicates="last" if allow_duplicates else "error",
            pretrain_queries=pretrain_queries,
            corpus=corpus,
            pretrain_max_queries=pretrain_max_queries,
            stack_held_out=stack_held_out,
            late_interaction=late_interaction,
            query_context=query_context,
        )
    )


@app.command()
def label(
    pairs: Annotated[Path, typer.Argument(help="pairs to label: Parquet or JSONL with qid, query, doc_id, text")],
    model: Annotated[Path, typer.Option("-m", "--model", help="student folder from distill")],
    output: Annotated[Path, typer.Option("-o", "--output", help=".qrels, .jsonl or .parquet")] = Path("labels.qrels"),
    runtime: Annotated[
        str, typer.Option(help="torch, onnx, onnx-int8, onnx-int8-mixed or onnx-int8-checked (after `qrelkit export`)")
    ] = "torch",
    chunk: Annotated[int, typer.Option(help="pairs per checkpoint (local engine; Ray: 1,024 a call)")] = 4096,
    batch_size: Annotated[int, typer.Option(help="pairs per model call")] = 64,
    engine: Annotated[str, typer.Option(help="local (streaming, resumable) or ray")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (engine ray); default: local")] = None,
    actors: Annotated[int, typer.Option(help="student actors (engine ray)")] = 2,
    device: Annotated[
        str, typer.Option(help="auto (the GPU when torch sees one, for --runtime torch), cpu, cuda or cuda:N")
    ] = "auto",
) -> None:
    """Grade any query–document pairs with a student: streamed, checkpointed, resumable after a kill.

    A --query-context student grades each query's pairs together: from a file where they are apart it labels a copy
    grouped by query (OUTPUT.grouped.parquet, removed when done), and its labels come out query by query."""
    from .pipeline import label_file

    _at_least(1, chunk=chunk, batch_size=batch_size, actors=actors)

    _show(
        label_file(
            pairs,
            model,
            output,
            runtime=runtime,
            chunk=chunk,
            batch_size=batch_size,
            engine=engine,
            ray_address=ray_address,
            actors=actors,
            device=device,
        )
    )


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="student folder from distill")],
    quantize: Annotated[bool, typer.Option(help="also write the int8 model")] = True,
) -> None:
    """Export a student: frozen or cross-encoder to ONNX (fp32, int8) for `label --runtime onnx*`; causal to a
    merged transformers folder (`<model>/merged`) that `label` reads and `vllm serve` serves."""
    from .students import export_student
    from .students.onnx import INT8_MIN_CORRELATION, dropped_runtimes

    shown = {k: str(v) for k, v in export_student(model, quantize=quantize).items()}
    for runtime, r in dropped_runtimes(model).items():
        shown[runtime] = f"dropped: its scores correlate with fp32's at r {r} < {INT8_MIN_CORRELATION}"
    _show(shown)


@app.command()
def evaluate(
    labels: Annotated[Path, typer.Argument(help="qrels of the labeler to evaluate")],
    human: Annotated[Path, typer.Option("--human", help="human TREC qrels")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="also write the metrics to this JSON file")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="query resamples for 95% intervals (0: none)")] = 1000,
    versus: Annotated[
        Path | None, typer.Option(help="a second labeler's qrels (e.g. the teacher): paired difference labels − it")
    ] = None,
    allow_duplicates: Duplicates = False,
    runs: Runs = None,
    measure: Measure = "nDCG@10",
) -> None:
    """Agreement of labels with human grades, with bootstrap intervals over queries."""
    from .evaluate import format_confusion, format_intervals, format_table, write_metrics
    from .pipeline import evaluate_file
    from .system_ranking import format_system_ranking

    dup = "last" if allow_duplicates else "error"
    metrics = evaluate_file(
        labels, human, None, bootstrap=bootstrap, versus=versus, duplicates=dup, runs=runs, measure=measure
    )
    out.print(format_table({str(labels): metrics}))
    if "ci" in metrics:
        out.print(format_intervals({str(labels): metrics["ci"]}))
    out.print(format_confusion(metrics["confusion"]))
    if versus is not None:
        cmp = metrics["versus"]
        names = {"labels": str(labels), "reference": str(versus), "labels - reference": "difference"}
        out.print(f"paired on {cmp['n']} pairs of {cmp['queries']} queries, 95% intervals over queries:")
        out.print(
            format_intervals(
                {names[k]: v for k, v in cmp["ci"].items()}, {names[k]: v for k, v in cmp["point"].items()}
            )
        )
    if "system_ranking" in metrics:
        out.print(format_system_ranking(metrics["system_ranking"], {"labels": str(labels), "reference": str(versus)}))
    if output is not None:
        write_metrics(output, metrics)


@app.command()
def leaderboard(
    runs: Annotated[list[Path], typer.Argument(help="TREC run files, or folders of them")],
    qrels: Annotated[Path, typer.Option(help="the grades to score them with: a student's labels, or human qrels")],
    measure: Annotated[
        list[str] | None, typer.Option(help="ir_measures name (repeatable; default nDCG@10); the first sorts")
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="also write the scores to this JSON")] = None,
    bootstrap: Annotated[
        int, typer.Option(help="query resamples for the first measure's 95% intervals and gaps to the best (0: none)")
    ] = 1000,
    allow_duplicates: Duplicates = False,
) -> None:
    """Score retrieval runs with a set of labels: each measure's mean over the graded queries, and Judged@10; the
    first measure with its 95% interval and each run's paired gap to the best run."""
    from .io import atomic_write_text, read_qrels, read_runs
    from .system_ranking import DEFAULT_MEASURE
    from .system_ranking import leaderboard as score_runs
    from .tables import markdown_table

    measures = measure or [DEFAULT_MEASURE]
    grades = read_qrels(qrels, duplicates="last" if allow_duplicates else "error")
    board = score_runs(read_runs(runs), grades, measures, bootstrap=bootstrap)
    columns = [c for c in next(iter(board.values())) if c != "bootstrap"]
    ranked = sorted(board, key=lambda run: -board[run][columns[0]])

    def row(run: str) -> list[str]:
        cells = [f"{board[run][c]:.4f}" for c in columns]
        if bootstrap:
            s = board[run]["bootstrap"]
            cells[0] += f" [{s['interval'][0]:.4f}, {s['interval'][1]:.4f}]"
            gap = s["minus_best_interval"]
            cells.insert(1, f"{s['minus_best']:+.4f} [{gap[0]:+.4f}, {gap[1]:+.4f}]")
        return [run, *cells]

    header = ["run", columns[0], *(["− best run"] if bootstrap else []), *columns[1:]]
    out.print(markdown_table(header, [row(r) for r in ranked]))
    if output is not None:
        atomic_write_text(output, json.dumps(board, indent=1) + "\n")


@app.command()
def report(
    labels: Annotated[list[str], typer.Argument(help="qrels files of the labelers, each PATH or NAME=PATH")],
    human: Annotated[Path, typer.Option("--human", help="human TREC qrels")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for report.html, report.md, plots")] = Path(
        "report"
    ),
    reference: Annotated[
        str | None, typer.Option(help="labeler (NAME) the others are compared with, e.g. the teacher")
    ] = None,
    queries: Annotated[Path | None, typer.Option(help="queries file (qid, text) to name queries in the report")] = None,
    bootstrap: Annotated[int, typer.Option(help="query resamples for 95% intervals (0: none)")] = 1000,
    title: Annotated[str, typer.Option(help="report title")] = "qrelkit evaluation report",
    allow_duplicates: Duplicates = False,
    runs: Runs = None,
    measure: Measure = "nDCG@10",
) -> None:
    """Several labelers vs human grades: report.html (tables + plots), report.md, PNGs and per-query agreement."""
    from .evaluate import format_table
    from .io import read_qrels, read_queries, read_runs
    from .report import build_report, write_report
    from .system_ranking import compare_system_rankings

    dup = "last" if allow_duplicates else "error"
    named: dict[str, Any] = {}
    for item in labels:
        name, _, path = item.rpartition("=") if "=" in item else (Path(item).stem, "", item)
        if name in named:
            raise QrelkitError(f"two labelers are called {name!r}; name them NAME=PATH")
        named[name] = read_qrels(path, duplicates=dup)
    texts = {str(q["qid"]): str(q["text"]) for q in read_queries(queries)} if queries else None
    truth = read_qrels(human, duplicates=dup)
    ranking = (
        compare_system_rankings(read_runs(runs), truth, named, measure=measure, bootstrap=bootstrap) if runs else None
    )
    rep = build_report(
        named, truth, reference=reference, queries=texts, bootstrap=bootstrap, title=title, system_ranking=ranking
    )
    paths = write_report(rep, output)
    out.print(format_table(rep["metrics"]))
    out.print(f"report: {paths['html']} (also {paths['markdown'].name}, {paths['json'].name}, plots, per_query.csv)")


@app.command()
def experiment(
    benchmark: Annotated[
        list[str] | None, typer.Option(help="benchmark folder name (repeatable); default: every known benchmark")
    ] = None,
    teacher: Annotated[str | None, typer.Option(help="label set students learn from (default: per benchmark)")] = None,
    folds: Annotated[
        int | None, typer.Option(help="folds by query over the test queries (default: 5; 2 with --cross)")
    ] = None,
    cross: Annotated[
        bool,
        typer.Option(
            "--cross", help="fine-tuned students trained across all benchmarks' open queries but the graded fold"
        ),
    ] = False,
    student: Annotated[list[str] | None, typer.Option(help="student variant (repeatable); default: all")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="results folder")] = Path("benchmarks/results"),
    bootstrap: Annotated[int, typer.Option(help="query resamples for 95% intervals")] = 1000,
    build_synthetic: Annotated[
        bool, typer.Option("--build-synthetic", help="first (re)build OUTPUT/<benchmark>/synthetic with --llm")
    ] = False,
    llm: Llm = DEFAULT_LLM,
    synthetic_seeds: Annotated[int, typer.Option(help="seed passages for --build-synthetic")] = 50,
    synthetic_from: Annotated[
        Path | None, typer.Option(help="results folder holding <benchmark>/synthetic (default: OUTPUT)")
    ] = None,
    data: DataDir = None,
    max_queries: Annotated[
        int | None, typer.Option(help="--cross: first N open and N held-out queries per benchmark (smoke runs)")
    ] = None,
    max_pairs_per_query: Annotated[
        int | None, typer.Option(help="--cross with --max-queries: first N pairs of each query")
    ] = None,
    device: Annotated[str | None, typer.Option(help="--cross: torch device (default: cuda when present)")] = None,
    stack: Annotated[
        bool, typer.Option(help="--cross: also the frozen tier and stacked students (frozen features: an hour on CPU)")
    ] = True,
) -> None:
    """Teacher vs distilled students on human-labelled benchmarks (query-disjoint k-fold): qrels per student for
    every test pair, report.html/report.md, experiment.json and headline.md under OUTPUT/<benchmark>/.

    Students named *-synthetic / *-both also train on OUTPUT/<benchmark>/synthetic: LLM-written queries over the
    benchmark's passages with BM25 near misses, graded by the same LLM (--build-synthetic makes it; cached).

    --cross: fine-tuned students (cross-encoder, fine-tuned bi-encoder) trained on the teacher's labels of the
    open queries of all benchmarks but the graded fold; per-benchmark reports under OUTPUT/<benchmark>/cross/ and
    the mean over collections in OUTPUT/cross-collection.md. Hours on a CPU; finished folds are kept."""
    from .benchmarks import BENCHMARKS, benchmark_dir
    from .experiment import build_synthetic as build
    from .experiment import format_headline, run_experiment, student_variants
    from .models import CACHE_DIR

    names = benchmark or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise QrelkitError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    _at_least(1, max_queries=max_queries, max_pairs_per_query=max_pairs_per_query)
    if cross:
        from .crossfold import cross_recipes, run_cross_collection

        run_cross_collection(
            names,
            students=cross_recipes(student),
            folds=folds or 2,
            out_dir=output,
            bootstrap=bootstrap,
            data_root=data,
            stack=stack,
            max_queries=max_queries,
            max_pairs_per_query=max_pairs_per_query,
            device=device,
        )
        out.print((output / "cross-collection.md").read_text())
        return
    variants = student_variants(student)
    for name in names:
        synthetic = (synthetic_from or output) / name / "synthetic"
        if build_synthetic:
            cache = CACHE_DIR / f"synthetic-{name}.sqlite"
            _show(
                build(
                    name, synthetic, llm=llm, n_seeds=synthetic_seeds, cache=cache, data_root=benchmark_dir(name, data)
                )
            )
        summary = run_experiment(
            name,
            out_dir=output,
            folds=folds or 5,
            students=variants,
            bootstrap=bootstrap,
            teacher=teacher,
            synthetic=synthetic,
            data_root=benchmark_dir(name, data),
        )
        out.print(summary["table"])
        out.print(format_headline(summary))
        out.print(f"report: {summary['report']}")


@app.command()
def bench(
    pairs: Annotated[int, typer.Option(help="benchmark pairs every student runtime labels")] = 2000,
    teacher: Annotated[str, typer.Option(help="local teacher (gguf:/hf: or an alias)")] = DEFAULT_LLM,
    teacher_pairs: Annotated[int, typer.Option(help="how many of the pairs the local teacher grades")] = 100,
    endpoint: Annotated[
        str | None, typer.Option(help="also time an API teacher: openai:MODEL or http://HOST:PORT/v1#MODEL")
    ] = None,
    student: Annotated[
        Path | None, typer.Option(help="student folder with ONNX exports (default: distil one from GPT-4o labels)")
    ] = None,
    runtime: Annotated[
        list[str] | None,
        typer.Option(help="student runtimes (default: torch and every ONNX one)"),
    ] = None,
    batch_pairs: Annotated[int, typer.Option(help="pairs per student call (the latency unit)")] = 500,
    repeats: Annotated[
        int, typer.Option(min=1, help="passes per student runtime, timed by the fastest (a shared machine is noisy)")
    ] = 1,
    usd_per_hour: Annotated[float, typer.Option(help="price of this machine, for $/1k pairs")] = 0.10,
    benchmark: Annotated[Path | None, typer.Option(help="benchmark folder (default: ../shared/benchmarks/…)")] = None,
    data: DataDir = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="results folder")] = Path("benchmarks/results"),
    on_device: Annotated[
        list[Path] | None,
        typer.Option(help="device section instead: these student folders (any kind) on --device (repeatable)"),
    ] = None,
    device: Annotated[str, typer.Option(help="torch device of the device section (cuda, cuda:1, cpu)")] = "cuda",
) -> None:
    """Teacher vs student (PyTorch, ONNX, ONNX int8) on the same pairs: pairs/s, latency, RSS, $, efficiency.

    With --on-device: students of every kind (frozen, cross-encoder, causal) on one GPU, the same pairs for all;
    written to OUTPUT/bench-device.json and .md."""
    from .bench import (
        STUDENT_RUNTIMES,
        bench_on_device,
        format_device_section,
        format_markdown,
        run_bench,
        short_names,
        write_bench,
    )
    from .benchmarks import bench_pairs, benchmark_dir

    if on_device:
        from .io import atomic_write_text

        sample, _ = bench_pairs(benchmark or benchmark_dir(data=data), pairs)
        section = bench_on_device(short_names(on_device), sample, device=device, batch_pairs=batch_pairs)
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output / "bench-device.json", json.dumps(section, indent=1))
        atomic_write_text(output / "bench-device.md", format_device_section(section))
        out.print(format_device_section(section))
        return

    result = run_bench(
        pairs=pairs,
        teacher=teacher,
        teacher_pairs=teacher_pairs,
        endpoint=endpoint,
        student=student,
        runtimes=tuple(runtime or STUDENT_RUNTIMES),
        batch_pairs=batch_pairs,
        usd_per_hour=usd_per_hour,
        benchmark=benchmark or benchmark_dir(data=data),
        repeats=repeats,
    )
    paths = write_bench(result, output)
    out.print(format_markdown(result))
    out.print(f"written: {paths['json']} and {paths['markdown']}  ({result['seconds']:.0f} s)")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="pipeline.yaml")],
    force: Annotated[bool, typer.Option(help="rerun stages even if unchanged")] = False,
) -> None:
    """Run the stages of a pipeline file, skipping those whose inputs and config are unchanged."""
    from .pipeline import run_pipeline

    _show(run_pipeline(config, force=force))


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="folder for every artifact of the run")] = Path(
        "runs/demo"
    ),
    llm: Llm = DEFAULT_LLM,
    n_seeds: Annotated[int, typer.Option(help="documents the LLM writes queries from")] = 10,
    per_doc: Annotated[int, typer.Option(help="queries per seed document")] = 3,
    k: Annotated[int, typer.Option("--k", help="BM25 near misses per query")] = 2,
    eval_per_query: Annotated[
        int, typer.Option(help="act 1: human-graded pairs of each of the 25 test queries the teacher grades")
    ] = 4,
    force: Annotated[bool, typer.Option(help="rerun every stage, even unchanged ones")] = False,
) -> None:
    """Two acts: the full offline pipeline on an embedded TREC DL 2023 sample (teacher and student compared
    with humans), then a student taught by recorded GPT-4o grades of TREC DL 2020 queries, tested on unseen ones."""
    from .demo import run_demo

    _at_least(1, n_seeds=n_seeds, per_doc=per_doc, k=k, eval_per_query=eval_per_query)
    result = run_demo(
        run_dir, llm=llm, n_seeds=n_seeds, per_doc=per_doc, k=k, eval_per_query=eval_per_query, force=force
    )
    out.print("Act 1: the offline pipeline (TREC DL 2023 sample)")
    out.print(result["table"])
    out.print(f"student/teacher throughput: {result['speedup']:.0f}×")
    out.print("\nAct 2: a student taught by GPT-4o, tested on TREC DL 2020 queries it never saw")
    out.print(result["table2"])
    out.print("")
    for line in result["summary"]:
        out.print(line)
    out.print(f"report: {result['report']}")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"qrelkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="also show third-party logs and bars")] = False,
) -> None:
    """Distil an LLM relevance judge into a fast student labeler."""
    if verbose:
        for name in NOISY:
            logging.getLogger(name).setLevel(logging.INFO)
        os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)


# third-party loggers quiet unless -v (model-loading bars and reports, HTTP lines, ONNX quantisation notes)
NOISY = ("httpx", "httpx2", "openai", "sentence_transformers", "transformers", "bm25s", "datasets", "onnxruntime")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=err, show_path=False)])
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        app()
    except QrelkitError as e:
        # Plain text (no markup: "[field]" is part of the message), never wrapped: one line per error.
        err.print(Text("error: ", style="bold red") + Text(str(e)), soft_wrap=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print(
            "interrupted: finished work is kept (LLM cache, label checkpoint, training checkpoint); "
            "run the same command again to resume",
            soft_wrap=True,
        )
        sys.exit(130)
