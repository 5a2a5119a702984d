"""Stage what the GPU run (benchmarks/gpu_student.sh) needs, in pieces that fit the device tool's 64 MiB a call.

The GPU machine reaches no network and gets only the working tree plus carried paths, 64 MiB a call in all, so
everything travels, in as few calls as the working tree leaves room for:

    python benchmarks/gpu_prepare.py aside
        moves the committed result qrels (about 46 MB of the working tree's 52) to .gpu/aside/ so that each call
        has room for a 48 MB piece; `back` puts them back (do it before committing: git sees them deleted meanwhile)
    python benchmarks/gpu_prepare.py stage --base all-MiniLM-L6-v2 --base all-mpnet-base-v2
        writes .gpu/data.tar.gz (the four benchmarks' files the experiment reads and the synthetic queries; also
        unpacked in .gpu/data/ for the CPU twin), .gpu/wheels/ (the Python 3.12 wheels the GPU image lacks) and
        .gpu/weights/<base>/part01.. (pieces as large as the working tree leaves room for, at most 48 MiB, plus
        manifest.json with the sha256 of the whole) for each base, and prints the device calls to make, in order.
        A base is a GGUF alias (qwen2.5-coder-0.5b: the file as is) or an encoder (all-MiniLM-L6-v2,
        all-mpnet-base-v2: its folder as a tar, weights in fp16 to halve the calls: 1 and 5 pieces)
    python benchmarks/gpu_prepare.py join .gpu/weights/<base> CACHE
        (on the GPU machine) reassembles a base where qrelkit looks for it (CACHE/models/), checking its sha256;
        an encoder's weights go back to fp32 (training starts from fp32 weights, as from the package)

.gpu/ is ignored by git.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MiB = 1024 * 1024
LIMIT = 64 * MiB  # what one device call takes: the working tree and the carried paths together
MARGIN = 2 * MiB  # room for files the session writes between staging and the calls
PIECE = 48 * MiB  # at most (fewer, larger pieces: fewer calls)
REPO = Path(__file__).resolve().parents[1]
ASIDE = Path(".gpu") / "aside"  # in the repository (ignored by git)
# what the GPU image (Python 3.12, torch, transformers, peft, accelerate, pandas, pyarrow, typer, rich...) lacks
WHEELS = (
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "krippendorff==0.9.0",
    "bm25s==0.3.16",
    "gguf==0.19.0",
    "datasets==5.2.0",
    "dill==0.4.1",
    "multiprocess==0.70.19",
    "ir-measures==0.4.3",
    "pytrec-eval-terrier==0.5.11",
)
# the GPU image's own are older (sentence-transformers 6.0.1, transformers 5.17): carry the versions the tests pin
SAME_AS_HERE = ("transformers", "sentence-transformers", "peft")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# what load_benchmark reads (dev: other queries, in llmjudge-trecdl2023 only: its dev students and the bench pairs)
DATA_FILES = ("queries.jsonl", "passages.jsonl", "pairs/test-open.tsv", "pairs/test-heldout.tsv", "pairs/dev.tsv")
DATA_DIRS = ("qrels", "llm_labels/test", "llm_labels/dev")
BENCHMARKS = ("llmjudge-trecdl2023", "trecdl2019-passage", "trecdl2020-passage", "trecdl2021-passage")
SYNTHETIC = "synthetic-queries/smollm2-135m.jsonl.gz"  # the cross-encoder recipes' stage 1
ENCODERS = ("all-MiniLM-L6-v2", "all-mpnet-base-v2")
WEIGHTS = "model.safetensors"


def stage_data(data: Path, out: Path) -> None:
    for name in BENCHMARKS:
        for rel in DATA_FILES:
            if (data / name / rel).exists():
                (out / name / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(data / name / rel, out / name / rel)
        for rel in DATA_DIRS:
            if (data / name / rel).exists():
                shutil.copytree(data / name / rel, out / name / rel, dirs_exist_ok=True)
    (out / SYNTHETIC).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(data / SYNTHETIC, out / SYNTHETIC)


def pinned(names: tuple[str, ...], pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The ``name==version`` pins of ``names`` in pyproject.toml (dependencies and extras)."""
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    pins = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    found = {pin.split("==")[0]: pin for pin in pins if "==" in pin}
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"pyproject.toml pins no {', '.join(missing)}")
    return [found[n] for n in names]


