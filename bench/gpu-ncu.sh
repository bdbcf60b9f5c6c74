#!/bin/bash
# Per-kernel GPU time of bert-base bf16 training updates (batch 8 x 64; two, bench/ncu_summary.py reports the second), finetune's and PyTorch's, from Nsight
# Compute (one metric, gpu__time_duration, clocks left alone): $OUT/ncu_ft.csv and $OUT/ncu_torch.csv, one row per
# kernel launch; or, with FINETUNE_NCU_DETAIL (below), a closer look at some of finetune's kernels. Run on the device through ../shared/tools/gpu-pack.sh's run.sh:  bash .gpu/run.sh bash bench/gpu-ncu.sh
set -u
OUT=${OUT:-$(mktemp -d)}
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "ncu not found"; exit 1; }
export FINETUNE_CACHE=${FINETUNE_CACHE:-$(mktemp -d)}
node dist/bench/gpu_profile.js once bf16 > /dev/null  # compiles the kernels outside the profile
profile() {
  local name=$1
  shift
  # ncu's own messages share the file: the CSV rows are the lines that start with a quote
  timeout -k 5 150 "$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base "$@" > "$OUT/$name.csv" 2>&1
  echo "$name: rc=$? $(grep -c '"gpu__time_duration.sum"' "$OUT/$name.csv") launches"
}
if [ -z "${FINETUNE_NCU_DETAIL:-}" ]; then
  profile ncu_ft node dist/bench/gpu_profile.js once bf16
  profile ncu_torch python3 bench/gpu_profile.py once bf16
  exit
fi
# FINETUNE_NCU_DETAIL="NAME:SKIP:COUNT ...": instead of the kernel times, Nsight Compute's throughput, occupancy and
# warp-stall sections for COUNT launches of finetune's kernel NAME after its first SKIP ones (skip a whole update's
# to see the second's), all in ncu_detail.csv
for spec in $FINETUNE_NCU_DETAIL; do
  IFS=: read -r name skip count <<< "$spec"
  timeout -k 5 90 "$ncu" --clock-control none --csv --page details --print-units base --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    --kernel-name "regex:^$name\$" --launch-skip "$skip" --launch-count "$count" \
    node dist/bench/gpu_profile.js once bf16 2>&1 | grep '^"' >> "$OUT/ncu_detail.csv"
  echo "ncu_detail $name: rc=${PIPESTATUS[0]}"
done
