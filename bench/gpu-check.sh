#!/bin/bash
# The GPU session's one prepared script (README, "GPU check"): environment, the tests that use the GPU, then the
# MRPC benchmark (bench/gpu-mrpc.sh). Everything lands in $OUT (the device tool's output folder, which returns at
# most 8 files): env.txt (and, at its end, Python's huggingface_hub against `finetune hub serve`), tests.txt, mrpc.txt
# (every benchmark variant's log), summary.txt (the benchmark's table and JSON line), profile.txt (a step's
# parts timed in finetune and PyTorch), ncu_ft.csv / ncu_torch.csv (per-kernel times of one step) and
# ncu_detail.csv (Nsight Compute's sections for the kernels that take longest beside PyTorch's). One deadline bounds the whole run below the tool's 10-minute limit; each part also has its
# own time limit, so that one hang cannot eat the session.
# Run on the device through ../shared/tools/gpu-pack.sh's run.sh:  bash .gpu/run.sh bash bench/gpu-check.sh
set -u
export OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export FINETUNE_DEADLINE=$(($(date +%s) + ${FINETUNE_CHECK_SECONDS:-560}))
export FINETUNE_CACHE=$(mktemp -d)
{
  nvidia-smi
  node dist/src/cli/main.js env
} > "$OUT/env.txt" 2>&1
echo "env: rc=$?"
# The GPU tests, and the CPU suites whose Trainer and Accelerator pick the GPU when there is one
timeout 150 node --test --test-concurrency=1 --test-reporter=spec dist/test/cuda/ dist/test/amp/ dist/test/accelerate/ \
  dist/test/training/trainer_mixed_precision.test.js > "$OUT/tests.txt" 2>&1
echo "tests: rc=$? ($(grep -E '^ℹ (pass|fail|skipped)' "$OUT/tests.txt" | tr '\n' ' '))"
# Python's huggingface_hub downloading from `finetune hub serve` (the GPU machine has Python; ours do not)
SHARED=${FINETUNE_SHARED:-../shared}
[ -d "$SHARED" ] || SHARED=shared
node dist/src/cli/main.js hub serve "$SHARED/hub" --port 18080 >> "$OUT/env.txt" 2>&1 &
hub_pid=$!
sleep 2
HF_ENDPOINT=http://127.0.0.1:18080 HF_HOME=$(mktemp -d) timeout 60 python3 -c "
from huggingface_hub import hf_hub_download
print(hf_hub_download('bert-base-uncased', 'config.json'))
print(hf_hub_download('nyu-mll/glue', 'mrpc/train-00000-of-00001.parquet', repo_type='dataset'))
print(hf_hub_download('glue', 'mrpc/validation-00000-of-00001.parquet', repo_type='dataset'))" >> "$OUT/env.txt" 2>&1
echo "hub: rc=$? $(tail -1 "$OUT/env.txt")"
kill "$hub_pid" 2>/dev/null
MRPC_OUT=$(mktemp -d)
OUT="$MRPC_OUT" bash bench/gpu-mrpc.sh > /dev/null 2>&1
for f in "$MRPC_OUT"/*.txt; do [ "$(basename "$f")" = summary.txt ] || { echo "==== $(basename "$f")"; cat "$f"; }; done > "$OUT/mrpc.txt"
cp "$MRPC_OUT/summary.txt" "$OUT/summary.txt" 2>/dev/null
echo "mrpc: $(tail -1 "$OUT/summary.txt" 2>/dev/null)"
# Where a step's time goes, finetune beside PyTorch (bench/gpu_profile.ts, bench/gpu_profile.py), in the time left
for side in "node dist/bench/gpu_profile.js" "python3 bench/gpu_profile.py"; do
  left=$((FINETUNE_DEADLINE - $(date +%s)))
  [ "$left" -gt 20 ] || break
  [ "$left" -gt 90 ] && left=90
  echo "==== $side" >> "$OUT/profile.txt"
  timeout -k 5 "$left" $side >> "$OUT/profile.txt" 2>&1
  echo "profile ($side): rc=$? $(tail -1 "$OUT/profile.txt")"
done
# Per-kernel times of one step (bench/gpu-ncu.sh), if a minute and a half is left
[ $((FINETUNE_DEADLINE - $(date +%s))) -gt 90 ] && timeout -k 5 $((FINETUNE_DEADLINE - $(date +%s))) bash bench/gpu-ncu.sh
# Then, if a minute and a half is still left, where the second update's time goes in the kernels slowest beside
# PyTorch's: the attention's whole-head forward and backward (12 a layer's each an update; taken without timing
# them against the kernels for blocks of rows, which the profiler's serialised launches would make meaningless), the
# top layer's bias-gradient column sums with GELU' (3072 columns; an update launches 14, the classifier's and the
# pooler's first), two dropout_add_layer_norm forwards, two layer norm backwards (dx with dw / db, one launch each),
# as BERT's 8 x 64 rows take them: a team of warps a row
[ $((FINETUNE_DEADLINE - $(date +%s))) -gt 90 ] && FINETUNE_CUDA_ATTENTION_HEADS=1 \
  FINETUNE_NCU_DETAIL="ft_attention_backward_head_mma:12:1 ft_attention_forward_head_mma:12:1 ft_cast_column_sums:16:1 ft_dropout_add_layer_norm_team:24:2 ft_layer_norm_backward_team:25:2" \
  timeout -k 5 $((FINETUNE_DEADLINE - $(date +%s))) bash bench/gpu-ncu.sh
rm -rf "$FINETUNE_CACHE" "$MRPC_OUT"
