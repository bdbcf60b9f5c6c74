#!/bin/bash
# The MRPC benchmark (README, "GPU check"): transformers' Trainer (fp32, bf16) beside finetune's (fp32, tf32, bf16)
# on one random-initialised bert-base-sized model, one batch order and one tokenisation; batch 8, one epoch, then
# eval on validation. Each variant is its own process under its own time limit (its log: $OUT/<variant>.txt), so a
# hang or crash fails that variant alone; the warm-ups' logs ($OUT/warmup_*.txt) end with how the GEMM families
# were tuned. The last line printed is one JSON object with every figure.
# Run on the device through ../shared/tools/gpu-pack.sh's run.sh:  bash .gpu/run.sh bash bench/gpu-mrpc.sh
# FINETUNE_BENCH_SMALL=1: a 2-layer hidden-128 model and 16 steps, to check the plumbing on a CPU.
set -u
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
# The 440 MB model stays out of $OUT, which comes back from the device
WORK=$(mktemp -d)
export FINETUNE_CACHE="${FINETUNE_CACHE:-$WORK/kernel-cache}"
# The timing callback reads no weights: AdamW may defer the embeddings' zero-gradient rows as with built-in callbacks
export FINETUNE_CUDA_DEFER_ROWS="${FINETUNE_CUDA_DEFER_ROWS:-1}"
SHARED=${FINETUNE_SHARED:-../shared}
[ -d "$SHARED" ] || SHARED=shared

timeout -k 10 60 node dist/bench/gpu_mrpc.js prepare "$WORK" > "$OUT/prepare.txt" 2>&1
echo "prepare: rc=$? $(tail -1 "$OUT/prepare.txt")"
# finetune compiles its kernels with NVRTC at their first use and caches them on disk (FINETUNE_CACHE), with the
# GEMM algorithms chosen for each shape family (timed among cuBLASLt's choices), once per machine: done here before
# the timed runs (about 30 s from cold on an H200), no variant's epoch includes it.
# Without a GPU there is nothing to compile. warm_up NAME PRECISION: one precision's, logged to $OUT/warmup_NAME.txt
warm_up() {
  nvidia-smi > /dev/null 2>&1 || return 0
  timeout -k 10 90 node dist/bench/gpu_profile.js once "$2" > "$OUT/warmup_$1.txt" 2>&1
}
for precision in fp32 tf32 bf16; do warm_up $precision $precision; done
statuses=()
variant() {
  local name=$1 limit=$2
  shift 2
  # bench/gpu-check.sh sets one deadline for the whole session: no variant may run past it
  if [ -n "${FINETUNE_DEADLINE:-}" ]; then
    local left=$((FINETUNE_DEADLINE - $(date +%s)))
    [ "$left" -lt "$limit" ] && limit=$left
    [ "$limit" -lt 1 ] && limit=1
  fi
  timeout -k 10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  statuses+=("$name=$rc")
  echo "$name: rc=$rc"
}
variant hf_fp32 120 python3 bench/gpu_mrpc.py "$WORK" "$SHARED/hub" fp32
variant ft_fp32 75 node dist/bench/gpu_mrpc.js train "$WORK" fp32
variant ft_bf16 75 node dist/bench/gpu_mrpc.js train "$WORK" bf16
variant ft_tf32 75 node dist/bench/gpu_mrpc.js train "$WORK" tf32
variant hf_bf16 120 python3 bench/gpu_mrpc.py "$WORK" "$SHARED/hub" bf16
# Not in the table: bf16 without CUDA graphs, to show what the graphs save
FINETUNE_CUDA_GRAPHS=0 variant ft_bf16_eager 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
# Nor bf16 with the embeddings' rows updated densely, to show what deferring them saves
FINETUNE_CUDA_DEFER_ROWS=0 variant ft_bf16_dense_rows 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
# Nor bf16 with a warp to each layer norm row, to show what the teams of warps save
FINETUNE_CUDA_ROW_TEAMS=0 variant ft_bf16_warp_rows 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
# Nor bf16 with the attention as the kernels for blocks of rows, to show what one kernel a head saves
FINETUNE_CUDA_ATTENTION_HEADS=0 variant ft_bf16_split_attention 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
# Nor bf16 with GEMM tuning kept to the workspace the first choices need, no split-K algorithms (by default they may
# take 4 MiB more a stream; its own warm-up first: the disk cache keeps the algorithms tuned under each setting
# apart), to show what they give and cost
FINETUNE_CUDA_GEMM_TUNE_WORKSPACE=0 warm_up bf16_no_tune_workspace bf16
FINETUNE_CUDA_GEMM_TUNE_WORKSPACE=0 variant ft_bf16_no_tune_workspace 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
# Nor bf16 with every weight gradient's GEMM on the side stream, and with none there (by default as timed per
# layer shape), to show what the choices give
FINETUNE_CUDA_SIDE_STREAM=1 variant ft_bf16_side_stream 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
FINETUNE_CUDA_SIDE_STREAM=0 variant ft_bf16_main_stream 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
# Nor bf16 with every pair on the side stream joined right after it, to show what deferring the joins gives
FINETUNE_CUDA_SIDE_STREAM=1 FINETUNE_CUDA_DEFER_SIDE_JOIN=0 variant ft_bf16_side_join_now 60 node dist/bench/gpu_mrpc.js train "$WORK" bf16
rm -rf "$WORK"
node dist/bench/gpu_mrpc.js report "$OUT" "${statuses[@]}" | tee "$OUT/summary.txt"
