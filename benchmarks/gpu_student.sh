#!/usr/bin/env bash
# Fine-tuned students on one GPU: train on GPT-4o labels across the four TREC collections (2 folds by query), grade
# every test pair (open and held-out), report against humans and GPT-4o, time the labeling on the device.
# Installs nothing from the network; everything it needs is staged by benchmarks/gpu_prepare.py.
#
#   bash benchmarks/gpu_student.sh stash PATH...   copy carried paths to /tmp/qrelkit-gpu (one device call each)
#   bash benchmarks/gpu_student.sh run RECIPE...   on the GPU: wheels, every staged base (sha256-checked), then
#                                                  each recipe in turn (results packed after each, so a run cut
#                                                  short keeps what finished), then all of them in one table
#   bash benchmarks/gpu_student.sh twin [RECIPE...] here, on CPU: the same path on 2 queries a benchmark, 12 pairs
#                                                  each (default: ce-minilm-smoke causal-smollm2-smoke); mechanics
#                                                  in minutes, not quality
# With SmolLM2 staged (gpu_prepare.py stage --base smollm2-135m), run first times `qrelkit synth` at volume on the
# GPU (hf: backend, batches of 256, $SYNTH_SEEDS seeds of DL 2019's passages, default 4096): $OUT/synth-volume.*;
# then `qrelkit judge` on 400 of those queries x 4 BM25 passages, one pair and 32 pairs a pass: $OUT/judge-volume-*
# Recipes: CROSS_STUDENTS in src/qrelkit/crossfold.py (e.g. ce-mpnet-syn3k-bce-all-stack25, causal-qwen0.5b).
# Stacked rows and -stack recipes need all-MiniLM-L6-v2 staged (the frozen companion); without it: --no-stack.
# Results: $OUT/results.tar.gz (benchmarks/results/<benchmark>/cross/, cross-collection.*, bench-device.*),
# $OUT/cross-collection.md and $OUT/steps.txt (seconds per step). To commit: unpack into
# benchmarks/results/gpu/ and copy <benchmark>/cross/*.qrels of the new students beside the CPU ones.
set -euo pipefail
STASH=/tmp/qrelkit-gpu
OUT=${OUT:-/tmp/qrelkit-gpu-out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QRELKIT_PROGRESS=0 PYTHONUNBUFFERED=1
step() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "$name $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"; }

