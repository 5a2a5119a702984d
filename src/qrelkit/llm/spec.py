"""The model-string grammar, parsed in one place: which backend, which model, local or remote.

gguf:PATH_OR_ALIAS        llama-cpp-python in process        (local)
hf:PATH_OR_NAME           transformers in process            (local)
openai:MODEL              OpenAI                             (remote)
azure:DEPLOYMENT          Azure OpenAI                       (remote)
http(s)://HOST/v1#MODEL   any OpenAI-compatible server       (remote)
ALIAS                     llama.cpp when installed, else transformers (local)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import QrelkitError

BACKENDS = ("gguf", "hf", "openai", "azure", "http")


@dataclass(frozen=True)
class ModelSpec:
    backend: str  # one of BACKENDS
    model: str  # path, alias, hub name, deployment or the server's model name
    base_url: str = ""  # http backend only

    @property
    def local(self) -> bool:
        """Runs in this process (no per-token price, one call at a time)."""
        return self.backend in ("gguf", "hf")


def parse_spec(spec: str) -> ModelSpec:
    """A model string as a :class:`ModelSpec`, or a clear error. A bare alias resolves to ``gguf`` when
    llama-cpp-python is installed, else to ``hf``."""
    for prefix in ("gguf", "hf", "openai", "azure"):
        if spec.startswith(prefix + ":"):
            return ModelSpec(prefix, spec.removeprefix(prefix + ":"))
    if spec.startswith(("http://", "https://")):
        base_url, sep, model = spec.partition("#")
        if not sep or not model:
            raise QrelkitError(f"{spec!r}: name the model after '#', e.g. http://localhost:8000/v1#Qwen2.5-7B")
        return ModelSpec("http", model, base_url)
    if ":" in spec.split("/")[0]:
        raise QrelkitError(f"unknown model backend in {spec!r} (use gguf:, hf:, openai:, azure: or http://)")
    return ModelSpec("gguf" if importlib.util.find_spec("llama_cpp") is not None else "hf", spec)
