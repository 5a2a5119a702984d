"""User-facing errors: one clear line naming the file, line and field, never a traceback."""

from __future__ import annotations

from pathlib import Path


class QrelkitError(Exception):
    """An error caused by the user's input or setup; the CLI prints it as one line and exits 2."""


class InputError(QrelkitError):
    """Bad input data: names the file and, where known, the line and field."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None):
        where = str(path)
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f" [{field}]"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.message = message
        self.line = line
        self.field = field


class EmptyInput(InputError):
    """An input file holding nothing to work on: every command says it the same way."""

    def __init__(self, path: str | Path, what: str):
        super().__init__(path, f"empty input: no {what}")
