"""Markdown tables: the one writer behind every report, model card, headline and benchmark summary."""

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
