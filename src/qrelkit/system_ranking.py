"""Do a labeler's grades rank retrieval systems as human grades do? System-ranking correlation.

Relevance labels mostly serve to compare systems, so the question to ask of cheap labels is often not whether
each grade matches but whether the leaderboard would change. Each system (a TREC run) is scored with the human
qrels and with each labeler's, on the pairs both graded, and the two orderings of the systems are compared:
Kendall's τ, Spearman's ρ, τ_AP (Yilmaz, Aslam & Robertson 2008: a swap near the top costs more) and whether
the best system stays first. Query resamples give 95% intervals.

>>> result = compare_system_rankings(runs, human, {"student": student_qrels})   # doctest: +SKIP
>>> result["correlation"]["student"]["kendall_tau"]                             # doctest: +SKIP
0.93
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import QrelkitError
from .evaluate import query_draws
from .io import Run
from .records import Qrels, clip_grade

DEFAULT_MEASURE = "nDCG@10"
CORRELATIONS = ("kendall_tau", "spearman", "tau_ap")


def per_query_scores(
    runs: Mapping[str, Run], qrels: Qrels, queries: Sequence[str], measure: str = DEFAULT_MEASURE
) -> np.ndarray:
    """The ``measure`` (ir_measures notation, e.g. ``nDCG@10``, ``AP(rel=2)``) of each run on each query
    (systems × queries, in the given orders), judged by ``qrels``; a query a run did not answer scores 0."""
    import ir_measures

    try:
        parsed = ir_measures.parse_measure(measure)
    except (NameError, ValueError) as e:
        raise QrelkitError(
            f"measure {measure!r}: {e} (ir_measures names: nDCG@10, AP(rel=2), P(rel=2)@10, ...)"
        ) from None
    column = {q: j for j, q in enumerate(queries)}
    nested: dict[str, dict[str, int]] = {}
    for (q, d), grade in qrels.items():
        if q in column:
            nested.setdefault(q, {})[d] = clip_grade(grade)
    values = np.zeros((len(runs), len(queries)))
    for i, run in enumerate(runs.values()):
        answered = {q: docs for q, docs in run.items() if q in column}
        for metric in ir_measures.iter_calc([parsed], nested, answered):
            values[i, column[metric.query_id]] = metric.value
    return values


def leaderboard(
    runs: Mapping[str, Run],
    qrels: Qrels,
    measures: Sequence[str] = (DEFAULT_MEASURE,),
    *,
    judged_at: int = 10,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Each run's mean of each measure over the queries ``qrels`` grades (a query a run did not answer scores 0),
    and ``Judged@{judged_at}``, the share of its top documents that ``qrels`` grades (below 1, the run is partly
    scored on documents nobody graded, which count as not relevant). With ``bootstrap`` query resamples, under
    ``"bootstrap"``: the first measure's 95% interval and the run's paired gap to the best run with its interval
    (the same resamples for both runs), so a leaderboard shows which gaps lie within query noise."""
    queries = sorted({q for q, _ in qrels})
    if not any(q in run for run in runs.values() for q in queries):
        raise QrelkitError("no run answers any query of the qrels (do the runs' query ids match the qrels'?)")
    wanted = list(dict.fromkeys([*measures, f"Judged@{judged_at}"]))
    values = {m: per_query_scores(runs, qrels, queries, m) for m in wanted}
    board: dict[str, dict[str, Any]] = {
        run: {m: float(values[m][i].mean()) for m in wanted} for i, run in enumerate(runs)
    }
    if bootstrap:
        first = values[wanted[0]]  # systems × queries
        means = first.mean(axis=1)
        best = int(np.argmax(means))
        draws = query_draws(len(queries), bootstrap, seed)
        drawn = first @ draws.T / draws.sum(axis=1)  # systems × draws
        lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        for i, run in enumerate(runs):
            gap = drawn[i] - drawn[best]
            board[run]["bootstrap"] = {
                "interval": (float(np.percentile(drawn[i], lo)), float(np.percentile(drawn[i], hi))),
                "minus_best": float(means[i] - means[best]),
                "minus_best_interval": (float(np.percentile(gap, lo)), float(np.percentile(gap, hi))),
            }
    return board


def tau_ap(truth: Sequence[float] | np.ndarray, estimate: Sequence[float] | np.ndarray) -> float:
    """AP rank correlation of ``estimate``'s ordering of the systems against ``truth``'s: 1 when they agree, -1
    when reversed; unlike Kendall's τ, swapping the two best systems costs more than swapping the two worst.
    Systems tied in ``truth`` count as half ordered; systems tied in ``estimate`` count as ordered at random: the
    result is the expectation over every order of the ties (exact), so it never depends on the order given."""
    t, e = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    if len(t) < 2:
        return float("nan")
    order = np.argsort(-e, kind="stable")
    total, start = 0.0, 0
    for group in np.split(order, np.flatnonzero(np.diff(e[order]) != 0) + 1):
        above, size = t[order[:start]], len(group)
        for s in group:
            fixed = np.sum(above > t[s]) + 0.5 * np.sum(above == t[s])  # every system ranked above the tie
            peers = t[group[group != s]]
            # a tied peer lands above s with probability r / (size - 1) when s is r-th in the tie
            per_peer = (np.sum(peers > t[s]) + 0.5 * np.sum(peers == t[s])) / (size - 1) if size > 1 else 0.0
            total += sum((fixed + r * per_peer) / (start + r) for r in range(size) if start + r > 0) / size
        start += size
    return float(2 * total / (len(order) - 1) - 1)


