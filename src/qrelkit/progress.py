"""Progress bars for long stages (rich). ``QRELKIT_PROGRESS=0`` turns them off."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_enabled() -> bool:
    """Whether long work shows progress (``QRELKIT_PROGRESS=0`` turns every bar off)."""
    return os.environ.get("QRELKIT_PROGRESS", "1") != "0"


@contextmanager
def progress_bar(description: str, total: int | None, *, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n, info="")``: moves the bar by ``n`` and shows ``info`` (e.g. tokens and cost so far)."""
    if not enabled or not progress_enabled():
        yield lambda n, info="": None
        return
    # stderr, so that stdout carries only results; a short bar keeps the counts and times whole at 80 columns
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, transient=False, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int, info: str = "") -> None:
            bar.update(task, advance=n, info=info)

        yield advance
