// CUDA graphs (torch.cuda.CUDAGraph, native/cuda/graphs.cc) and the Trainer's graph-replayed step
// (src/training/cuda_graph_step.ts) without a GPU: the API's errors, and against the fake driver the capture
// bookkeeping, the graph's memory pool and the operations a capture refuses. On a GPU: graphs_parity.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { torch } from "../../src/torch.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { clip_grad_norm_ } from "../../src/nn/utils.js";
import { AdamW } from "../../src/optim/index.js";
import { BertForSequenceClassification } from "../../src/models/index.js";
import { CudaGraphStep, useCudaGraphs } from "../../src/training/cuda_graph_step.js";
import { SGD } from "../../src/optim/sgd.js";
import { Device } from "../../src/tensor/device.js";
import { REPO_ROOT, TINY_BERT_SEQCLS } from "../helpers/paths.js";
import { HAS_GXX, withFakeCuda } from "../helpers/fake_cuda.js";
import { goldenBatch } from "../helpers/golden_batches.js";

const NO_CUDA = cudaInfo().available && "this machine has CUDA: the GPU tests below cover it";
const DIST = (file: string): string => JSON.stringify(pathToFileURL(path.join(REPO_ROOT, "dist/src", file)).href);

test("without CUDA, graphs say why they cannot be captured", { skip: NO_CUDA }, () => {
  const reason = cudaInfo().reason!;
  const g = new torch.cuda.CUDAGraph();
  assert.throws(() => g.capture_begin(), (e: Error) => e.message === `torch.cuda.CUDAGraph.capture_begin: CUDA is not available: ${reason}`);
  assert.throws(() => torch.cuda.graph(g, () => 1), (e: Error) => e.message.includes(reason));
  assert.throws(() => torch.cuda.graph_pool_handle(), (e: Error) => e.message.includes(reason));
  assert.throws(() => g.replay(), /CUDAGraph.replay: nothing has been captured/);
  assert.throws(() => g.capture_end(), /capture_begin\(\) was not called/);
  assert.throws(() => g.pool(), /nothing has been captured/);
  g.reset();
  assert.equal(torch.cuda.is_current_stream_capturing(), false);
});

/** The fake-driver checks, in a child process (the driver is chosen once per process); returns its report. */
function runOnFakeCuda(): Record<string, unknown> {
  const script = `
    import { native } from ${DIST("backend/native.js")};
    import { torch } from ${DIST("torch.js")};
    const r = {};
    const errorOf = (f) => { try { f(); return null; } catch (e) { return e.constructor.name + ": " + e.message; } };
    const c = native.cuda;
    const host = new Float32Array(10).map((_, i) => i + 1);
    const src = c.alloc(40), dst = c.alloc(40);
    c.free(c.alloc(40, false));  // the warm-up: one cached 512-byte block
    const cached = c.cachedBytes();
    const g = new torch.cuda.CUDAGraph();
    g.capture_begin();
    r.capturing = torch.cuda.is_current_stream_capturing();
    const tmp = c.alloc(40, false);  // the cached block, now the graph's
    c.copyDeviceToDevice(src, 0, tmp, 0, 40);
    c.free(tmp);
    const tmp2 = c.alloc(40, false);  // served again by the graph's pool: the same block, still holding src
    c.copyDeviceToDevice(tmp2, 0, dst, 0, 40);
    c.free(tmp2);
    // relaxed capture mode allows cuMemAlloc: a 4 MiB request, more than the cache holds, gets a new 20 MiB
    // segment, the graph pool's
    r.newMemory = errorOf(() => c.free(c.alloc(4 << 20)));
    r.hostToDevice = errorOf(() => c.copyHostToDevice(host.buffer, 0, src, 0, 40));
    r.deviceToHost = errorOf(() => c.copyDeviceToHost(src, 0, host.buffer, 0, 40));
    r.synchronize = errorOf(() => torch.cuda.synchronize());
    r.emptyCache = errorOf(() => torch.cuda.empty_cache());
    r.nested = errorOf(() => new torch.cuda.CUDAGraph().capture_begin());
    r.resetOther = errorOf(() => c.graphReset(12345));
    g.capture_end();
    r.capturingAfter = torch.cuda.is_current_stream_capturing();
    r.poolBlockCached = c.cachedBytes() - cached;
    // Eager code never gets the pool's blocks: this one is cut from a new 20 MiB segment, not the pool's.
    const eager = c.alloc(4 << 20, false);
    r.cachedWithEager = c.cachedBytes() - cached;
    c.free(eager);
    const replayed = [];
    for (const k of [1, 2]) {
      c.copyHostToDevice(host.map((v) => v * k).buffer, 0, src, 0, 40);
      g.replay();
      const out = new Float32Array(10);
      c.copyDeviceToHost(dst, 0, out.buffer, 0, 40);
      replayed.push(Array.from(out));
    }
    r.replayed = replayed;
    r.poolId = g.pool().id > 0;
    const before = c.cachedBytes();
    g.reset();
    r.releasedToCache = c.cachedBytes() - before;
    r.replayAfterReset = errorOf(() => g.replay());
    // a callback that throws ends the capture and leaves the graph empty
    const h = new torch.cuda.CUDAGraph();
    r.throwing = errorOf(() => torch.cuda.graph(h, () => { c.copyHostToDevice(host.buffer, 0, src, 0, 40); }));
    r.capturingAfterThrow = torch.cuda.is_current_stream_capturing();
    r.emptyAfterThrow = errorOf(() => h.replay());
    // graphs sharing a pool
    const pool = torch.cuda.graph_pool_handle();
    const a = new torch.cuda.CUDAGraph(), b = new torch.cuda.CUDAGraph();
    torch.cuda.graph(a, () => c.copyDeviceToDevice(src, 0, dst, 0, 40), { pool });
    torch.cuda.graph(b, () => c.copyDeviceToDevice(dst, 0, src, 0, 40), { pool });
    r.sharedPool = a.pool().id === pool.id && b.pool().id === pool.id;
    a.reset(); b.reset();
    r.allocatedAtEnd = c.memoryAllocated();
    c.free(src); c.free(dst);
    console.log(JSON.stringify(r));
  `;
  return withFakeCuda((home) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(home, "cache") };
    delete env.FINETUNE_DISABLE_CUDA;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8", timeout: 60_000 });
    return JSON.parse(out) as Record<string, unknown>;
  });
}

