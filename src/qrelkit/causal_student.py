"""Deprecated alias of :mod:`qrelkit.students.causal` (the causal LoRA student): old imports keep working."""

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from .students import causal

    warnings.warn("qrelkit.causal_student moved to qrelkit.students.causal", DeprecationWarning, stacklevel=2)
    return getattr(causal, name)
