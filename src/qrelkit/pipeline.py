"""File-level stage functions (what the CLI calls) and the ``qrelkit run pipeline.yaml`` runner.

Each stage reads files and writes files; the runner records a hash of each stage's inputs and config
in ``manifest.json`` and skips a stage whose inputs, config and outputs are unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import platform
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ._version import __version__
from .distill import distill
from .errors import InputError, QrelkitError
from .evaluate import compare_qrels, evaluate_qrels, write_metrics
from .io import (
    read_corpus,
    read_documents,
    read_pairs,
    read_qrels,
    read_queries,
    read_runs,
    sidecar,
    split_documents,
    write_documents,
    write_jsonl,
    write_pairs,
)
from .judge import Judge, estimate, write_judgments
from .label import label_file_stream
from .llm import DEFAULT_LLM, LLM
from .mine import mine_pairs
from .models import MINILM_ALIAS
from .pool import pool_pairs
from .pricing import cost_usd, load_prices, missing_price
from .records import Query
from .students import STUDENT_KINDS
from .students.encoder import Student
from .students.targets import load_teacher, teacher_targets
from .synth import normalize_query, require_queries, synthesize
from .system_ranking import DEFAULT_MEASURE, compare_system_rankings

log = logging.getLogger("qrelkit")


# ------------------------------------------------------------------ stages on files


def ingest_file(
    corpus: str | Path,
    out: str | Path,
    *,
    id_field: str | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
    skip_bad: bool = False,
    passage_words: int | None = None,
    passage_overlap: int = 0,
) -> dict[str, Any]:
    """Read a corpus into ``out`` (documents.parquet); with ``passage_words``, documents longer than that are cut
    into overlapping passages (:func:`qrelkit.io.split_documents`), the units every later stage grades."""
    docs = read_corpus(corpus, id_field=id_field, text_field=text_field, title_field=title_field, skip_bad=skip_bad)
    if passage_words is None:
        write_documents(out, docs)
        return {"documents": len(docs)}
    passages = split_documents(docs, passage_words, passage_overlap)
    write_documents(out, passages)
    kept = {p.doc_id for p in passages}
    return {"documents": len(docs), "split": sum(d.doc_id not in kept for d in docs), "passages": len(passages)}


def default_cache(out: str | Path, cache: str | Path | None, no_cache: bool) -> Path | None:
    """The LLM cache of a stage writing ``out``: ``cache`` if given, else ``<stem>.cache.sqlite`` beside ``out``."""
    if no_cache:
        return None
    if cache is not None:
        return Path(cache)
    p = Path(out)
    return p.with_name(f"{p.stem}.cache.sqlite")


def synth_file(
    docs: str | Path,
    out: str | Path,
    *,
    llm: str | LLM = DEFAULT_LLM,
    n_seeds: int = 50,
    per_doc: int = 3,
    seed: int = 0,
    cache: str | Path | None = None,
    prompt: str = "synth-queries",
    no_cache: bool = False,
    exclude: str | Path | None = None,
    batch_size: int = 16,
    concurrency: int = 4,
) -> dict[str, Any]:
    """Write synthetic queries; LLM answers are cached beside ``out`` (``<stem>.cache.sqlite``) unless ``cache``
    names another file or ``no_cache``, so an interrupted run resumes where it stopped. ``exclude``: a queries
    file (JSONL with ``text``) whose queries are never written, e.g. an evaluation set's (case and spacing aside).
    ``batch_size``: prompts per batched generation (transformers backend); ``concurrency``: requests in flight
    (HTTP backends)."""
    cache = default_cache(out, cache, no_cache)
    queries, stats = synthesize(
        read_documents(docs),
        llm,
        n_seeds=n_seeds,
        per_doc=per_doc,
        seed=seed,
        cache=cache,
        prompt=prompt,
        batch_size=batch_size,
        concurrency=concurrency,
    )
    if exclude:
        banned = {normalize_query(r["text"]) for r in read_queries(exclude)}
        kept = [q for q in queries if normalize_query(q.text) not in banned]
        stats["excluded"] = len(queries) - len(kept)
        queries = kept
    require_queries(queries, stats)
    write_jsonl(out, (q.model_dump() for q in queries))
    return {**stats, "queries": len(queries)}


def mine_file(
    queries: str | Path, docs: str | Path, out: str | Path, *, k: int = 20, n_random: int = 2, seed: int = 0
) -> dict[str, Any]:
    qs = [
        Query.model_validate({f: r[f] for f in Query.model_fields if r.get(f) is not None})
        for r in read_queries(queries)
    ]
    pairs, stats = mine_pairs(qs, read_documents(docs), k=k, n_random=n_random, seed=seed)
    write_pairs(out, pairs)
    return stats


def pool_file(
    runs: Sequence[str | Path], queries: str | Path, docs: str | Path, out: str | Path, *, depth: int = 10
) -> dict[str, Any]:
    """Pool TREC runs (files or folders) to ``depth`` into ``out`` (pairs.parquet) for ``label``; query texts
    from ``queries`` (JSONL or ``qid<TAB>text``), document texts from ``docs`` (documents.parquet)."""
    texts = {str(r["qid"]): str(r["text"]) for r in read_queries(queries)}
    documents = {d.doc_id: d for d in read_documents(docs)}
    pairs, stats = pool_pairs(read_runs(runs), texts, documents, depth=depth)
    write_pairs(out, pairs)
    return stats


def judge_file(
    pairs: str | Path,
    out: str | Path,
    *,
    llm: str | LLM = DEFAULT_LLM,
    cache: str | Path | None = None,
    prompt: str = "judge-rubric",
    max_chars: int = 1200,
    concurrency: int = 4,
    batch_size: int | None = None,
    prices: str | Path | None = None,
    dry_run: bool = False,
    rpm: float | None = None,
    tpm: float | None = None,
    no_cache: bool = False,
) -> dict[str, Any]:
    """Grade pairs; writes ``out`` (qrels), ``<stem>.judgments.jsonl`` and ``<stem>.run.json`` (stats, tokens, cost).

    Every answer is cached beside ``out`` (``<stem>.cache.sqlite``) unless ``cache`` names another file or
    ``no_cache``: a run killed at any point and started again with the same command repeats no finished call.

    ``concurrency``: requests in flight (HTTP backends); ``batch_size``: pairs per forward pass (transformers
    backend; default 32 on a GPU, 1 on CPU).

    ``dry_run`` estimates tokens and cost (about 4 characters a token) without loading or calling the model.
    """
    out = Path(out)
    table = load_prices(prices)
    prs = read_pairs(pairs)
    if dry_run:
        return estimate(
            prs, llm if isinstance(llm, str) else llm.spec, prompt=prompt, max_chars=max_chars, prices=table
        )
    judge = Judge(
        llm,
        prompt=prompt,
        cache=default_cache(out, cache, no_cache),
        max_chars=max_chars,
        concurrency=concurrency,
        batch_size=batch_size,
        rpm=rpm,
        tpm=tpm,
        prices=table,
    )
    judgments = judge.judge(prs)
    stats = write_judgments(judgments, out)
    stats["pairs_per_s"] = stats["graded"] / stats["model_seconds"] if stats["model_seconds"] else None
    # Only calls actually made this run are paid; cache hits cost nothing.
    stats.update(
        {
            "llm": judge.llm.spec,
            "prompt": judge.prompt.ref,
            "cost_usd": cost_usd(judge.llm.spec, stats["tokens_in"], stats["tokens_out"], table),
        }
    )
    if hint := missing_price(judge.llm.spec, table):
        stats["price_note"] = hint
    sidecar(out, "run.json").write_text(json.dumps(stats, indent=1, default=str))
    return stats


def distill_file(
    pairs: str | Path,
    teacher: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    head: str = "spline",
    label_smoothing: float = 0.0,
    base: str = "all-MiniLM-L6-v2",
    max_length: int = 256,
    seed: int = 0,
    judgments: str | Path | None = None,
    student: str = "frozen",
    loss: str = "bce",
    epochs: float = 1.0,
    max_pairs: int | None = None,
    batch_size: int = 16,
    learning_rate: float | None = None,
    time_budget_s: float | None = None,
    fine_tune_epochs: float = 0.0,
    duplicates: str = "error",
    pretrain_queries: str | Path | None = None,
    corpus: str | Path | None = None,
    pretrain_max_queries: int | None = None,
    stack_held_out: float = 0.0,
    late_interaction: bool | None = None,
    query_context: bool = False,
) -> dict[str, Any]:
    """Train a student on one teacher's qrels (its ``judgments.jsonl``, when beside it, adds soft labels),
    or on several teachers' qrels as an ensemble (mean grade, share of judges per grade).

    ``student``: ``frozen`` (MiniLM features + ``head``; seconds on a CPU; with ``fine_tune_epochs`` > 0 its
    encoder is first fine-tuned on the teacher's grades, CoSENT), ``cross-encoder`` (fine-tuned with ``loss``,
    ``epochs``, ``max_pairs``...) or ``causal`` (a small causal LM with LoRA; ``base`` ``gguf:ALIAS|PATH`` or an
    HF name, default SmolLM2-135M; ``max_length`` caps passage tokens; a GPU when present). Fine-tuning resumes
    from ``<out>.ckpt/`` after a crash.

    ``pretrain_queries`` (cross-encoder): a ``queries.jsonl`` of synthetic queries with their ``seed_doc_id`` (what
    ``qrelkit synth`` writes) over the documents of ``corpus``, for a first stage of training (the seed passage
    relevant, BM25 neighbours not); ``pretrain_max_queries`` keeps a random sample of them. ``stack_held_out``
    (cross-encoder): that share of the queries is kept out of training and the student is stacked on their pairs
    with the frozen MiniLM's features (:meth:`qrelkit.students.cross_encoder.CrossEncoderStudent.stack`).
    ``late_interaction`` (frozen; default on): the head also reads :data:`qrelkit.students.encoder.LATE_FEATURES`;
    ``query_context`` (frozen): and each pair's standing among its query's pairs (:func:`~qrelkit.distill.distill`)."""
    if student not in STUDENT_KINDS:
        raise QrelkitError(f"unknown student {student!r}; choose {', '.join(STUDENT_KINDS)}")
    if (pretrain_queries or corpus) and student != "cross-encoder":
        raise QrelkitError("--pretrain-queries and --corpus train the cross-encoder student (--student cross-encoder)")
    if stack_held_out and student != "cross-encoder":
        raise QrelkitError("--stack-held-out stacks the cross-encoder student (--student cross-encoder)")
    if late_interaction is not None and student != "frozen":
        raise QrelkitError("--late-interaction adds features to the frozen student's head (--student frozen)")
    if query_context and student != "frozen":
        raise QrelkitError("--query-context adds features to the frozen student's head (--student frozen)")
    late = late_interaction is not False
    if bool(pretrain_queries) != bool(corpus):
        raise QrelkitError("--pretrain-queries needs --corpus (the documents their seed_doc_id point to), and back")
    synthetic = _seeded_queries(pretrain_queries, pretrain_max_queries, seed) if pretrain_queries else None
    taught = load_teacher(teacher, judgments=judgments, duplicates=duplicates)
    grades, soft, dist, card = taught.grades, taught.soft, taught.distribution, taught.card
    prs = read_pairs(pairs)
    ckpt = Path(str(out) + ".ckpt")  # fine-tuning checkpoints: a rerun resumes; gone once the student is saved
    if student in ("cross-encoder", "causal"):
        shared: dict[str, Any] = {
            "epochs": epochs,
            "batch_size": batch_size,
            "max_pairs": max_pairs,
            "checkpoint_dir": ckpt,
            "time_budget_s": time_budget_s,
            "seed": seed,
            "card": card,
        }
        if student == "cross-encoder":
            from .students.cross_encoder import distill_cross_encoder

            docs = {d.doc_id: d.text for d in read_documents(corpus)} if corpus else None
            tuned: Any = distill_cross_encoder(
                prs, grades, soft=soft, base=base, loss=loss, learning_rate=learning_rate or 4e-5,
                max_length=max_length, pretrain_queries=synthetic, corpus=docs, stack_held_out=stack_held_out,
                **shared,
            )  # fmt: skip
        else:
            from .students.causal import DEFAULT_BASE, distill_causal

            tuned = distill_causal(
                prs, grades, distribution=dist, base=DEFAULT_BASE if base == MINILM_ALIAS else base,
                learning_rate=learning_rate or 2e-4, max_passage_tokens=max_length, **shared,
            )  # fmt: skip
        tuned.save(out)
        shutil.rmtree(ckpt, ignore_errors=True)
        keys = ("base", "train_pairs", "train_queries", "target", "training", "stage1", "stack")
        return {"student": student, **{k: tuned.card[k] for k in keys if k in tuned.card}}
    encoder = None
    if fine_tune_epochs > 0:
        from .students.bi_encoder import fine_tune_encoder

        labelled, hard, _ = teacher_targets(prs, grades)
        encoder = fine_tune_encoder(
            Student.from_base(base, max_length=max_length, late_interaction=late),
            labelled,
            hard.tolist(),
            epochs=fine_tune_epochs,
            batch_size=batch_size,
            checkpoint_dir=ckpt,
            seed=seed,
        )
    frozen = distill(
        prs,
        grades,
        student=encoder,
        soft=soft,
        distribution=dist,
        head=head,
        label_smoothing=label_smoothing,
        base=base,
        max_length=max_length,
        seed=seed,
        card=card,
        late_interaction=late,
        query_context=query_context,
    )
    frozen.save(out)
    shutil.rmtree(ckpt, ignore_errors=True)
    summary = ("head", "train_pairs", "train_queries", "target", "train_seconds", "fine_tuned", "query_context")
    return {k: frozen.card[k] for k in summary if k in frozen.card}


def _seeded_queries(path: str | Path, limit: int | None, seed: int) -> list[tuple[str, str, str]]:
    """(qid, text, seed doc id) of the synthetic queries in ``path``, at most ``limit`` (a random sample)."""
    rows = read_queries(path)
    unseeded = [r["qid"] for r in rows if not r.get("seed_doc_id")]
    if unseeded:
        raise QrelkitError(
            f"{path}: {len(unseeded)} queries have no seed_doc_id (e.g. {unseeded[0]!r}); pre-training needs the "
            "document each synthetic query was written from, as `qrelkit synth` records it"
        )
    if limit is not None and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return [(str(r["qid"]), str(r["text"]), str(r["seed_doc_id"])) for r in rows]


def label_file(
    pairs: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    runtime: str = "torch",
    chunk: int = 4096,
    batch_size: int = 64,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int = 2,
    device: str = "auto",
) -> dict[str, Any]:
    """Label pairs with a student, streamed and resumable (``engine="local"``) or with Ray Data (``"ray"``).
    ``device``: ``auto`` labels on the GPU when torch sees one and the runtime is torch, else on CPU; Ray's
    actors label on CPU."""
    from .students import labeling_device

    if engine == "ray":
        from .label_ray import label_file_ray

        if device not in ("auto", "cpu"):
            raise QrelkitError(f"--engine ray labels on CPU (its actors ask for CPUs), not --device {device}")
        return label_file_ray(
            pairs, model, out, runtime=runtime, batch_size=batch_size, address=ray_address, actors=actors
        )
    if engine != "local":
        raise QrelkitError(f"unknown engine {engine!r}; choose local or ray")
    where = labeling_device(device, runtime)
    return label_file_stream(pairs, model, out, runtime=runtime, chunk=chunk, batch_size=batch_size, device=where)


def evaluate_file(
    labels: str | Path,
    human: str | Path,
    out: str | Path | None = None,
    *,
    bootstrap: int = 0,
    versus: str | Path | None = None,
    duplicates: str = "error",
    runs: Sequence[str | Path] | None = None,
    measure: str = DEFAULT_MEASURE,
) -> dict[str, Any]:
    """Agreement of a labels qrels file with human qrels; ``bootstrap`` query resamples give 95% intervals;
    ``versus`` (a second labeler's qrels, say the teacher's) adds the paired difference labels − versus with
    its interval, under ``"versus"``. ``duplicates="last"``: a pair graded twice keeps its last grade (warned).
    ``runs`` (TREC run files or folders of them) adds, under ``"system_ranking"``, how the labels (and
    ``versus``) order those systems by ``measure`` against the human qrels (:mod:`qrelkit.system_ranking`)."""
    got, truth = read_qrels(labels, duplicates=duplicates), read_qrels(human, duplicates=duplicates)
    metrics = evaluate_qrels(got, truth, bootstrap=bootstrap)
    reference = read_qrels(versus, duplicates=duplicates) if versus is not None else None
    if reference is not None:
        cmp = compare_qrels(got, reference, truth, bootstrap=bootstrap or 1000)
        metrics["versus"] = {"reference": str(versus), **cmp}
    if runs:
        labelers = {"labels": got, **({"reference": reference} if reference is not None else {})}
        metrics["system_ranking"] = compare_system_rankings(
            read_runs(runs), truth, labelers, measure=measure, bootstrap=bootstrap
        )
    if out:
        write_metrics(out, metrics)
    return metrics


# ------------------------------------------------------------------ the runner

STAGES: dict[str, Callable[..., dict[str, Any]]] = {
    "ingest": ingest_file,
    "synth": synth_file,
    "mine": mine_file,
    "pool": pool_file,
    "judge": judge_file,
    "distill": distill_file,
    "label": label_file,
    "evaluate": evaluate_file,
}
# Arguments that name files: their content is hashed; "out" is what the stage writes.
FILE_ARGS = {"corpus", "docs", "queries", "pairs", "teacher", "model", "labels", "human", "judgments", "versus", "runs"}


def _hash_path(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def stage_fingerprint(name: str, args: dict[str, Any]) -> str:
    parts: dict[str, Any] = {"stage": name, "version": __version__}
    for k, v in sorted(args.items()):
        if k in FILE_ARGS and isinstance(v, list | tuple):  # several files (an ensemble of teachers)
            parts[k] = [_hash_path(Path(x)) if Path(x).exists() else x for x in v]
        else:
            parts[k] = _hash_path(Path(v)) if k in FILE_ARGS and v and Path(v).exists() else v
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# pipeline.yaml may use the CLI's option names where they differ from the function's
SETTING_ALIASES = {"random": "n_random"}
CONFIG_KEYS = ("run_dir", "llm", "cache", "stages")


def _load_config(config: str | Path | dict[str, Any]) -> tuple[dict[str, Any], Path]:
    if isinstance(config, dict):
        return config, Path.cwd()
    path = Path(config)
    if not path.exists():
        raise InputError(path, "no such pipeline file")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(path, f"not valid YAML{where}: {problem}") from None
    if not isinstance(cfg, dict):
        raise InputError(path, f"expected a mapping with keys {', '.join(CONFIG_KEYS)}")
    return cfg, path.parent


def plan_stages(cfg: dict[str, Any], run_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """Check a whole pipeline config (stage names, settings, required inputs) and return, per stage, its label,
    stage name and effective arguments (shared ``llm``/``cache`` applied, paths under ``run_dir``)."""
    unknown_top = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown_top:
        raise QrelkitError(
            f"pipeline config: unknown key(s) {', '.join(unknown_top)} (valid: {', '.join(CONFIG_KEYS)})"
        )
    if not isinstance(cfg.get("stages"), list) or not cfg["stages"]:
        raise QrelkitError(f"pipeline config needs a 'stages' list (stages: {', '.join(STAGES)})")
    shared = {k: cfg[k] for k in ("llm", "cache") if k in cfg}
    plan = []
    for entry in cfg["stages"]:
        ((label, spec),) = entry.items() if isinstance(entry, dict) else ((entry, {}),)
        spec = {SETTING_ALIASES.get(k, k): v for k, v in dict(spec or {}).items()}
        name = spec.pop("stage", label)
        if name not in STAGES:
            raise QrelkitError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
        signature = inspect.signature(STAGES[name])
        valid = list(signature.parameters)
        unknown = sorted(set(spec) - set(valid))
        if unknown:
            raise QrelkitError(f"stage {label!r}: unknown setting(s) {', '.join(unknown)} (valid: {', '.join(valid)})")
        args = {k: v for k, v in shared.items() if k in signature.parameters} | spec
        for k, v in list(args.items()):
            if (k in FILE_ARGS or k in ("out", "cache")) and isinstance(v, str):
                args[k] = str(run_dir / v) if not Path(v).is_absolute() else v
            elif k in FILE_ARGS and isinstance(v, list):
                args[k] = [str(run_dir / x) if not Path(x).is_absolute() else x for x in v]
        try:
            signature.bind(**args)
        except TypeError as e:
            raise QrelkitError(f"stage {label!r}: {e}") from None
        plan.append((label, name, args))
    return plan


def run_pipeline(config: str | Path | dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """Run the stages listed in a pipeline config in order, skipping unchanged ones.

    Paths in the config are relative to ``run_dir``. ``llm`` and ``cache`` at the top level apply to
    every stage that takes them.
    """
    cfg, base = _load_config(config)
    run_dir = (base / cfg.get("run_dir", "run")).resolve()
    plan = plan_stages(cfg, run_dir)  # every stage checked before any runs: a typo never costs an LLM stage
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"stages": {}}
    results: dict[str, Any] = {}
    for label, name, args in plan:
        fn = STAGES[name]
        signature = inspect.signature(fn)
        # Fingerprint the effective parameters, defaults included: a changed default must rerun the stage.
        bound = signature.bind(**args)
        bound.apply_defaults()
        fingerprint = stage_fingerprint(name, dict(bound.arguments))
        previous = manifest["stages"].get(label, {})
        out = Path(args["out"]) if args.get("out") else None
        if not force and previous.get("fingerprint") == fingerprint and (out is None or out.exists()):
            log.info("%s: unchanged, skipped", label)
            results[label] = {**previous.get("result", {}), "skipped": True}
            continue
        t0 = time.perf_counter()
        result = fn(**args)
        manifest["stages"][label] = {
            "fingerprint": fingerprint,
            "args": args,
            "result": result,
            "seconds": round(time.perf_counter() - t0, 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        manifest["environment"] = {
            "qrelkit": __version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
        manifest_path.write_text(json.dumps(manifest, indent=1, default=str))
        results[label] = result
    return {"run_dir": str(run_dir), "stages": results}