def ranking_correlation(truth: Sequence[float] | np.ndarray, estimate: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """How well ``estimate`` (systems' scores under a labeler's qrels) orders the systems as ``truth`` (under the
    human qrels) does: Kendall's τ-b, Spearman's ρ, τ_AP, and whether the best system is the same."""
    from scipy.stats import kendalltau, spearmanr

    t, e = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    constant = len(t) < 2 or np.ptp(t) == 0 or np.ptp(e) == 0  # no ordering to compare
    return {
        "kendall_tau": float("nan") if constant else float(kendalltau(t, e).statistic),
        "spearman": float("nan") if constant else float(spearmanr(t, e).statistic),
        "tau_ap": tau_ap(t, e),
        "same_best": bool(np.argmax(t) == np.argmax(e)),
    }


def compare_system_rankings(
    runs: Mapping[str, Run],
    human: Qrels,
    labelers: Mapping[str, Qrels],
    *,
    measure: str = DEFAULT_MEASURE,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Score every run with the human qrels and with each labeler's, on the pairs graded by the humans and by
    every labeler (so that coverage does not differ), over the queries those pairs hold; then the correlation of
    each labeler's ordering of the systems with the human one, with ``bootstrap`` query resamples."""
    if len(runs) < 2:
        raise QrelkitError(f"a system ranking needs at least 2 runs, got {len(runs)}")
    if "human" in labelers:
        raise QrelkitError("'human' names the human qrels; call the labeler something else")
    keys = set(human)
    for qrels in labelers.values():
        keys &= set(qrels)
    if not keys:
        raise QrelkitError("the human qrels and the labelers' share no (qid, doc_id) pair")
    queries = sorted({q for q, _ in keys})
    if not any(q in run for run in runs.values() for q in queries):
        raise QrelkitError("no run answers any of the judged queries (do the runs' query ids match the qrels'?)")
    judges = {"human": human, **labelers}
    values = {name: per_query_scores(runs, {k: q[k] for k in keys}, queries, measure) for name, q in judges.items()}
    means = {name: v.mean(axis=1) for name, v in values.items()}
    out: dict[str, Any] = {
        "measure": measure,
        "queries": len(queries),
        "pairs": len(keys),
        "systems": {run: {name: float(means[name][i]) for name in judges} for i, run in enumerate(runs)},
        "correlation": {name: ranking_correlation(means["human"], means[name]) for name in labelers},
    }
    if bootstrap:
        drawn: dict[str, dict[str, list[float]]] = {name: {c: [] for c in CORRELATIONS} for name in labelers}
        for weights in query_draws(len(queries), bootstrap, seed):
            truth = values["human"] @ weights / weights.sum()
            for name in labelers:
                r = ranking_correlation(truth, values[name] @ weights / weights.sum())
                for c in CORRELATIONS:
                    drawn[name][c].append(r[c])
        lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        out["ci"] = {
            name: {c: (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))) for c, v in cs.items()}
            for name, cs in drawn.items()
        }
    return out


def ranking_tables(
    result: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> tuple[str, list[tuple[list[str], list[list[str]]]]]:
    """What a report shows of a system ranking: a sentence, then (header, rows) of each labeler's correlation with
    the human ordering and of each system's score under each qrels (labelers under ``names`` where given)."""
    labelers = list(result["correlation"])
    shown = {n: (names or {}).get(n, n) for n in labelers}
    ci = result.get("ci", {})

    def cell(name: str, c: str) -> str:
        v = result["correlation"][name][c]
        return f"{v:.3f}" + (f" [{ci[name][c][0]:.3f}, {ci[name][c][1]:.3f}]" if name in ci else "")

    correlations = [
        [shown[n], *(cell(n, c) for c in CORRELATIONS), str(result["correlation"][n]["same_best"])] for n in labelers
    ]
    by_human = sorted(result["systems"], key=lambda s: -result["systems"][s]["human"])
    scores = [[s, *(f"{result['systems'][s][j]:.4f}" for j in ["human", *labelers])] for s in by_human]
    about = (
        f"{len(result['systems'])} systems ranked by {result['measure']} over {result['queries']} queries "
        f"({result['pairs']} pairs graded by all)" + (", 95% intervals from query resamples" if ci else "")
    )
    return about, [
        (["labeler", "Kendall τ", "Spearman ρ", "τ_AP", "same best"], correlations),
        (["system", "human", *(shown[n] for n in labelers)], scores),
    ]


def format_system_ranking(result: Mapping[str, Any], names: Mapping[str, str] | None = None) -> str:
    """:func:`ranking_tables` as Markdown."""
    from .tables import markdown_table

    about, tables = ranking_tables(result, names)
    return "\n\n".join([about, *(markdown_table(header, rows) for header, rows in tables)])