test("a fake driver: capture, the graph's memory pool, replay, reset and what a capture refuses", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  const r = runOnFakeCuda();
  const refused = (what: string) => new RegExp(`^Error: ${what} is not allowed while capturing a CUDA graph`);
  assert.equal(r.capturing, true);
  assert.equal(r.newMemory, null, "a capture may allocate new memory for its pool");
  assert.match(r.hostToDevice as string, refused("copying host memory to the GPU"));
  assert.match(r.deviceToHost as string, refused("reading device memory on the host \\(item\\(\\), tolist\\(\\), \\.cpu\\(\\)\\)"));
  assert.match(r.synchronize as string, refused("waiting for the GPU \\(synchronize\\)"));
  assert.match(r.emptyCache as string, refused("emptying the CUDA cache"));
  assert.match(r.nested as string, refused("starting a capture \\(captures do not nest\\)"));
  assert.match(r.resetOther as string, refused("resetting a CUDA graph"));
  assert.equal(r.capturingAfter, false);
  assert.equal(r.poolBlockCached, 20 << 20, "the pool caches its free blocks (its new 20 MiB segment); the graph has no constants");
  assert.equal(r.cachedWithEager, (20 + 16) << 20, "an eager allocation after the capture does not take the pool's blocks");
  assert.deepEqual(r.replayed, [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]]);
  assert.equal(r.poolId, true);
  assert.equal(r.releasedToCache, 0, "reset gives nothing more to the cache: the pool's blocks move there");
  assert.match(r.replayAfterReset as string, /nothing has been captured/);
  assert.match(r.throwing as string, refused("copying host memory to the GPU"));
  assert.equal(r.capturingAfterThrow, false);
  assert.match(r.emptyAfterThrow as string, /nothing has been captured/);
  assert.equal(r.sharedPool, true);
  assert.equal(r.allocatedAtEnd, 2 * 512, "only the two static buffers are left");
});

