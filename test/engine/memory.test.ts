// A training loop keeps its memory flat: activations are released by backward(), intermediates of module
// calls when the call returns, gradients by zero_grad() — none of it waits for the garbage collector.
import { test } from "node:test";
import { constants, PerformanceObserver } from "node:perf_hooks";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import { native } from "../../src/backend/native.js";
import { BertConfig, BertForSequenceClassification } from "../../src/models/index.js";
import { AdamW } from "../../src/optim/index.js";
import { clip_grad_norm_ } from "../../src/nn/utils.js";
import { Module, Parameter } from "../../src/nn/index.js";
import type { Tensor } from "../../src/tensor/tensor.js";

test("300 training steps hold no more native memory than the first ones", () => {
  torch.manual_seed(0);
  const config = new BertConfig({ vocab_size: 100, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, num_labels: 2 });
  const model = BertForSequenceClassification.from_config(config);
  model.train();
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
  const batch = {
    input_ids: torch.randint(0, 100, [4, 12]),
    attention_mask: torch.ones([4, 12], { dtype: torch.int64 }),
    labels: torch.tensor([0, 1, 1, 0]),
  };
  const live: number[] = [];
  for (let step = 0; step < 300; step++) {
    const out = model(batch);
    out.loss.backward();
    clip_grad_norm_(model.parameters(), 1.0).dispose();
    optimizer.step();
    optimizer.zero_grad();
    out.loss.dispose();
    out.logits.dispose();
    live.push(native.liveBytes());
  }
  assert.equal(live[299], live[10], `native bytes in use grew from ${live[10]} to ${live[299]}`);
  assert.ok(live.every((v) => v === live[10] || live.indexOf(v) < 10), "every step after warm-up ends with the same bytes in use");
});

class TwoLayer extends Module {
  w = new Parameter(torch.randn([64, 64]));

  forward(x: Tensor): Tensor {
    return x.matmul(this.w).tanh().matmul(this.w).sum();
  }
}

test("backward releases the activations a module call saved", () => {
  const model = new TwoLayer();
  const x = torch.randn([32, 64]);
  const before = native.liveBytes();
  const loss = model(x);
  const held = native.liveBytes();
  loss.backward();
  model.zero_grad();
  const after = native.liveBytes();
  // Only tanh's output is needed by backward (x.matmul(w) and the second product are released at once).
  assert.ok(held - before >= 32 * 64 * 4 && held - before < 2 * 32 * 64 * 4, `the graph holds one activation before backward (${held - before} bytes)`);
  assert.ok(after - before <= 64, `after backward only the loss itself remains (${after - before} bytes)`);
});

test("a request takes a cached block up to 1.5 times its size, so shorter batches reuse longer ones' memory", () => {
  const MB = 2 ** 20;
  native.emptyCache();
  native.free(native.alloc(40 * MB, false));
  assert.equal(native.cachedBytes(), 40 * MB);
  const shorter = native.alloc(30 * MB, false);
  assert.equal(native.cachedBytes(), 0, "a 30 MB request takes the cached 40 MB block");
  native.free(shorter);
  assert.equal(native.cachedBytes(), 40 * MB, "the block returns to the cache at its own size");
  const muchShorter = native.alloc(20 * MB, false);
  assert.equal(native.cachedBytes(), 40 * MB, "a block over 1.5 times the request stays cached");
  native.free(muchShorter);
  native.emptyCache();
});

/** The full (mark-compact) collections V8 runs while `work` does. */
async function majorCollections(work: () => Promise<void> | void): Promise<number> {
  let count = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) count++;
  });
  observer.observe({ entryTypes: ["gc"] });
  await work();
  // Node reports collections to observers from a later turn of the event loop
  await new Promise((resolve) => setTimeout(resolve, 20));
  observer.disconnect();
  return count;
}

test("memory the program frees itself does not make V8 collect garbage", async () => {
  const MB = 2 ** 20;
  native.emptyCache();
  // Each round holds 80 MB at once, as a step's activations do: V8 counted it as new external memory every time
  // and ran a full collection every few rounds (43 in the 200).
  const collections = await majorCollections(() => {
    for (let round = 0; round < 200; round++) {
      const blocks = Array.from({ length: 20 }, () => native.alloc(4 * MB, false));
      for (const block of blocks) native.free(block);
    }
  });
  native.emptyCache();
  assert.ok(collections <= 5, `${collections} full collections for memory freed by free()`);
  const buffer = native.alloc(64, false);
  assert.throws(() => native.free(buffer, 1 as unknown as boolean), /free\(buffer, collected = false\): collected must be a boolean/);
  native.free(buffer);
  assert.equal(buffer.byteLength, 0, "free() detaches the buffer");
});

test("memory only the garbage collector frees is still collected", async () => {
  const MB = 2 ** 20;
  // 5 GB allocated and dropped without free() or dispose(): V8 must keep collecting it, from fresh or recycled blocks
  // alike (had recycled blocks gone uncounted, each collection would let the next run up to twice as far). Buffers
  // are freed by their own finalizers, tensors by the tensors' FinalizationRegistry.
  const dropped = {
    buffers: () => new Uint8Array(native.alloc(2 * MB, false))[0] = 1,
    tensors: () => torch.zeros([512, 1024]),
  };
  for (const [kind, drop] of Object.entries(dropped)) {
    native.emptyCache();
    let peak = 0;
    for (let i = 0; i < 2500; i++) {
      drop();
      peak = Math.max(peak, native.liveBytes());
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    assert.ok(peak < 768 * MB, `${(peak / MB).toFixed(0)} MB held at once by ${kind} nobody freed`);
  }
  native.emptyCache();
});
