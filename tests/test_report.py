"""The evaluation report: tables, intervals, paired differences, plots and per-query agreement."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from qrelkit.errors import QrelkitError
from qrelkit.report import build_report, write_report


def _labelers(seed: int = 0) -> tuple[dict, dict]:
    """Human grades for 12 queries × 20 documents, a close labeler (humans ± small noise) and a random one."""
    rng = np.random.default_rng(seed)
    human, close, noisy = {}, {}, {}
    for q in range(12):
        for d in range(20):
            key = (f"q{q}", f"d{q}_{d}")
            g = int(rng.integers(0, 4))
            human[key] = g
            close[key] = int(np.clip(g + rng.choice([0, 0, 0, 1, -1]), 0, 3))
            noisy[key] = int(rng.integers(0, 4))
    return human, {"teacher": close, "student": noisy}


def test_report_ranks_the_closer_labeler_first_with_intervals_and_paired_difference():
    human, labelers = _labelers()
    report = build_report(labelers, human, reference="teacher", bootstrap=200, queries={"q0": "zero"})
    m = report["metrics"]
    assert report["pairs"] == 240 and report["queries"] == 12
    assert m["teacher"]["kappa_quadratic"] > 0.7 > 0.2 > m["student"]["kappa_quadratic"]
    assert m["teacher"]["pairwise_accuracy"] > m["student"]["pairwise_accuracy"]
    for name in ("teacher", "student"):
        for metric in ("kappa", "kappa_quadratic", "pairwise_accuracy", "ndcg@10"):
            lo, hi = report["intervals"][name][metric]
            assert lo <= m[name][metric] <= hi, (name, metric)
    diff = report["differences"]["student - teacher"]
    lo, hi = report["intervals"]["student - teacher"]["kappa"]
    assert diff["kappa"] == pytest.approx(m["student"]["kappa"] - m["teacher"]["kappa"])
    assert hi < 0  # the random labeler is worse on every resample of queries
    assert len(report["per_query"]) == 12
    assert report["per_query"][0]["query"] == "zero"


def test_report_files_are_written_and_html_is_self_contained(tmp_path):
    human, labelers = _labelers(1)
    report = build_report(labelers, human, reference="teacher", bootstrap=50)
    paths = write_report(report, tmp_path / "rep")
    for key in ("json", "markdown", "html", "calibration", "confusion:teacher", "confusion:student", "per_query"):
        assert paths[key].exists() and paths[key].stat().st_size > 0, key
    assert paths["calibration"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3  # two confusion matrices + calibration, inline
    assert 'src="http' not in page and "<script" not in page
    md = paths["markdown"].read_text()
    assert "student - teacher" in md and "| teacher |" in md
    rows = list(csv.DictReader(paths["per_query"].open()))
    assert len(rows) == 12 and "student:pairwise_accuracy" in rows[0]
    assert json.loads(paths["json"].read_text())["metrics"]["teacher"]["n"] == 240


def test_report_uses_only_pairs_every_labeler_graded():
    human, labelers = _labelers(2)
    labelers["student"] = {k: v for k, v in labelers["student"].items() if k[0] != "q0"}
    report = build_report(labelers, human, bootstrap=0)
    assert report["pairs"] == 220 and report["metrics"]["teacher"]["n"] == 220
    assert report["intervals"] == {} and report["differences"] == {}


def test_report_rejects_unknown_reference_and_disjoint_labels():
    human, labelers = _labelers(3)
    with pytest.raises(QrelkitError, match="reference"):
        build_report(labelers, human, reference="gpt-5")
    with pytest.raises(QrelkitError, match="share no"):
        build_report({"x": {("other", "d"): 1}}, human)
