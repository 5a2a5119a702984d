#!/usr/bin/env bash
# The causal (LoRA) student on one GPU: train on GPT-4o labels across the four TREC collections (2 folds by
# query), grade every test pair (open and held-out), report against humans and GPT-4o, time the labeling.
# Installs nothing from the network; everything it needs is staged by benchmarks/gpu_prepare.py.
#
#   bash benchmarks/gpu_student.sh stash PATH...   copy carried paths to /tmp/qrelkit-gpu (one device call each)
#   bash benchmarks/gpu_student.sh run ALIAS       on the GPU: wheels, weights (sha256-checked), experiment
#   bash benchmarks/gpu_student.sh twin            here, on CPU: the same path with SmolLM2-135M on 2 queries
#                                                  a benchmark, 12 pairs each (mechanics in minutes, not quality)
# Results: $OUT/results.tar.gz (benchmarks/results/<benchmark>/{causal-*.qrels,cross/}, cross-collection.*),
# $OUT/cross-collection.md and $OUT/steps.txt (seconds per step). To commit: unpack into
# benchmarks/results/gpu-causal/ and copy <benchmark>/causal-*.qrels into benchmarks/results/<benchmark>/.
set -euo pipefail
STASH=/tmp/qrelkit-gpu
OUT=${OUT:-/tmp/qrelkit-gpu-out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QRELKIT_PROGRESS=0 PYTHONUNBUFFERED=1
step() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"; }

recipe_of() {
  case "$1" in
    qwen2.5-coder-0.5b) echo causal-qwen0.5b ;;
    qwen2.5-coder-1.5b) echo causal-qwen1.5b ;;
    *) echo "no recipe for base $1" >&2; exit 2 ;;
  esac
}

experiment() {  # PYTHON DATA RESULTS RECIPE EXTRA...
  local py=$1 data=$2 results=$3 recipe=$4; shift 4
  "$py" -m qrelkit experiment --cross --student "$recipe" --data "$data" -o "$results" --no-stack \
    --bootstrap 500 "$@"
}

bench() {  # PYTHON DATA STUDENT DEVICE PAIRS RESULTS: a trained fold student labeling DL 2023 dev pairs
  "$1" -m qrelkit bench --on-device "$3" --device "$4" --pairs "$5" --benchmark "$2/llmjudge-trecdl2023" \
    -o "$6/bench-device"
}

pack() {  # RESULTS: qrels, reports and fold scores (not the adapters or checkpoints: too big to bring back)
  tar czf "$OUT/results.tar.gz" --exclude='*.student' --exclude='*.ckpt' -C "$1" .
  cp "$1/cross-collection.md" "$OUT/"
}

case "${1:-}" in
  stash)
    shift
    for p in "$@"; do mkdir -p "$STASH/$(dirname "$p")"; cp -r "$p" "$STASH/$(dirname "$p")/"; done
    du -sh "$STASH"
    ;;
  run)
    alias=${2:?usage: gpu_student.sh run ALIAS}
    recipe=$(recipe_of "$alias")
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
    step wheels python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
      "$STASH"/.gpu/wheels/*.whl
    export PYTHONPATH=$PWD/src:/tmp/site QRELKIT_CACHE=/tmp/qrelkit-cache
    step weights python3 benchmarks/gpu_prepare.py join "$STASH/.gpu/weights/$alias" "$QRELKIT_CACHE"
    results=/tmp/qrelkit-results
    step experiment experiment python3 "$STASH/.gpu/data" "$results" "$recipe" --device cuda
    step bench bench python3 "$STASH/.gpu/data" "$results/.cross-work/$recipe/fold0.student" cuda 4000 "$results"
    pack "$results"
    ;;
  twin)
    py=${PYTHON:-.venv/bin/python}
    results=${RESULTS:-/tmp/qrelkit-twin}
    rm -rf "$results"
    data=${DATA:-../shared/benchmarks}
    step experiment experiment "$py" "$data" "$results" causal-smollm2-smoke --max-queries 2 \
      --max-pairs-per-query 12 --device cpu
    step bench bench "$py" "$data" "$results/.cross-work/first2x12/causal-smollm2-smoke/fold0.student" cpu 32 \
      "$results"
    pack "$results"
    ;;
  *)
    sed -n "2,13p" "$0"; exit 2 ;;
esac
