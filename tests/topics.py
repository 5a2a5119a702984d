"""Eight enterprise topics, each a query and its own document: a toy set where relevance is unambiguous."""

from __future__ import annotations

from qrelkit.records import Pair

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
