"""Stage what the GPU run (benchmarks/gpu_student.sh) needs, in pieces that fit the device tool's 64 MiB a call.

The GPU machine reaches no network and gets only the working tree plus carried folders, so everything travels:

    python benchmarks/gpu_prepare.py stage --base all-MiniLM-L6-v2 --base all-mpnet-base-v2
        writes .gpu/data/ (the four benchmarks' files the experiment reads and the synthetic queries, ~25 MB),
        .gpu/wheels/ (the Python 3.12 wheels the GPU image lacks) and .gpu/weights/<base>/part01.. (48 MB pieces
        plus manifest.json with the sha256 of the whole) for each base, and prints the device calls to make, in
        order. A base is a GGUF alias (qwen2.5-coder-0.5b: the file as is) or an encoder (all-MiniLM-L6-v2,
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

PIECE = 48 * 1024 * 1024
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


def stage_wheels(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd = [*base, "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out), *WHEELS]
    subprocess.run(cmd, check=True)


def split(blob: Path, out: Path, *, folder: str | None = None) -> int:
    """``blob`` in PIECE-sized parts under ``out`` with manifest.json (its name, sha256, part count, and for a
    tarred model folder the folder's name)."""
    out.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    parts = 0
    with blob.open("rb") as f:
        while chunk := f.read(PIECE):
            parts += 1
            (out / f"part{parts:02d}").write_bytes(chunk)
            h.update(chunk)
    manifest = {"filename": blob.name, "sha256": h.hexdigest(), "parts": parts}
    if folder:
        manifest["folder"] = folder
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return parts


def stage_encoder(name: str, out: Path) -> int:
    """The encoder's folder as one tar, its weights cast to fp16 (half the device calls), split into ``out``."""
    from safetensors.torch import load_file, save_file

    from qrelkit.models import resolve_encoder

    src = Path(resolve_encoder(name))
    if not (src / WEIGHTS).exists():
        raise SystemExit(f"{name}: no local {WEIGHTS} at {src} (install its package first)")
    with tempfile.TemporaryDirectory() as tmp:
        half = Path(tmp) / WEIGHTS
        tensors = load_file(src / WEIGHTS)
        save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, half, {"format": "pt"})
        archive = Path(tmp) / f"{name}.tar"
        with tarfile.open(archive, "w") as tar:
            for f in sorted(src.rglob("*")):
                if f.is_file() and f.name not in (WEIGHTS, "README.md"):
                    tar.add(f, arcname=str(f.relative_to(src)))
            tar.add(half, arcname=WEIGHTS)
        return split(archive, out, folder=name)


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
    from safetensors.torch import load_file, save_file

    folder = cache / "models" / manifest["folder"]
    with tarfile.open(target) as tar, folder_replaced(folder) as tmp:
        tar.extractall(tmp, filter="data")
        tensors = load_file(tmp / WEIGHTS)
        save_file(
            {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, tmp / WEIGHTS, {"format": "pt"}
        )
    target.unlink()
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
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
        return
    from qrelkit.models import resolve_gguf

    stage_data(args.data, args.out / "data")
    stage_wheels(args.out / "wheels")
    data, wheels = args.out / "data", args.out / "wheels"
    print("device calls, back to back (each ≤ 64 MiB; /tmp survives while the machine is warm):")
    print(f"  carry [{data}, {wheels}]: bash benchmarks/gpu_student.sh stash {data} {wheels}")
    for base in args.base or ENCODERS:
        weights = args.out / "weights" / base
        shutil.rmtree(weights, ignore_errors=True)
        parts = stage_encoder(base, weights) if base in ENCODERS else split(resolve_gguf(base), weights)
        for i in range(1, parts + 1):
            piece = f"{weights}/part{i:02d}"
            print(f"  carry [{piece}]: bash benchmarks/gpu_student.sh stash {piece} {weights}/manifest.json")
    print("  then: bash benchmarks/gpu_student.sh run RECIPE... (timeout_s 600; recipes: crossfold.CROSS_STUDENTS)")


if __name__ == "__main__":
    main()
