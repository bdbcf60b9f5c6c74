#!/bin/bash
# The GPU session's one prepared script (README, "GPU check"): environment, the CUDA and engine tests, then the
# Trainer timing of finetune beside transformers on the same GPU. Everything lands in $OUT (the device tool's
# output folder), one file per part; each part has its own time limit so that one hang cannot eat the session.
# Run on the device through ../shared/tools/gpu-pack.sh's run.sh:  bash .gpu/run.sh bash bench/gpu-check.sh
set -u
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export FINETUNE_CACHE="$OUT/kernel-cache"
{
  nvidia-smi
  node dist/src/cli/main.js env
} > "$OUT/env.txt" 2>&1
echo "env: rc=$?"
timeout 300 node --test --test-concurrency=1 --test-reporter=spec dist/test/cuda/ dist/test/engine/ > "$OUT/tests.txt" 2>&1
echo "tests: rc=$? ($(grep -E '^ℹ (pass|fail|skipped)' "$OUT/tests.txt" | tr '\n' ' '))"
timeout 150 node dist/bench/gpu_train.js > "$OUT/finetune_train.txt" 2>&1
echo "finetune train: rc=$? $(tail -1 "$OUT/finetune_train.txt")"
SHARED=${FINETUNE_SHARED:-../shared}
[ -d "$SHARED" ] || SHARED=shared
timeout 150 python3 bench/gpu_baseline.py "$SHARED/hub" > "$OUT/transformers_train.txt" 2>&1
echo "transformers train: rc=$? $(tail -1 "$OUT/transformers_train.txt")"
rm -rf "$FINETUNE_CACHE"
