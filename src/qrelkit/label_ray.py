"""Label pairs on a Ray cluster: Ray Data reads the pairs, a pool of student actors scores them.

The scoring function is the one the local engine uses (:meth:`Student.predict`), so both engines give the
same labels; with an int8 runtime, scores move a little with the pairs that share a batch, which the two engines
fill differently (activation scales are per batch), and a few grades with them. Without ``address`` Ray starts
on this machine; with ``address="auto"`` (or ``ray://HOST:10001``) it joins a running cluster (``ray start
--head`` on one node, ``ray start --address=HEAD:6379`` on the others).
The student folder must be readable at the same path on every node (a shared file system or a copy).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QrelkitError
from .io import require_file
from .progress import progress_enabled
from .students.onnx import CHECKED_RUNTIME


class StudentScorer:
    """A Ray Data actor: loads the student once, then grades batches of pairs."""

    def __init__(self, model: str, runtime: str, batch_size: int, threads: int):
        from .students import load_student

        # Ray gives fractional CPUs; each actor uses its share of whole cores, in torch and in ONNX Runtime (whose
        # sessions read QRELKIT_THREADS; left to themselves, every actor's session would take all the node's cores)
        if runtime == "torch":  # an ONNX actor never imports torch (~220 MB an actor)
            import torch

            torch.set_num_threads(threads)
        os.environ["QRELKIT_THREADS"] = str(threads)
        self.student = load_student(model, runtime=runtime)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .students.checked import CheckedLabeler

        scores, grades = self.student.predict(
            [str(q) for q in batch["query"]], [str(t) for t in batch["text"]], batch_size=self.batch_size
        )
        out = {
            "qid": np.array([str(q) for q in batch["qid"]]),
            "doc_id": np.array([str(d) for d in batch["doc_id"]]),
            "score": np.asarray(scores, dtype=np.float64),
            "grade": np.asarray(grades, dtype=np.int64),
        }
        if isinstance(self.student, CheckedLabeler):  # which pairs the checked runtime graded again in fp32
            out["rescored"] = np.zeros(len(scores), dtype=bool)
            out["rescored"][self.student.last_rescored] = True
        return out


def label_file_ray(
    pairs: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    runtime: str = "torch",
    batch_size: int = 64,
    address: str | None = None,
    actors: int = 2,
    rows_per_task: int = 1024,
) -> dict[str, Any]:
    """Label a pairs file with ``actors`` student actors under Ray Data; output as :func:`label_file_stream`.
    Each actor grades ``rows_per_task`` pairs a call: small enough that the last calls of a run keep every actor
    busy (on 6,000 pairs, 2 actors of 1 core: 4,096 left one actor grading alone for most of the run). A student
    that reads query context (``--query-context``) grades one whole query a call instead: Ray groups the pairs by
    query (a shuffle), so its rows come out query by query, in query id order, not in the file's order."""
    try:
        import ray
    except ImportError:
        raise QrelkitError("the ray engine needs Ray: pip install 'qrelkit[ray]'") from None
    from .label import check_label_output, write_labels_stream
    from .students import student_kind
    from .students.encoder import saved_with_query_context

    src, out = require_file(pairs), Path(out)
    check_label_output(out)
    model = Path(model).resolve()
    whole_queries = student_kind(model) == "frozen" and saved_with_query_context(model)
    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        # at least 2 CPUs for Ray's scheduler: the actors leave one unclaimed for the reads (below)
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": max(2, os.cpu_count() or 1)}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = not whole_queries  # in input order, like the local engine
        ctx.enable_progress_bars = progress_enabled()
        if src.suffix.lower() == ".parquet":
            # columns= (deprecated, kept in 2.60) prunes inside the read; select_columns would add a task asking
            # for a whole CPU
            ds = ray.data.read_parquet(str(src.resolve()), columns=["qid", "query", "doc_id", "text"], num_cpus=0.05)
        elif src.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            # No select_columns: a projection is one more task wanting a whole CPU; the scorer picks its columns.
            ds = ray.data.read_json(str(src.resolve()), lines=True, num_cpus=0.05)
        else:
            raise QrelkitError(f"{src}: pairs must be .parquet or .jsonl")
        # Actors must not claim every CPU the scheduler sees, or the reads never run: a Parquet read first lists
        # its files in a task that asks Ray for one whole CPU (Ray Data 2.60 offers no way to ask for less), so the
        # actors leave one CPU unclaimed. Their threads still take their share of the cores.
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        if cpus < 2 and src.suffix.lower() == ".parquet":
            raise QrelkitError(
                f"this Ray cluster has {cpus:g} CPU: a Parquet read needs one whole CPU beside the student actors, "
                "so the run would wait forever; give Ray at least 2 CPUs, label a JSONL copy, or use --engine local"
            )
        per_actor = max(0.05, (cpus - 1.0) / actors)
        t0 = time.perf_counter()
        scorer_args = (str(model), runtime, batch_size, max(1, int(cpus / actors)))
        if whole_queries:  # Ray Data splits a file anywhere; a query-context student needs each query in one call
            labelled = ds.groupby("qid").map_groups(
                StudentScorer,
                fn_constructor_args=scorer_args,
                batch_format="numpy",
                concurrency=actors,
                num_cpus=per_actor,
            )
        else:
            labelled = ds.map_batches(
                StudentScorer,
                fn_constructor_args=scorer_args,
                batch_size=rows_per_task,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=per_actor,
            )
        rescored: list[int] = []

        def batches() -> Iterator[dict[str, np.ndarray]]:
            for b in labelled.iter_batches(batch_size=rows_per_task, batch_format="numpy"):
                if "rescored" in b:
                    rescored.append(int(b["rescored"].sum()))
                yield b

        n = write_labels_stream(out, batches())
        secs = time.perf_counter() - t0
    finally:
        if started_here:
            ray.shutdown()
    stats = {"pairs": n, "seconds": round(secs, 3), "pairs_per_s": n / secs if secs else None, "engine": "ray"}
    if runtime == CHECKED_RUNTIME:  # as the local engine says it
        stats["rescored_in_fp32"] = sum(rescored)
    return stats
