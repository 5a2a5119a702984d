"""Deprecated alias of :mod:`qrelkit.students.onnx` (ONNX export and runtimes): old imports keep working."""

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from .students import onnx

    warnings.warn("qrelkit.onnx_runtime moved to qrelkit.students.onnx", DeprecationWarning, stacklevel=2)
    return getattr(onnx, name)
