"""Label query–document pairs with a distilled student: in memory, or streamed and resumable for millions.

Streaming (:func:`label_file_stream`) reads the pairs chunk by chunk, appends each chunk's labels to the
output, flushes them to disk, then records a checkpoint (pairs done, output bytes). A run killed at any point
and started again truncates the output to the last checkpoint and goes on from there: no pair is lost or
labelled twice. Memory stays bounded by the chunk size, whatever the file size.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import EmptyInput, QrelkitError
from .io import (
    atomic_write,
    atomic_write_text,
    count_pairs,
    group_pairs_by_query,
    iter_pair_chunks,
    pair_chunks,
    qrels_line,
    queries_together,
    require_file,
)
from .progress import progress_bar
from .records import Pair
from .students import Labeler, load_student, reads_query_context, student_fingerprint

LABEL_SCHEMA = pa.schema([("qid", pa.string()), ("doc_id", pa.string()), ("score", pa.float32()), ("grade", pa.int8())])


def label_pairs(
    pairs: Sequence[Pair], student: Labeler, *, chunk: int = 512, batch_size: int = 64, show_progress: bool = True
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Scores and grades for ``pairs``, in chunks (one progress step each); returns throughput stats too (and, for
    the ``onnx-int8-checked`` runtime, ``rescored_in_fp32``: how many pairs it graded again in fp32)."""
    scores, grades = np.zeros(len(pairs)), np.zeros(len(pairs), dtype=int)
    rescored_before = _rescored(student)
    whole_queries = reads_query_context(student)
    # such a student reads a query's pairs together: label them query by query, answer in the pairs' own order
    order = query_grouped_order([p.qid for p in pairs]) if whole_queries else np.arange(len(pairs))
    t0 = time.perf_counter()
    start = 0
    with progress_bar("label (student)", total=len(pairs), enabled=show_progress) as advance:
        for part in pair_chunks((pairs[int(i)] for i in order), chunk, whole_queries=whole_queries):
            s, g = student.predict_pairs(part, batch_size=batch_size)
            at = order[start : start + len(part)]
            scores[at], grades[at] = s, g
            start += len(part)
            advance(len(part))
    secs = time.perf_counter() - t0
    stats = {"pairs": len(pairs), "seconds": round(secs, 3), "pairs_per_s": len(pairs) / secs}
    return scores, grades, _add_rescored(stats, student, rescored_before)


def query_grouped_order(qids: Sequence[str]) -> np.ndarray:
    """Positions that put each query's pairs together (queries in order of their first pair, pairs in theirs)."""
    first: dict[str, int] = {}
    rank = [first.setdefault(q, len(first)) for q in qids]
    return np.argsort(np.asarray(rank, dtype=np.int64), kind="stable")


# ---------------------------------------------------------------- streaming, resumable


LABEL_SUFFIXES = (".qrels", ".txt", ".jsonl", ".parquet")


def check_label_output(out: Path) -> None:
    """Labels are written as TREC qrels (.qrels/.txt), JSONL or Parquet: any other suffix is a mistake."""
    if out.suffix.lower() not in LABEL_SUFFIXES:
        raise QrelkitError(f"{out}: unknown output format {out.suffix!r}; use one of {', '.join(LABEL_SUFFIXES)}")


def checkpoint_file(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".checkpoint.json")


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _identity(pairs: Path, model: str | Path, runtime: str) -> str:
    """What a checkpoint belongs to: the input file (size, mtime) and the student (its identity files)."""
    st = pairs.stat()
    raw = f"{pairs.resolve()}|{st.st_size}|{st.st_mtime_ns}|{student_fingerprint(model)}|{runtime}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _text_rows(out: Path, qids: Sequence[str], doc_ids: Sequence[str], scores: Any, grades: Any) -> str:
    """The rows of one chunk as JSONL (with scores) or TREC qrels lines."""
    if out.suffix == ".jsonl":
        return "".join(
            json.dumps({"qid": q, "doc_id": d, "score": round(float(s), 5), "grade": int(g)}) + "\n"
            for q, d, s, g in zip(qids, doc_ids, scores, grades, strict=True)
        )
    return "".join(qrels_line(q, d, g) for q, d, g in zip(qids, doc_ids, grades, strict=True))


def _label_table(qids: Sequence[str], doc_ids: Sequence[str], scores: Any, grades: Any) -> pa.Table:
    return pa.table(
        {
            "qid": list(qids),
            "doc_id": list(doc_ids),
            "score": np.asarray(scores, dtype=np.float32),
            "grade": np.asarray(grades, dtype=np.int8),
        },
        schema=LABEL_SCHEMA,
    )