test("a graph's constants come in 64 KiB chunks as the capture records them: 300 index checks take two, and a replay reports a bad id recorded in the second", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  const script = `
    import { native } from ${DIST("backend/native.js")};
    import { torch } from ${DIST("torch.js")};
    const c = native.cuda;
    const [V, D, lookups] = [4, 4, 300];
    const ids = c.alloc(8), bad = c.alloc(8), table = c.alloc(V * D * 4), out = c.alloc(D * 4);
    c.copyHostToDevice(new BigInt64Array([2n]).buffer, 0, ids, 0, 8);
    c.copyHostToDevice(new BigInt64Array([9n]).buffer, 0, bad, 0, 8);
    const g = new torch.cuda.CUDAGraph();
    const before = c.memoryAllocated();
    // each lookup's index check records a bad id in the graph's constants (256 bytes each, with the alignment)
    torch.cuda.graph(g, () => {
      for (let i = 0; i < lookups; i++) c.embeddingForward(1, i === lookups - 1 ? bad : ids, 0, V, D, table, 0, out, 0);
    });
    const constants = c.memoryAllocated() - before;
    g.replay();
    let error = null;
    try { torch.cuda.synchronize(); } catch (e) { error = e.constructor.name + ": " + e.message; }
    g.reset();
    console.log(JSON.stringify({ constants, error, after: c.memoryAllocated() - before }));
  `;
  const r = withFakeCuda((home) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(home, "cache") };
    delete env.FINETUNE_DISABLE_CUDA;
    return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8", timeout: 120_000 }));
  }, { emulate: true }) as { constants: number; error: string; after: number };
  assert.equal(r.constants, 2 * 64 * 1024, "two chunks: 256 checks fill the first");
  assert.equal(r.error, "RangeError: embedding: id 9 at position 0 is outside [0, V) with V = 4 (found by a CUDA graph replay)");
  assert.equal(r.after, 0, "reset gives the chunks back");
});

test("the Trainer steps through graphs only on a GPU, with one batch per update and AdamW, unless turned off", () => {
  const model = new torch.nn.Linear(2, 2);
  const adamw = new AdamW(model.parameters());
  const gpu = new Device("cuda");
  assert.equal(useCudaGraphs(new Device("cpu"), 1, adamw), false);
  assert.equal(useCudaGraphs(gpu, 2, adamw), false);
  assert.equal(useCudaGraphs(gpu, 1, new SGD(model.parameters(), { lr: 0.1 })), false);
  assert.equal(useCudaGraphs(gpu, 1, adamw), true);
  process.env["FINETUNE_CUDA_GRAPHS"] = "0";
  try {
    assert.equal(useCudaGraphs(gpu, 1, adamw), false);
  } finally {
    delete process.env["FINETUNE_CUDA_GRAPHS"];
  }
});

test("CudaGraphStep where capturing fails (no GPU here): the shape runs eagerly, as the eager loop would", { skip: NO_CUDA }, async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on("warning", onWarning);
  try {
    const batches = [0, 1, 0, 1, 0].map((i) => goldenBatch(i));
    const load = () => BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
    const eager = await load();
    eager.train();
    const eagerOptimizer = new AdamW(eager.parameters(), { lr: 1e-3 });
    let eagerLoss = 0;
    let eagerNorm = 0;
    for (const b of batches) {
      const loss = eager(b).loss!;
      eagerLoss = Math.fround(eagerLoss + loss.item());
      loss.backward();
      loss.dispose();
      const norm = clip_grad_norm_(eager.parameters(), 1.0);
      eagerNorm = norm.item();
      norm.dispose();
      eagerOptimizer.step();
      eagerOptimizer.zero_grad();
    }
    const model = await load();
    model.train();
    const step = new CudaGraphStep(model, new AdamW(model.parameters(), { lr: 1e-3 }), new Device("cpu"), 1.0, (inputs, addLoss) => {
      const loss = model(inputs).loss!;
      addLoss(loss);
      loss.backward();
      loss.dispose();
    });
    for (const b of batches) step.step(b);
    assert.equal(step.graph_count, 0);
    const { loss, grad_norm } = step.drain();
    assert.equal(loss, eagerLoss, "the loss summed in float32 as the Trainer sums it");
    assert.equal(grad_norm, eagerNorm);
    assert.equal(step.drain().loss, 0, "drain() resets the sum");
    const other = Object.fromEntries(eager.named_parameters());
    for (const [name, p] of model.named_parameters()) assert.deepEqual(p.data(), other[name]!.data(), name);
    step.dispose();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(warnings.length, 2, "one warning per shape whose capture failed");
    // The first update runs eagerly without a capture; batch 1's shape is the first one captured, batch 0's next
    assert.match(warnings[0]!, /^CUDA graph capture failed for the batch shape .*input_ids:int64\[8,61\].*, which runs eagerly from now on: torch\.cuda\.graph_pool_handle: CUDA is not available/);
    assert.match(warnings[1]!, /input_ids:int64\[8,67\]/);
  } finally {
    process.off("warning", onWarning);
  }
});
