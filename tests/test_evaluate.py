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
