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
from .records import GRADES, clip_grade
from .tables import markdown_table

BINARY_CUT = 2  # grade >= 2 counts as relevant (TREC DL convention)


def align(labels: Qrels, human: Qrels) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """Pairs graded by both, with the labeler's and the human grades (human grades clipped to 0–3)."""
    keys = sorted(set(labels) & set(human))
    if not keys:
        raise QrelkitError("the labels and the human qrels share no (qid, doc_id) pair")
    return keys, grades_of(labels, keys), grades_of(human, keys)


def grades_of(qrels: Qrels, keys: Sequence[tuple[str, str]]) -> np.ndarray:
    """The grades of ``keys``, clipped to 0–3 (TREC files may hold -1 or 4)."""
    return np.array([clip_grade(qrels[k]) for k in keys])


def group_by_query(keys: Sequence[tuple[str, str]]) -> dict[str, list[int]]:
    """Positions of each query's pairs in ``keys``."""
    by_query: dict[str, list[int]] = {}
    for i, (q, _) in enumerate(keys):
        by_query.setdefault(q, []).append(i)
    return by_query


def _confusion_agreement(y_label: np.ndarray, y_human: np.ndarray) -> dict[str, Any]:
    """Accuracy, Cohen's kappas (unweighted, linear, quadratic, binary at grade >= 2) and the 4×4 confusion
    matrix (rows: human)."""
    return _agreement_from_confusion(_confusion(y_label, y_human))


def _confusion(y_label: np.ndarray, y_human: np.ndarray) -> np.ndarray:
    a, h = np.asarray(y_label).astype(int), np.asarray(y_human).astype(int)
    k = len(GRADES)
    return np.bincount(h * k + a, minlength=k * k).reshape(k, k).astype(float)


