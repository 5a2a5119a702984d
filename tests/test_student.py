from __future__ import annotations

import numpy as np
import pytest

from qrelkit.distill import distill
from qrelkit.records import Pair
from qrelkit.student import Student, distribution_thresholds

TOPICS = {
    "vpn": ("vpn client download", "The VPN client 5.2 can be downloaded from the IT portal under Software."),
    "pay": ("when is payroll paid", "Payroll is paid on the 25th of every month by bank transfer."),
    "leave": ("annual leave allowance", "Each employee has 25 days of annual leave per year."),
    "print": ("add network printer", "To add a network printer open settings and enter its IP address."),
    "phish": ("report phishing email", "Report phishing emails with the report button in the mail client."),
    "park": ("staff parking permit", "Parking permits for staff are issued by the facilities desk."),
    "badge": ("lost id badge", "If you lose your ID badge, contact security to have it deactivated."),
    "wifi": ("guest wifi password", "The guest wifi password changes weekly and is posted at reception."),
}


def topic_pairs(names):
    """Each query with its own document (teacher grade 3) and the others' (grade 0)."""
    pairs, teacher = [], {}
    for q in names:
        for d in TOPICS:
            pairs.append(Pair(qid=q, query=TOPICS[q][0], doc_id=d, text=TOPICS[d][1]))
            teacher[(q, d)] = 3 if q == d else 0
    return pairs, teacher


@pytest.mark.slow
def test_student_learns_teacher_and_generalises_to_unseen_queries(tmp_path):
    names = list(TOPICS)
    train, teacher = topic_pairs(names[:5])
    student = distill(train, teacher, card={"teacher": "test"})
    test, truth = topic_pairs(names[5:])
    scores, grades = student.predict_pairs(test)
    gold = np.array([truth[(p.qid, p.doc_id)] for p in test])
    assert scores[gold == 3].min() > scores[gold == 0].max(), "own documents must outrank the others"
    assert (grades[gold == 3] >= 2).all()
    assert (grades[gold == 0] == 0).mean() > 0.8
    student.save(tmp_path / "model")
    again = Student.load(tmp_path / "model")
    np.testing.assert_allclose(again.predict_pairs(test)[0], scores, rtol=1e-5)
    assert "teacher" in (tmp_path / "model" / "README.md").read_text()


def test_distribution_thresholds_match_teacher_shares():
    scores = np.linspace(0, 3, 100)
    grades = np.array([0] * 50 + [1] * 25 + [2] * 15 + [3] * 10)
    t = distribution_thresholds(scores, grades)
    cut = np.searchsorted(t, scores, side="right")
    assert [int((cut == g).sum()) for g in range(4)] == [50, 25, 15, 10]
