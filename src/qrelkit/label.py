"""Label query–document pairs with a distilled student."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import write_jsonl, write_parquet, write_qrels
from .progress import progress_bar
from .records import Pair
from .student import Student


def label_pairs(
    pairs: Sequence[Pair], student: Student, *, chunk: int = 512, batch_size: int = 64, show_progress: bool = True
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Scores and grades for ``pairs``, in chunks (one progress step each); returns throughput stats too."""
    scores, grades = np.zeros(len(pairs)), np.zeros(len(pairs), dtype=int)
    t0 = time.perf_counter()
    with progress_bar("label (student)", total=len(pairs), enabled=show_progress) as advance:
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            s, g = student.predict_pairs(part, batch_size=batch_size)
            scores[start : start + len(part)], grades[start : start + len(part)] = s, g
            advance(len(part))
    secs = time.perf_counter() - t0
    return scores, grades, {"pairs": len(pairs), "seconds": round(secs, 3), "pairs_per_s": len(pairs) / secs}


def write_labels(path: str | Path, pairs: Sequence[Pair], scores: np.ndarray, grades: np.ndarray) -> None:
    """TREC qrels (``.qrels``/``.txt``), JSONL or Parquet (with scores), chosen by the file suffix."""
    p = Path(path)
    rows = (
        {"qid": pr.qid, "doc_id": pr.doc_id, "score": round(float(s), 5), "grade": int(g)}
        for pr, s, g in zip(pairs, scores, grades, strict=True)
    )
    if p.suffix == ".jsonl":
        write_jsonl(p, rows)
    elif p.suffix == ".parquet":
        write_parquet(p, list(rows))
    else:
        write_qrels(p, ((pr.qid, pr.doc_id, int(g)) for pr, g in zip(pairs, grades, strict=True)))