def _agreement_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Every confusion-based statistic from one matrix: the bootstrap sums the per-query matrices of its draw."""
    c = BINARY_CUT
    binary = np.array([[cm[:c, :c].sum(), cm[:c, c:].sum()], [cm[c:, :c].sum(), cm[c:, c:].sum()]])
    return {
        "accuracy": float(np.trace(cm) / cm.sum()),
        "kappa": _kappa_from_confusion(cm, None),
        "kappa_linear": _kappa_from_confusion(cm, "linear"),
        "kappa_quadratic": _kappa_from_confusion(cm, "quadratic"),
        "binary_kappa": _kappa_from_confusion(binary, None),
        "confusion": cm.astype(int).tolist(),
    }


def _kappa_from_confusion(cm: np.ndarray, weights: str | None) -> float:
    """Cohen's kappa from a confusion matrix (sklearn's formula); nan when no disagreement is possible."""
    k = cm.shape[0]
    total = cm.sum()
    if total == 0:
        return float("nan")
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / total
    d = np.abs(np.subtract.outer(np.arange(k), np.arange(k))).astype(float)
    w = (d > 0).astype(float) if weights is None else d if weights == "linear" else d**2
    denom = (w * expected).sum()
    return float(1 - (w * cm).sum() / denom) if denom else float("nan")


def agreement(y_label: Sequence[int] | np.ndarray, y_human: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """Accuracy, Cohen's kappa (unweighted, linear, quadratic), Krippendorff's alpha (ordinal), Spearman,
    binary (grade >= 2) precision/recall/F1/kappa, and the 4×4 confusion matrix (rows: human)."""
    import krippendorff
    from scipy.stats import spearmanr
    from sklearn.metrics import precision_recall_fscore_support

    a, h = np.asarray(y_label), np.asarray(y_human)
    rho = spearmanr(a, h).statistic if len(set(a.tolist())) > 1 and len(set(h.tolist())) > 1 else float("nan")
    try:
        alpha = float(
            krippendorff.alpha(
                reliability_data=np.vstack([h, a]).astype(float),
                level_of_measurement="ordinal",
                value_domain=list(GRADES),
            )
        )
    except (ValueError, ZeroDivisionError):
        alpha = float("nan")
    ab, hb = (a >= BINARY_CUT).astype(int), (h >= BINARY_CUT).astype(int)
    p, r, f, _ = precision_recall_fscore_support(hb, ab, average="binary", zero_division=0)
    c = _confusion_agreement(a, h)
    return {
        "n": len(a),
        "accuracy": c["accuracy"],
        "kappa": c["kappa"],
        "kappa_linear": c["kappa_linear"],
        "kappa_quadratic": c["kappa_quadratic"],
        "krippendorff_alpha": alpha,
        "spearman": float(rho),
        "binary_precision": float(p),
        "binary_recall": float(r),
        "binary_f1": float(f),
        "binary_kappa": c["binary_kappa"],
        "confusion": c["confusion"],
    }


def point_metrics(keys: Sequence[tuple[str, str]], y_label: np.ndarray, y_human: np.ndarray) -> dict[str, Any]:
    """:func:`agreement` plus the ranking metrics (pairwise accuracy, nDCG@10) of one labeler."""
    out = agreement(y_label, y_human)
    out["pairwise_accuracy"] = pairwise_accuracy(keys, y_label, y_human)
    out["ndcg@10"] = ndcg_at_10(keys, y_label, y_human)
    return out


def pairwise_accuracy(keys: Sequence[tuple[str, str]], y_label: np.ndarray, y_human: np.ndarray) -> float:
    """Over document pairs of one query with different human grades, the share the labeler orders the same
    way (a labeler tie counts one half). ``y_label`` may be grades or continuous scores."""
    agree, total = _ordered_pairs(keys, y_label, y_human).sum(axis=0)
    return float(agree / total) if total else float("nan")


def _ordered_pairs(keys: Sequence[tuple[str, str]], y_label: np.ndarray, y_human: np.ndarray) -> np.ndarray:
    """Per query (sorted by id): [document pairs the labeler orders as humans do (ties count one half), document
    pairs humans grade differently]."""
    out = []
    by_query = group_by_query(keys)
    for idx in (by_query[q] for q in sorted(by_query)):
        lab, hum = np.asarray(y_label)[idx], np.asarray(y_human)[idx]
        dh = np.sign(hum[:, None] - hum[None, :])
        dl = np.sign(lab[:, None] - lab[None, :])
        upper = np.triu(dh != 0, k=1)
        out.append([float((dl[upper] == dh[upper]).sum()) + 0.5 * float((dl[upper] == 0).sum()), float(upper.sum())])
    return np.array(out, dtype=float).reshape(-1, 2)


def ndcg_at_10(keys: Sequence[tuple[str, str]], y_label: np.ndarray, y_human: np.ndarray) -> float:
    """Mean over queries of nDCG@10 (ir_measures) of the judged documents ranked by the labeler's grade,
    with human grades as gains: does the labeler put the documents humans value on top?"""
    per_query = _ndcg_per_query(keys, y_label, y_human)
    return float(np.nanmean(per_query)) if (~np.isnan(per_query)).any() else float("nan")


def _ndcg_per_query(keys: Sequence[tuple[str, str]], y_label: np.ndarray, y_human: np.ndarray) -> np.ndarray:
    """nDCG@10 of each query (sorted by id); nan where ir_measures gives none."""
    import ir_measures
    from ir_measures import nDCG

    qrels = [ir_measures.Qrel(q, d, int(g)) for (q, d), g in zip(keys, y_human, strict=True)]
    run = [ir_measures.ScoredDoc(q, d, float(s)) for (q, d), s in zip(keys, y_label, strict=True)]
    per = {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], qrels, run)}
    return np.array([per.get(q, np.nan) for q in sorted(group_by_query(keys))], dtype=float)


def _headline(
    keys: Sequence[tuple[str, str]], y_lab: np.ndarray, y_hum: np.ndarray, metrics: Sequence[str] | None = None
) -> dict[str, float]:
    """The interval metrics on the whole sample: the bootstrap's computation with every query drawn once."""
    wanted = list(metrics or DEFAULT_INTERVAL_METRICS)
    stats = _per_query_statistics(keys, y_lab, y_hum, wanted)
    return _drawn_metrics(stats, np.ones(len(stats["confusion"])), wanted)