experiment() {  # PYTHON DATA RESULTS STACK RECIPES... -- EXTRA...
  local py=$1 data=$2 results=$3 stack=$4; shift 4
  local recipes=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do recipes+=(--student "$1"); shift; done
  [ $# -gt 0 ] && shift
  "$py" -m qrelkit experiment --cross "${recipes[@]}" --data "$data" -o "$results" "$stack" "$@"
}

bench() {  # PYTHON DATA DEVICE PAIRS RESULTS RECIPES...: each recipe's fold-0 student labeling DL 2023 pairs
  local py=$1 data=$2 device=$3 pairs=$4 results=$5; shift 5
  local students=()
  for r in "$@"; do
    local s
    s=$(find "$results/.cross-work" -type d -path "*/$r/fold0.student" | head -1)
    [ -n "$s" ] && students+=(--on-device "$s")
  done
  [ ${#students[@]} -gt 0 ] || return 0
  "$py" -m qrelkit bench "${students[@]}" --device "$device" --pairs "$pairs" \
    --benchmark "$data/llmjudge-trecdl2023" -o "$results/bench-device"
}

synth_volume() {  # PYTHON DATA SEEDS BATCH DEVICE: synthetic queries in batches (hf: backend) over DL 2019's passages
  local py=$1 data=$2 seeds=$3 batch=$4 device=$5
  "$py" -m qrelkit ingest "$data/trecdl2019-passage/passages.jsonl" -o /tmp/qrelkit-synth-docs.parquet \
    --id-field pid > /dev/null
  local t0=$SECONDS
  "$py" -m qrelkit synth /tmp/qrelkit-synth-docs.parquet -o "$OUT/synth-volume.jsonl" --llm hf:smollm2-135m \
    --n-seeds "$seeds" --batch-size "$batch" --no-cache > "$OUT/synth-volume.json"
  echo "synth-volume $device: $seeds seeds, batch $batch, $((SECONDS - t0)) s: $(tr -d ' \n' < "$OUT/synth-volume.json")" \
    | tee -a "$OUT/steps.txt"
}

judge_volume() {  # PYTHON QUERIES K BATCH DEVICE: the synth step's first QUERIES queries, K BM25 passages each, judged
  # by SmolLM2 (hf: backend) one pair per forward pass and then BATCH pairs per pass; same grades expected
  local py=$1 queries=$2 k=$3 batch=$4 device=$5
  head -n "$queries" "$OUT/synth-volume.jsonl" > /tmp/qrelkit-judge-queries.jsonl
  "$py" -m qrelkit mine /tmp/qrelkit-judge-queries.jsonl /tmp/qrelkit-synth-docs.parquet \
    -o /tmp/qrelkit-judge-pairs.parquet --k "$k" > /dev/null
  for b in 1 "$batch"; do
    local t0=$SECONDS
    "$py" -m qrelkit judge /tmp/qrelkit-judge-pairs.parquet -o "/tmp/qrelkit-judge-b$b.qrels" --llm hf:smollm2-135m \
      --batch-size "$b" --no-cache > "$OUT/judge-volume-b$b.json"
    echo "judge-volume $device: batch $b, $((SECONDS - t0)) s: $(tr -d ' \n' < "$OUT/judge-volume-b$b.json")" \
      | tee -a "$OUT/steps.txt"
  done
  local verdict="grades differ (bf16)"
  cmp -s /tmp/qrelkit-judge-b1.qrels "/tmp/qrelkit-judge-b$batch.qrels" && verdict="same grades"
  echo "judge-volume: $verdict" | tee -a "$OUT/steps.txt"
}

pack() {  # RESULTS: qrels, reports and fold scores (not the students or checkpoints: too big to bring back)
  [ -d "$1" ] || return 0
  tar czf "$OUT/results.tar.gz" --exclude='*.student' --exclude='*.ckpt' --exclude='stage1' -C "$1" .
  [ -f "$1/cross-collection.md" ] && cp "$1/cross-collection.md" "$OUT/"
  return 0
}

all_recipes() {  # PYTHON DATA RESULTS STACK DEVICE PAIRS EXTRA... -- RECIPES...: each alone, then together
  local py=$1 data=$2 results=$3 stack=$4 device=$5 pairs=$6; shift 6
  local extra=()
  while [ "$1" != -- ]; do extra+=("$1"); shift; done
  shift
  for r in "$@"; do
    step "experiment:$r" experiment "$py" "$data" "$results" "$stack" "$r" -- --device "$device" "${extra[@]}" || true
    pack "$results"
  done
  step "experiment:all" experiment "$py" "$data" "$results" "$stack" "$@" -- --device "$device" "${extra[@]}"
  step bench bench "$py" "$data" "$device" "$pairs" "$results" "$@" || true
  pack "$results"
}

case "${1:-}" in
  stash)
    shift
    for p in "$@"; do
      mkdir -p "$STASH/$(dirname "$p")"
      case "$p" in
        *.tar.gz) tar xzf "$p" -C "$STASH/$(dirname "$p")" ;;  # data.tar.gz -> $STASH/.gpu/data/
        *) cp -r "$p" "$STASH/$(dirname "$p")/" ;;
      esac
    done
    du -sh "$STASH"
    ;;
  run)
    shift
    [ $# -gt 0 ] || { echo "usage: gpu_student.sh run RECIPE..." >&2; exit 2; }
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
    step wheels python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
      "$STASH"/.gpu/wheels/*.whl
    export PYTHONPATH=$PWD/src:/tmp/site QRELKIT_CACHE=/tmp/qrelkit-cache
    for w in "$STASH"/.gpu/weights/*/; do step "join:$(basename "$w")" python3 benchmarks/gpu_prepare.py join "$w" \
      "$QRELKIT_CACHE"; done
    stack=--no-stack
    [ -f "$QRELKIT_CACHE/models/all-MiniLM-L6-v2/config.json" ] && stack=--stack
    # with SmolLM2 staged (stage --base smollm2-135m: 2 more calls), time synth at volume on the GPU first
    [ -f "$QRELKIT_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" ] && { synth_volume python3 "$STASH/.gpu/data" \
      "${SYNTH_SEEDS:-4096}" 256 cuda && judge_volume python3 400 4 32 cuda || true; }
    all_recipes python3 "$STASH/.gpu/data" /tmp/qrelkit-results "$stack" cuda 4000 -- "$@"
    ;;
  twin)
    shift
    [ $# -gt 0 ] || set -- ce-minilm-smoke causal-smollm2-smoke
    py=${PYTHON:-.venv/bin/python}
    results=${RESULTS:-/tmp/qrelkit-twin}
    rm -rf "$results"
    synth_volume "$py" "${DATA:-../shared/benchmarks}" 8 4 cpu
    judge_volume "$py" 4 2 4 cpu
    all_recipes "$py" "${DATA:-../shared/benchmarks}" "$results" --stack cpu 32 --max-queries 2 \
      --max-pairs-per-query 12 -- "$@"
    ;;
  *)
    sed -n "2,20p" "$0"; exit 2 ;;
esac
