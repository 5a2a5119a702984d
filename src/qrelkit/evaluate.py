"""Agreement of a labeler's grades with human grades: the statistics reviewers of relevance labels expect."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QrelkitError
from .io import Qrels
from .records import GRADES

BINARY_CUT = 2  # grade >= 2 counts as relevant (TREC DL convention)


def align(labels: Qrels, human: Qrels) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """Pairs graded by both, with the labeler's and the human grades (human grades clipped to 0–3)."""
    keys = sorted(set(labels) & set(human))
    if not keys:
        raise QrelkitError("the labels and the human qrels share no (qid, doc_id) pair")
    y_lab = np.array([min(max(labels[k], 0), 3) for k in keys])
    y_hum = np.array([min(max(human[k], 0), 3) for k in keys])
    return keys, y_lab, y_hum


def agreement(y_label: Sequence[int] | np.ndarray, y_human: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """Accuracy, Cohen's kappa (unweighted, linear, quadratic), Krippendorff's alpha (ordinal), Spearman,
    binary (grade >= 2) precision/recall/F1/kappa, and the 4×4 confusion matrix (rows: human)."""
    import krippendorff
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, precision_recall_fscore_support

    a, h = np.asarray(y_label), np.asarray(y_human)
    labels = list(GRADES)

    def kappa(x: np.ndarray, y: np.ndarray, weights: str | None = None, lab: list[int] = labels) -> float:
        if len(set(x.tolist()) | set(y.tolist())) < 2:
            return float("nan")
        return float(cohen_kappa_score(y, x, labels=lab, weights=weights))

    rho = spearmanr(a, h).statistic if len(set(a.tolist())) > 1 and len(set(h.tolist())) > 1 else float("nan")
    try:
        alpha = float(
            krippendorff.alpha(
                reliability_data=np.vstack([h, a]).astype(float), level_of_measurement="ordinal", value_domain=labels
            )
        )
    except (ValueError, ZeroDivisionError):
        alpha = float("nan")
    ab, hb = (a >= BINARY_CUT).astype(int), (h >= BINARY_CUT).astype(int)
    p, r, f, _ = precision_recall_fscore_support(hb, ab, average="binary", zero_division=0)
    return {
        "n": len(a),
        "accuracy": float((a == h).mean()),
        "kappa": kappa(a, h),
        "kappa_linear": kappa(a, h, "linear"),
        "kappa_quadratic": kappa(a, h, "quadratic"),
        "krippendorff_alpha": alpha,
        "spearman": float(rho),
        "binary_precision": float(p),
        "binary_recall": float(r),
        "binary_f1": float(f),
        "binary_kappa": kappa(ab, hb, lab=[0, 1]),
        "confusion": confusion_matrix(h, a, labels=labels).tolist(),
    }


def evaluate_qrels(labels: Qrels, human: Qrels) -> dict[str, Any]:
    """Agreement of ``labels`` with ``human`` on the pairs both graded."""
    keys, y_lab, y_hum = align(labels, human)
    out = agreement(y_lab, y_hum)
    out["missing"] = len(set(human) - set(labels))
    out["queries"] = len({q for q, _ in keys})
    return out


HEADLINE = [
    ("n", "pairs"),
    ("accuracy", "acc"),
    ("kappa", "κ"),
    ("kappa_linear", "κ lin"),
    ("kappa_quadratic", "κ quad"),
    ("krippendorff_alpha", "α ord"),
    ("spearman", "ρ"),
    ("binary_f1", "F1≥2"),
    ("binary_kappa", "κ≥2"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def format_table(rows: Mapping[str, Mapping[str, Any]], extra: Sequence[tuple[str, str]] = ()) -> str:
    """A Markdown table, one row per labeler."""
    cols = [*HEADLINE, *extra]
    lines = ["| labeler | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(k, "")) for k, _ in cols) + " |")
    return "\n".join(lines)


def format_confusion(confusion: Sequence[Sequence[int]]) -> str:
    lines = ["human \\ label |   0 |   1 |   2 |   3", "---|---|---|---|---"]
    for g, row in zip(GRADES, confusion, strict=True):
        lines.append(f"{g} | " + " | ".join(f"{c:3d}" for c in row))
    return "\n".join(lines)


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(metrics, indent=2, default=float) + "\n", encoding="utf-8")
