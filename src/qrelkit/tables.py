"""Tables: the one Markdown writer behind every report, model card, headline and benchmark summary, and its HTML
twin for report.html."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are written with ``str`` (format numbers before), ``|`` inside a cell is
    escaped so that a query or model name cannot break the row.

    >>> print(markdown_table(["labeler", "κ"], [["student", "0.21"]]))
    | labeler | κ |
    |---|---|
    | student | 0.21 |
    """

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|---" * len(header) + "|", *(line(r) for r in rows)])


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The same table as HTML (cells escaped; the first column as row headers).

    >>> html_table(["labeler", "κ"], [["a<b", "0.21"]])
    '<table><tr><th>labeler</th><th>κ</th></tr><tr><th>a&lt;b</th><td>0.21</td></tr></table>'
    """
    from html import escape

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        f"<tr><th>{escape(str(r[0]))}</th>" + "".join(f"<td>{escape(str(c))}</td>" for c in r[1:]) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