def write_labels_stream(out: str | Path, batches: Iterable[dict[str, Any]]) -> int:
    """Write batches of ``{qid, doc_id, score, grade}`` columns to ``out`` as they come (atomically at the end)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_write(out) as tmp:
        if out.suffix == ".parquet":
            with pq.ParquetWriter(tmp, LABEL_SCHEMA) as writer:
                for b in batches:
                    writer.write_table(_label_table(b["qid"], b["doc_id"], b["score"], b["grade"]))
                    n += len(b["qid"])
        else:
            with tmp.open("w", encoding="utf-8") as fh:
                for b in batches:
                    fh.write(_text_rows(out, b["qid"], b["doc_id"], b["score"], b["grade"]))
                    n += len(b["qid"])
    return n


def label_file_stream(
    pairs: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    runtime: str = "torch",
    chunk: int = 4096,
    batch_size: int = 64,
    show_progress: bool = True,
    student: Labeler | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Label a pairs file (Parquet or JSONL, any size) into ``out`` (.qrels/.txt, .jsonl or .parquet), with the
    student on ``device`` (torch runtime; see :func:`qrelkit.students.labeling_device`).

    Resumes from ``<out>.checkpoint.json`` when it belongs to the same input and student; a finished run
    is not repeated. Parquet output is written as one part file per chunk, merged at the end.

    A student that reads a query's pairs together (``query_context``) needs them next to each other: from a file
    where they are apart it labels a copy grouped by query (``<out>.grouped.parquet``, removed once done;
    :func:`qrelkit.io.group_pairs_by_query`), so its labels come out query by query (``grouped_by_query`` in the
    stats).
    """
    src, out = require_file(pairs), Path(out)
    if chunk < 1:
        raise QrelkitError(f"chunk must be at least 1, got {chunk}")
    check_label_output(out)
    identity = _identity(src, model, runtime)
    ckpt_path = checkpoint_file(out)
    ckpt = json.loads(ckpt_path.read_text()) if ckpt_path.exists() else {}
    if ckpt.get("identity") != identity or (ckpt.get("complete") and not out.exists()):
        ckpt = {"identity": identity, "done": 0, "bytes": 0, "parts": 0, "complete": False}
        out.unlink(missing_ok=True)
        shutil.rmtree(_parts_dir(out), ignore_errors=True)
    if ckpt["complete"] and out.exists():
        return {**ckpt["stats"], "resumed_from": ckpt["done"], "skipped": True}
    total = count_pairs(src)
    if total == 0:
        raise EmptyInput(src, "pairs")
    resumed_from = ckpt["done"]
    _rollback(out, ckpt)
    student = student or load_student(model, runtime=runtime, device=device)
    whole_queries = reads_query_context(student)
    source = src if not whole_queries or queries_together(src) else _grouped_copy(src, out, fresh=not ckpt["done"])
    rescored_before = _rescored(student)
    t0 = time.perf_counter()
    labelled = 0
    with progress_bar(f"label ({runtime})", total=total, enabled=show_progress) as advance:
        advance(ckpt["done"])
        for part in iter_pair_chunks(source, chunk, skip=ckpt["done"], whole_queries=whole_queries):
            scores, grades = student.predict_pairs(part, batch_size=batch_size)
            _append(out, ckpt, part, scores, grades)
            ckpt["done"] += len(part)
            _save_checkpoint(ckpt_path, ckpt)  # only after the chunk's labels are on disk
            labelled += len(part)
            advance(len(part))
    if out.suffix == ".parquet":
        _merge_parts(out, ckpt["parts"])
    secs = time.perf_counter() - t0
    stats = {
        "pairs": ckpt["done"],
        "labelled_this_run": labelled,
        "resumed_from": resumed_from,
        "seconds": round(secs, 3),
        "pairs_per_s": labelled / secs if secs > 0 else None,
        "runtime": runtime,
        "device": device,
    }
    if source != src:
        stats["grouped_by_query"] = True
    _add_rescored(stats, student, rescored_before)
    ckpt.update({"complete": True, "stats": stats})
    _save_checkpoint(ckpt_path, ckpt)
    shutil.rmtree(_parts_dir(out), ignore_errors=True)  # only once the merged file is recorded as complete
    if source != src:
        source.unlink(missing_ok=True)
    return stats


def _grouped_copy(src: Path, out: Path, *, fresh: bool) -> Path:
    """``src``'s pairs grouped by query, beside ``out``: made again for a fresh run, kept for a resumed one (the
    same file always groups the same way, so the checkpoint's count of pairs done still holds)."""
    grouped = out.with_name(out.name + ".grouped.parquet")
    if fresh or not grouped.exists():
        group_pairs_by_query(src, grouped)
    return grouped


def _rescored(student: Labeler) -> int | None:
    """How many pairs the ``onnx-int8-checked`` runtime has graded again in fp32 so far; None for any other."""
    from .students.checked import CheckedLabeler

    return student.rescored if isinstance(student, CheckedLabeler) else None


def _add_rescored(stats: dict[str, Any], student: Labeler, before: int | None) -> dict[str, Any]:
    """Adds ``rescored_in_fp32`` (what the checked runtime's fp32 pass cost since ``before``) for that runtime."""
    now = _rescored(student)
    if before is not None and now is not None:
        stats["rescored_in_fp32"] = now - before
    return stats


def _rollback(out: Path, ckpt: dict[str, Any]) -> None:
    """Drop whatever a killed run wrote after its last checkpoint."""
    if out.suffix == ".parquet":
        parts = _parts_dir(out)
        parts.mkdir(parents=True, exist_ok=True)
        for f in parts.iterdir():
            if not f.name.endswith(".parquet") or int(f.stem.split("-")[1]) >= ckpt["parts"]:
                f.unlink()
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("ab") as fh:
        fh.truncate(ckpt["bytes"])


def _append(out: Path, ckpt: dict[str, Any], part: Sequence[Pair], scores: np.ndarray, grades: np.ndarray) -> None:
    qids, doc_ids = [p.qid for p in part], [p.doc_id for p in part]
    if out.suffix == ".parquet":
        table = _label_table(qids, doc_ids, scores, grades)
        with atomic_write(_parts_dir(out) / f"part-{ckpt['parts']:06d}.parquet") as tmp:
            pq.write_table(table, tmp)
        ckpt["parts"] += 1
        return
    data = _text_rows(out, qids, doc_ids, scores, grades).encode("utf-8")
    with out.open("ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    ckpt["bytes"] += len(data)


def _save_checkpoint(path: Path, ckpt: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(ckpt))


def _merge_parts(out: Path, n_parts: int) -> None:
    parts = _parts_dir(out)
    with atomic_write(out) as tmp, pq.ParquetWriter(tmp, LABEL_SCHEMA) as writer:
        for i in range(n_parts):
            writer.write_table(pq.read_table(parts / f"part-{i:06d}.parquet"))
