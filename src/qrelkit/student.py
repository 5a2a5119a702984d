"""Deprecated alias of :mod:`qrelkit.students.encoder` (the frozen student): old imports keep working."""

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from .students import encoder

    warnings.warn("qrelkit.student moved to qrelkit.students.encoder", DeprecationWarning, stacklevel=2)
    return getattr(encoder, name)
