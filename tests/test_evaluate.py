from __future__ import annotations

import math

import numpy as np
import pytest

from qrelkit.evaluate import agreement, evaluate_qrels


def test_perfect_and_known_values():
    m = agreement([0, 1, 2, 3, 3], [0, 1, 2, 3, 3])
    assert m["accuracy"] == 1 and m["kappa"] == pytest.approx(1) and m["krippendorff_alpha"] == pytest.approx(1)
    # 2x2 textbook case on the binary cut: p_o = 0.5, p_e = 0.5 → κ = 0
    m = agreement([3, 3, 0, 0], [3, 0, 3, 0])
    assert m["binary_kappa"] == pytest.approx(0.0)
    assert m["binary_precision"] == 0.5 and m["binary_recall"] == 0.5


def test_weighted_kappa_rewards_near_misses():
    human = np.array([0, 1, 2, 3] * 10)
    near = np.clip(human + 1, 0, 3)
    far = 3 - human
    assert agreement(near, human)["kappa_quadratic"] > agreement(far, human)["kappa_quadratic"]
    assert agreement(near, human)["kappa_linear"] > agreement(near, human)["kappa"]


def test_confusion_rows_are_human_grades():
    m = agreement([1, 1, 0], [0, 0, 0])
    assert m["confusion"][0] == [1, 2, 0, 0]
    assert math.isnan(m["spearman"])


def test_evaluate_qrels_counts_missing():
    human = {("q", "a"): 3, ("q", "b"): 0, ("q", "c"): 1}
    m = evaluate_qrels({("q", "a"): 3, ("q", "b"): 1}, human)
    assert m["n"] == 2 and m["missing"] == 1


def test_pairwise_accuracy_counts_pairs_with_different_human_grades():
    from qrelkit.evaluate import pairwise_accuracy

    keys = [("q1", "a"), ("q1", "b"), ("q1", "c"), ("q2", "d"), ("q2", "e")]
    human = np.array([3, 1, 1, 0, 2])
    # q1 pairs with different human grades: (a,b), (a,c); q2: (d,e). Labeler: a>b right, a=c tie (½), d>e wrong.
    label = np.array([2, 1, 2, 3, 1])
    assert pairwise_accuracy(keys, label, human) == pytest.approx((1 + 0.5 + 0) / 3)
    assert pairwise_accuracy(keys, human, human) == 1.0


def test_ndcg_at_10_is_one_for_the_human_order_and_lower_reversed():
    from qrelkit.evaluate import ndcg_at_10

    keys = [("q1", f"d{i}") for i in range(5)]
    human = np.array([3, 2, 1, 0, 0])
    assert ndcg_at_10(keys, human, human) == pytest.approx(1.0)
    assert ndcg_at_10(keys, 3 - human, human) < 0.8


def test_bootstrap_from_per_query_sums_equals_recomputing_every_resample():
    """The bootstrap sums per-query statistics (confusion matrices, ordered pairs, nDCG@10) over each draw; that
    must be what recomputing every metric on the resampled pairs gives (a query drawn twice counts twice)."""
    from qrelkit.evaluate import bootstrap_intervals, ndcg_at_10, pairwise_accuracy, query_draws

    rng = np.random.default_rng(1)
    keys = [(f"q{rng.integers(0, 12)}", f"d{i}") for i in range(240)]  # uneven queries, not in id order
    human = rng.integers(0, 4, 240)
    grades = np.clip(np.round(human + rng.normal(0, 1.2, 240)), 0, 3).astype(int)  # ties and orderings matter
    n, queries = 40, sorted({q for q, _ in keys})
    fast = bootstrap_intervals(keys, {"g": grades}, human, n=n, seed=3)["g"]
    slow: dict[str, list[float]] = {"kappa": [], "kappa_quadratic": [], "pairwise_accuracy": [], "ndcg@10": []}
    for weights in query_draws(len(queries), n, 3):
        idx, ks = [], []
        for qi, times in enumerate(weights):
            mine = [i for i, k in enumerate(keys) if k[0] == queries[qi]]
            for draw in range(times):
                idx += mine
                ks += [(f"{queries[qi]}#{draw}", keys[i][1]) for i in mine]
        y, h = grades[idx], human[idx]
        full = agreement(y, h)
        slow["kappa"].append(full["kappa"])
        slow["kappa_quadratic"].append(full["kappa_quadratic"])
        slow["pairwise_accuracy"].append(pairwise_accuracy(ks, y, h))
        slow["ndcg@10"].append(ndcg_at_10(ks, y, h))
    for metric, values in slow.items():
        expected = (np.nanpercentile(values, 2.5), np.nanpercentile(values, 97.5))
        assert fast[metric] == pytest.approx(expected, abs=1e-12), metric


def test_bootstrap_resamples_queries_and_gives_paired_differences():
    from qrelkit.evaluate import bootstrap_intervals, compare_qrels

    rng = np.random.default_rng(0)
    keys = [(f"q{i // 20}", f"d{i}") for i in range(400)]
    human = rng.integers(0, 4, 400)
    good = np.where(rng.random(400) < 0.8, human, rng.integers(0, 4, 400))
    noisy = np.where(rng.random(400) < 0.3, human, rng.integers(0, 4, 400))
    ci = bootstrap_intervals(keys, {"good": good, "noisy": noisy}, human, n=200)
    lo, hi = ci["good - noisy"]["kappa"]
    assert 0 < lo < hi, "a clearly better labeler's kappa difference excludes 0"
    lo, hi = ci["good"]["kappa"]
    assert lo < agreement(good, human)["kappa"] < hi, "the interval holds the full-sample estimate"
    same = bootstrap_intervals(keys, {"a": good, "b": good}, human, n=50)["a - b"]
    assert same["kappa"] == (0.0, 0.0) and same["ndcg@10"] == (0.0, 0.0)

    as_qrels = lambda y: {k: int(g) for k, g in zip(keys, y, strict=True)}  # noqa: E731
    report = compare_qrels(as_qrels(good), as_qrels(noisy), as_qrels(human), bootstrap=100)
    assert report["n"] == 400 and report["queries"] == 20
    diff = report["point"]["labels - reference"]["kappa"]
    lo, hi = report["ci"]["labels - reference"]["kappa"]
    assert lo <= diff <= hi and diff > 0