# metrics with bootstrap intervals: `qrelkit evaluate` (accuracy first: what a newcomer reads) and the multi-labeler
# report (the weighted kappas side by side)
DEFAULT_INTERVAL_METRICS = ("accuracy", "kappa", "kappa_quadratic", "binary_kappa", "pairwise_accuracy", "ndcg@10")
REPORT_METRICS = ("kappa", "kappa_linear", "kappa_quadratic", "binary_kappa", "pairwise_accuracy", "ndcg@10")


def query_draws(n_queries: int, n: int, seed: int) -> np.ndarray:
    """``n`` bootstrap draws of whole queries, as how often each query (sorted by id) is drawn: (n, n_queries)."""
    rng = np.random.default_rng(seed)
    return np.array([np.bincount(rng.choice(n_queries, size=n_queries), minlength=n_queries) for _ in range(n)])


def _per_query_statistics(
    keys: Sequence[tuple[str, str]], y_label: np.ndarray, y_human: np.ndarray, metrics: Sequence[str]
) -> dict[str, np.ndarray]:
    """What every interval metric of one labeler sums over queries, per query: its confusion matrix, its ordered
    document pairs, its nDCG@10. A bootstrap draw then costs a weighted sum, not a pass over every pair."""
    by_query = group_by_query(keys)
    groups = [by_query[q] for q in sorted(by_query)]  # the order of :func:`query_draws`' columns
    y_label, y_human = np.asarray(y_label), np.asarray(y_human)
    stats = {"confusion": np.array([_confusion(y_label[idx], y_human[idx]) for idx in groups])}
    if "pairwise_accuracy" in metrics:
        stats["pairs"] = _ordered_pairs(keys, y_label, y_human)
    if "ndcg@10" in metrics:
        stats["ndcg"] = _ndcg_per_query(keys, y_label, y_human)
    return stats


def _drawn_metrics(stats: Mapping[str, np.ndarray], weights: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
    """The metrics of one bootstrap draw (``weights``: how often each query was drawn; a query drawn twice counts
    as two queries, as in a resample of whole queries)."""
    out: dict[str, Any] = _agreement_from_confusion(np.tensordot(weights, stats["confusion"], axes=1))
    if "pairs" in stats:
        agree, total = weights @ stats["pairs"]
        out["pairwise_accuracy"] = float(agree / total) if total else float("nan")
    if "ndcg" in stats:
        has = ~np.isnan(stats["ndcg"])
        drawn = float(weights[has].sum())
        out["ndcg@10"] = float(weights[has] @ stats["ndcg"][has] / drawn) if drawn else float("nan")
    return {k: out[k] for k in metrics}


def bootstrap_intervals(
    keys: Sequence[tuple[str, str]],
    labelers: Mapping[str, np.ndarray],
    y_hum: np.ndarray,
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    reference: str | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, dict[str, tuple[float, float]]]:
    """Percentile intervals of the headline metrics (or ``metrics``), resampling queries (pairs of one query
    are not independent). The same resamples give paired differences: ``"A - ref"`` for every other labeler
    when ``reference`` is named, else ``"A - B"`` when there are exactly two labelers."""
    wanted = list(metrics or DEFAULT_INTERVAL_METRICS)
    draws = query_draws(len(group_by_query(keys)), n, seed)
    names = list(labelers)
    if reference is not None:
        diffs = [(a, reference) for a in names if a != reference]
    else:
        diffs = [(names[0], names[1])] if len(names) == 2 else []
    stats = {name: _per_query_statistics(keys, y, y_hum, wanted) for name, y in labelers.items()}
    values: dict[str, dict[str, list[float]]] = {name: {k: [] for k in wanted} for name in names}
    values.update({f"{a} - {b}": {k: [] for k in wanted} for a, b in diffs})
    for weights in draws:
        per = {name: _drawn_metrics(stats[name], weights, wanted) for name in names}
        for name, m in per.items():
            for k, v in m.items():
                values[name][k].append(v)
        for a, b in diffs:
            for k in wanted:
                values[f"{a} - {b}"][k].append(per[a][k] - per[b][k])
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {
        name: {k: (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))) for k, v in ms.items()}
        for name, ms in values.items()
    }


