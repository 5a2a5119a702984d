"""Stage what the GPU run (benchmarks/gpu_student.sh) needs, in pieces that fit the device tool's 64 MiB a call.

The GPU machine reaches no network and gets only the working tree plus carried folders, so everything travels:

    python benchmarks/gpu_prepare.py stage --data ../shared/benchmarks --base qwen2.5-coder-0.5b
        writes .gpu/data/ (the four benchmarks' files the experiment reads, ~25 MB), .gpu/wheels/ (the
        Python 3.12 wheels the GPU image lacks) and .gpu/weights/<alias>/part01.. (48 MB pieces of the GGUF
        plus manifest.json with its sha256), and prints the device calls to make, in order
    python benchmarks/gpu_prepare.py join .gpu/weights/<alias> CACHE
        (on the GPU machine) reassembles the GGUF where qrelkit looks for it, checking its sha256

.gpu/ is ignored by git.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
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
DATA_FILES = ("queries.jsonl", "passages.jsonl", "pairs/test-open.tsv", "pairs/test-heldout.tsv")
DATA_DIRS = ("qrels", "llm_labels/test")
BENCHMARKS = ("llmjudge-trecdl2023", "trecdl2019-passage", "trecdl2020-passage", "trecdl2021-passage")


def stage_data(data: Path, out: Path) -> None:
    for name in BENCHMARKS:
        for rel in DATA_FILES:
            (out / name / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(data / name / rel, out / name / rel)
        for rel in DATA_DIRS:
            shutil.copytree(data / name / rel, out / name / rel, dirs_exist_ok=True)


def stage_wheels(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd = [*base, "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out), *WHEELS]
    subprocess.run(cmd, check=True)


def split(gguf: Path, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    parts = 0
    with gguf.open("rb") as f:
        while chunk := f.read(PIECE):
            parts += 1
            (out / f"part{parts:02d}").write_bytes(chunk)
            h.update(chunk)
    manifest = {"filename": gguf.name, "sha256": h.hexdigest(), "parts": parts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return parts


def join(pieces: Path, cache: Path) -> Path:
    """Reassemble into CACHE/models/<filename> (where qrelkit's alias lookup finds it) and check the sha256."""
    from qrelkit.models import concatenate_verified

    manifest = json.loads((pieces / "manifest.json").read_text())
    parts = [pieces / f"part{i:02d}" for i in range(1, manifest["parts"] + 1)]
    return concatenate_verified(parts, cache / "models" / manifest["filename"], manifest["sha256"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stage", help="write .gpu/ here (data, wheels, weight pieces)")
    st.add_argument("--data", type=Path, default=Path("../shared/benchmarks"))
    st.add_argument("--base", default="qwen2.5-coder-0.5b", help="GGUF alias (see qrelkit.models) or path")
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
    gguf = resolve_gguf(args.base)
    weights = args.out / "weights" / args.base
    parts = split(gguf, weights)
    print("device calls, back to back (each ≤ 64 MiB; /tmp survives while the machine is warm):")
    data, wheels = args.out / "data", args.out / "wheels"
    print(f"  carry [{data}, {wheels}]: bash benchmarks/gpu_student.sh stash {data} {wheels}")
    for i in range(1, parts + 1):
        piece = f"{weights}/part{i:02d}"
        print(f"  carry [{piece}]: bash benchmarks/gpu_student.sh stash {piece} {weights}/manifest.json")
    print(f"  then: bash benchmarks/gpu_student.sh run {args.base}   (timeout_s 600)")


if __name__ == "__main__":
    main()
