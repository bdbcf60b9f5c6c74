"""Summarises bench/gpu-ncu.sh's CSV files (here, after the device run): total GPU time of the profiled program's last
update (the launches after the first update's optimizer kernels), then its kernels by total time with their launch
count and mean time.  usage: python3 bench/ncu_summary.py ncu_ft.csv [ncu_torch.csv]"""
import collections
import csv
import re
import sys

OPTIMIZER = re.compile(r"adamw|FusedOptimizer|multi_tensor_apply")


def last_update(rows):
    """The rows after the first update: past its first optimizer kernel and the optimizer kernels right after it."""
    names = [r["Kernel Name"] for r in rows]
    first = next((i for i, n in enumerate(names) if re.search(r"adamw|FusedOptimizer", n)), None)
    if first is None:
        return rows
    end = first
    while end < len(names) and OPTIMIZER.search(names[end]):
        end += 1
    return rows[end:] if end < len(rows) else rows


for path in sys.argv[1:]:
    with open(path) as f:
        rows = [r for r in csv.DictReader(line for line in f if line.startswith('"'))
                if r["Metric Name"] == "gpu__time_duration.sum"]
    rows = last_update(rows)
    by_kernel = collections.defaultdict(lambda: [0, 0.0])
    for r in rows:
        entry = by_kernel[re.sub(r"\(.*", "", r["Kernel Name"])[:90]]
        entry[0] += 1
        entry[1] += float(r["Metric Value"].replace(",", "")) / 1000  # ns -> us
    total = sum(t for _, t in by_kernel.values())
    print(f"== {path}: {len(rows)} launches, {total / 1000:.3f} ms of GPU time")
    for name, (count, us) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1])[:30]:
        print(f"{us / 1000:8.3f} ms {count:5d}x {us / count:8.1f} us  {name}")