def stage_wheels(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    wheels = [*WHEELS, *pinned(SAME_AS_HERE)]
    cmd = [*base, "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out), *wheels]
    subprocess.run(cmd, check=True)


def split(blob: Path, out: Path, *, piece: int = PIECE, folder: str | None = None) -> int:
    """``blob`` in ``piece``-sized parts under ``out`` with manifest.json (its name, sha256, part count, and for a
    tarred model folder the folder's name)."""
    out.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    parts = 0
    with blob.open("rb") as f:
        while chunk := f.read(piece):
            parts += 1
            (out / f"part{parts:02d}").write_bytes(chunk)
            h.update(chunk)
    manifest = {"filename": blob.name, "sha256": h.hexdigest(), "parts": parts}
    if folder:
        manifest["folder"] = folder
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return parts


def tree_files(root: Path = REPO) -> list[Path]:
    """What every device call sends besides its carry: tracked files and untracked ones git does not ignore."""
    cmd = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(cmd, cwd=root, capture_output=True, check=True).stdout.decode()
    return [root / f for f in listed.split("\0") if f and (root / f).is_file()]


def tree_bytes(root: Path = REPO) -> int:
    return sum(f.stat().st_size for f in tree_files(root))


def piece_size(tree: int) -> int:
    """The largest piece (whole MiB, at most PIECE) that travels beside a working tree of ``tree`` bytes."""
    room = (LIMIT - tree - MARGIN) // MiB * MiB
    if room < 8 * MiB:
        raise SystemExit(f"the working tree ({tree / MiB:.1f} MiB) leaves under 8 MiB a call: run `aside` first")
    return min(room, PIECE)


def aside(root: Path = REPO) -> list[Path]:
    """Move the committed result qrels to .gpu/aside/ (same relative paths): the bulk of the working tree."""
    moved = []
    for f in tree_files(root):
        rel = f.relative_to(root)
        if rel.parts[:2] == ("benchmarks", "results") and f.suffix == ".qrels":
            (root / ASIDE / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(f, root / ASIDE / rel)
            moved.append(rel)
    return moved


def back(root: Path = REPO) -> int:
    """Put what :func:`aside` moved back where it was."""
    store = root / ASIDE
    moved = [f for f in store.rglob("*") if f.is_file()] if store.exists() else []
    for f in moved:
        target = root / f.relative_to(store)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(f, target)
    shutil.rmtree(store, ignore_errors=True)
    return len(moved)


def stage_encoder(name: str, out: Path, piece: int = PIECE) -> int:
    """The encoder's folder as one tar, its weights cast to fp16 (half the device calls), split into ``out``."""
    from qrelkit.models import resolve_encoder

    src = Path(resolve_encoder(name))
    if not (src / WEIGHTS).exists():
        raise SystemExit(f"{name}: no local {WEIGHTS} at {src} (install its package first)")
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / WEIGHTS
        _cast_weights(src / WEIGHTS, half, "float16")
        archive = Path(tmp) / f"{name}.tar"
        with tarfile.open(archive, "w") as tar:
            for f in sorted(src.rglob("*")):
                if f.is_file() and f.name not in (WEIGHTS, "README.md"):
                    tar.add(f, arcname=str(f.relative_to(src)))
            tar.add(half, arcname=WEIGHTS)
        return split(archive, out, piece=piece, folder=name)


def _cast_weights(src: Path, dst: Path, dtype: str) -> None:
    """The safetensors file ``src`` with its floating-point tensors cast to ``dtype`` ("float16", "float32")."""
    import torch
    from safetensors.torch import load_file, save_file

    cast = getattr(torch, dtype)
    tensors = {k: v.to(cast) if v.is_floating_point() else v for k, v in load_file(src).items()}
    save_file(tensors, dst, {"format": "pt"})


def join(pieces: Path, cache: Path) -> Path:
    """Reassemble into CACHE/models/ (where qrelkit's alias lookup finds it) and check the sha256; a tarred encoder
    folder is unpacked there with its weights cast back to fp32."""
    from qrelkit.io import folder_replaced
    from qrelkit.models import concatenate_verified

    manifest = json.loads((pieces / "manifest.json").read_text())
    parts = [pieces / f"part{i:02d}" for i in range(1, manifest["parts"] + 1)]
    target = concatenate_verified(parts, cache / "models" / manifest["filename"], manifest["sha256"])
    if "folder" not in manifest:
        return target
    folder = cache / "models" / manifest["folder"]
    with tarfile.open(target) as tar, folder_replaced(folder) as tmp:
        tar.extractall(tmp, filter="data")
        _cast_weights(tmp / WEIGHTS, tmp / WEIGHTS, "float32")
    target.unlink()
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("aside", help="move the committed result qrels out of the working tree (to .gpu/aside/)")
    sub.add_parser("back", help="put them back")
    st = sub.add_parser("stage", help="write .gpu/ here (data, wheels, weight pieces)")
    st.add_argument("--data", type=Path, default=Path("../shared/benchmarks"))
    st.add_argument(
        "--base",
        action="append",
        help=f"GGUF alias (see qrelkit.models) or path, or an encoder ({', '.join(ENCODERS)}); repeatable "
        "(default: both encoders)",
    )
    st.add_argument("--out", type=Path, default=Path(".gpu"))
    jn = sub.add_parser("join", help="reassemble weight pieces (on the GPU machine)")
    jn.add_argument("pieces", type=Path)
    jn.add_argument("cache", type=Path)
    args = ap.parse_args()
    if args.cmd == "join":
        print(join(args.pieces, args.cache))
    elif args.cmd == "aside":
        moved = aside()
        now = tree_bytes() / MiB
        print(f"{len(moved)} result qrels moved to {REPO / ASIDE}; the working tree is now {now:.1f} MiB")
    elif args.cmd == "back":
        print(f"{back()} files put back")
    else:
        stage(args.data, args.out, args.base or list(ENCODERS))


def _check_first_call(tree: int, *files: Path) -> None:
    """Refuse when ``files`` (the data, then the data and wheels) do not travel beside the working tree."""
    size = sum(f.stat().st_size for f in files)
    if tree + size + MARGIN > LIMIT:
        raise SystemExit(
            f"data and wheels ({size / MiB:.1f} MiB) do not fit beside the working tree "
            f"({tree / MiB:.1f} MiB) in one call: run `aside` first"
        )


def stage(data_root: Path, out: Path, bases: list[str]) -> None:
    from qrelkit.models import resolve_gguf

    tree = tree_bytes()
    piece = piece_size(tree)
    data, wheels = out / "data", out / "wheels"
    shutil.rmtree(data, ignore_errors=True)
    stage_data(data_root, data)
    with tarfile.open(out / "data.tar.gz", "w:gz") as tar:
        tar.add(data, arcname="data")
    _check_first_call(tree, out / "data.tar.gz")  # before the download, which cannot make it fit
    stage_wheels(wheels)
    _check_first_call(tree, out / "data.tar.gz", *wheels.iterdir())
    calls = [f"carry [{out}/data.tar.gz, {wheels}]: bash benchmarks/gpu_student.sh stash {out}/data.tar.gz {wheels}"]
    for base in bases:
        weights = out / "weights" / base
        shutil.rmtree(weights, ignore_errors=True)
        if base in ENCODERS:
            parts = stage_encoder(base, weights, piece)
        else:
            parts = split(resolve_gguf(base), weights, piece=piece)
        for i in range(1, parts + 1):
            p = f"{weights}/part{i:02d}"
            calls.append(
                f"carry [{p}, {weights}/manifest.json]: bash benchmarks/gpu_student.sh stash {p} "
                f"{weights}/manifest.json"
            )
    calls.append("bash benchmarks/gpu_student.sh run RECIPE... (timeout_s 600; recipes: crossfold.CROSS_STUDENTS)")
    print(
        f"working tree {tree / MiB:.1f} MiB, pieces of {piece // MiB} MiB; {len(calls)} device calls, back to back "
        "(/tmp survives there while the machine is warm):"
    )
    for i, call in enumerate(calls, 1):
        print(f"  {i}. {call}")


if __name__ == "__main__":
    main()
