"""PyTorch's side of bench/gpu_profile.ts: the same parts of a bert-base training step (batch 8 x 64 tokens), each
timed on its own between synchronisations, fp32 and bf16 autocast, eager and replayed from a CUDA graph.
The last line printed is one JSON object: milliseconds per part and precision."""
import json
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

BATCH, TOKENS, ITERS = 8, 64, 20


def timed(fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(ITERS):
        fn()
    torch.cuda.synchronize()
    return round(1000 * (time.perf_counter() - start) / ITERS, 3)


torch.manual_seed(0)
config = BertConfig(num_labels=2)
model = BertForSequenceClassification(config).cuda().train()
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0, fused=True)
batch = {
    "input_ids": torch.randint(0, config.vocab_size, (BATCH, TOKENS), device="cuda"),
    "token_type_ids": torch.zeros(BATCH, TOKENS, dtype=torch.long, device="cuda"),
    "attention_mask": torch.ones(BATCH, TOKENS, dtype=torch.long, device="cuda"),
    "labels": torch.randint(0, 2, (BATCH,), device="cuda"),
}
if sys.argv[1:2] == ["once"]:  # two eager updates and nothing else, for a kernel profiler (bench/gpu-ncu.sh)
    for _ in range(2):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=sys.argv[2] == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    sys.exit(0)
results = {}
for precision in ("fp32", "bf16"):
    ctx = lambda: torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward_backward():
        with ctx():
            loss = model(**batch).loss
        loss.backward()

    def update():
        forward_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forward_no_grad():
        with torch.no_grad(), ctx():
            model(**batch)

    r = {"forward_no_grad": timed(forward_no_grad)}
    r["forward_backward"] = timed(lambda: (forward_backward(), optimizer.zero_grad(set_to_none=True)))
    forward_backward()
    r["clip_grad_norm"] = timed(lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
    r["adamw_step"] = timed(optimizer.step)
    optimizer.zero_grad(set_to_none=True)
    r["update_eager"] = timed(update)
    results[precision] = r
    print(precision, json.dumps(r), flush=True)
print(json.dumps({"batch": BATCH, "tokens": TOKENS, "ms": results,
                  "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3)}))