def evaluate_qrels(labels: Qrels, human: Qrels, *, bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:
    """Agreement of ``labels`` with ``human`` on the pairs both graded; with ``bootstrap`` > 0, 95% intervals
    of the headline metrics from that many query resamples (under ``"ci"``)."""
    keys, y_lab, y_hum = align(labels, human)
    out = point_metrics(keys, y_lab, y_hum)
    out["missing"] = len(set(human) - set(labels))
    out["queries"] = len({q for q, _ in keys})
    if bootstrap:
        out["ci"] = bootstrap_intervals(keys, {"labels": y_lab}, y_hum, n=bootstrap, seed=seed)["labels"]
    return out


def compare_qrels(
    labels: Qrels, reference: Qrels, human: Qrels, *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Two labelers (say student and teacher) on the pairs all three graded: each one's headline metrics and
    the paired difference ``labels - reference`` with its 95% interval, resampling queries."""
    keys = sorted(set(labels) & set(reference) & set(human))
    if not keys:
        raise QrelkitError("the two label sets and the human qrels share no (qid, doc_id) pair")
    ys = {"labels": grades_of(labels, keys), "reference": grades_of(reference, keys)}
    y_hum = grades_of(human, keys)
    point = {name: _headline(keys, y, y_hum) for name, y in ys.items()}
    point["labels - reference"] = {k: point["labels"][k] - point["reference"][k] for k in point["labels"]}
    ci = bootstrap_intervals(keys, ys, y_hum, n=bootstrap, seed=seed)
    return {"n": len(keys), "queries": len({q for q, _ in keys}), "point": point, "ci": ci}


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
    ("pairwise_accuracy", "pair acc"),
    ("ndcg@10", "nDCG@10"),
]


def format_value(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def format_table(rows: Mapping[str, Mapping[str, Any]], extra: Sequence[tuple[str, str]] = ()) -> str:
    """A Markdown table, one row per labeler."""
    cols = [*HEADLINE, *extra]
    body = ([name, *(format_value(m.get(k, "")) for k, _ in cols)] for name, m in rows.items())
    return markdown_table(["labeler", *(h for _, h in cols)], body)


def format_intervals(
    intervals: Mapping[str, Mapping[str, tuple[float, float]]],
    points: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """A Markdown table of 95% intervals (with the point estimate in front when given)."""
    metrics = list(next(iter(intervals.values())))
    rows = []
    for name, ci in intervals.items():
        cells = [name]
        for m in metrics:
            lo, hi = ci[m]
            point = f"{format_value((points or {}).get(name, {}).get(m, float('nan')))} " if points else ""
            cells.append(f"{point}[{format_value(lo)}, {format_value(hi)}]")
        rows.append(cells)
    return markdown_table(["labeler", *metrics], rows)


def format_confusion(confusion: Sequence[Sequence[int]]) -> str:
    rows = ([g, *(f"{c:3d}" for c in row)] for g, row in zip(GRADES, confusion, strict=True))
    return markdown_table(["human \\ label", *(f"{g:3d}" for g in GRADES)], rows)


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(metrics, indent=2, default=float) + "\n", encoding="utf-8")
