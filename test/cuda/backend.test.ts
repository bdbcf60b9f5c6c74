// native.cuda without a GPU: every entry point throws the loader's reason (never crashes), and, against a fake
// driver whose device memory is host memory, device handles, the caching allocator, host<->device copies,
// Tensor.to / Module.to / safetensors and the argument checks all work as on a GPU. Kernels need the real thing
// (test/cuda/ops_parity.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { native } from "../../src/backend/native.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { torch } from "../../src/torch.js";
import { REPO_ROOT } from "../helpers/paths.js";
import { HAS_GXX, withFakeCuda } from "../helpers/fake_cuda.js";

const DIST = (file: string): string => JSON.stringify(pathToFileURL(path.join(REPO_ROOT, "dist/src", file)).href);
const NO_CUDA = cudaInfo().available && "this machine has CUDA: test/cuda/ops_parity.test.ts covers it";

test("without CUDA every native.cuda function throws the reason, and nothing crashes", { skip: NO_CUDA }, () => {
  const reason = cudaInfo().reason!;
  const host = native.alloc(64);
  const names = Object.keys(native.cuda).filter((n) => n !== "setAllowTf32" && n !== "getAllowTf32");
  assert.ok(names.includes("alloc") && names.includes("sgemm") && names.includes("copyDeviceToHost"));
  for (const name of names) {
    const fn = (native.cuda as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!;
    // Host buffers everywhere a handle goes: the unavailability is reported before any argument is read.
    const args = Array.from({ length: 20 }, (_, i) => (i % 3 === 0 ? host : 0));
    assert.throws(() => fn(...args), (e: Error) => e.message === `CUDA is not available: ${reason}`, name);
  }
  native.free(host);
  assert.equal(native.cuda.getAllowTf32(), false);
  torch.backends.cuda.matmul.allow_tf32 = true;
  assert.equal(torch.backends.cuda.matmul.allow_tf32, true);
  torch.backends.cuda.matmul.allow_tf32 = false;
});

test("without CUDA, tensors and modules cannot go to cuda and statistics read 0", { skip: NO_CUDA }, () => {
  const reason = cudaInfo().reason!;
  assert.throws(() => torch.tensor([1, 2]).to("cuda"), (e: Error) => e.message.includes(reason));
  assert.throws(() => torch.tensor([1, 2], { device: "cuda" }), (e: Error) => e.message.includes(reason));
  assert.throws(() => new torch.nn.Linear(2, 2).to("cuda"), (e: Error) => e.message.includes(reason));
  assert.equal(torch.cuda.memory_reserved(), 0);
  assert.deepEqual(torch.cuda.memory_stats(), {}, "PyTorch's memory_stats() is empty before CUDA is initialised");
  torch.cuda.empty_cache();
  torch.cuda.reset_peak_memory_stats();
});

type FakeReport = Record<string, unknown>;

/** Runs the checks in a child process against the fake driver; returns what it reported. */
function runOnFakeCuda(): FakeReport {
  const script = `
    import { native } from ${DIST("backend/native.js")};
    import { torch } from ${DIST("torch.js")};
    import { save_file, load_file } from ${DIST("safetensors/tensors.js")};
    import fs from "node:fs"; import os from "node:os"; import path from "node:path";
    const r = {};
    const errorOf = (f) => { try { f(); return null; } catch (e) { return e.constructor.name + ": " + e.message; } };
    const c = native.cuda;
    r.available = torch.cuda.is_available();
    r.count = torch.cuda.device_count();
    // handles
    const h = c.alloc(40);
    r.handleBytes = h.byteLength;
    r.allocated = c.memoryAllocated();
    const host = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    c.copyHostToDevice(host.buffer, 0, h, 0, 40);
    const h2 = c.alloc(40, false);
    c.copyDeviceToDevice(h, 8, h2, 0, 32);
    const back = new Float32Array(8);
    c.copyDeviceToHost(h2, 0, back.buffer, 0, 32);
    r.roundTrip = Array.from(back);
    const z = c.alloc(12);
    const zb = new Float32Array(3).fill(7);
    c.copyDeviceToHost(z, 0, zb.buffer, 0, 12);
    r.zeroed = Array.from(zb);
    r.copyPastEnd = errorOf(() => c.copyHostToDevice(host.buffer, 0, h, 8, 40));
    r.hostPastEnd = errorOf(() => c.copyDeviceToHost(h, 0, back.buffer, 4, 32));
    r.hostAsDevice = errorOf(() => c.copyHostToDevice(host.buffer, 0, host.buffer, 0, 4));
    r.deviceAsHost = errorOf(() => c.copyDeviceToHost(h, 0, h2, 0, 4));
    const hostA = native.alloc(64);
    r.sgemmHostA = errorOf(() => c.sgemm(false, false, 2, 2, 2, 1, hostA, 0, 2, 0, h, 0, 2, 0, 0, h2, 0, 2, 0, 1));
    r.sgemmPastEnd = errorOf(() => c.sgemm(false, false, 4, 4, 4, 1, h, 0, 4, 0, h, 0, 4, 0, 0, h2, 0, 4, 0, 1));
    r.sgemmNoCublas = errorOf(() => c.sgemm(false, false, 2, 2, 2, 1, h, 0, 2, 0, h, 0, 2, 0, 0, h2, 0, 2, 0, 1));
    r.cpuGetsHandle = errorOf(() => native.sgemm(false, false, 2, 2, 2, 1, h, 0, 2, 0, h, 0, 2, 0, 0, h2, 0, 2, 0, 1));
    r.freeHost = errorOf(() => c.free(hostA));
    native.free(hostA);
    c.free(h2);
    c.free(h2);
    r.useFreed = errorOf(() => c.copyDeviceToHost(h2, 0, back.buffer, 0, 4));
    r.cachedAfterFree = c.cachedBytes();
    c.free(h); c.free(z);
    r.allocatedAfterFree = c.memoryAllocated();
    r.peak = torch.cuda.max_memory_allocated();
    torch.cuda.reset_peak_memory_stats();
    r.peakAfterReset = torch.cuda.max_memory_allocated();
    torch.cuda.empty_cache();
    r.cachedAfterEmpty = c.cachedBytes();
    // fused attention checks every argument before it compiles a kernel
    const ah = c.alloc(256);
    const attention = (o) => errorOf(() => c.attentionForward(1, 1, o.S ?? 2, 2, o.D ?? 4, ah, 0, o.qStrides ?? [8, 8, 4, 1],
      ah, 0, [8, 8, 4, 1], ah, 0, [8, 8, 4, 1], o.mask ?? null, 0, [0, 0, 0, 1], false, 0.5, o.p ?? 0, 0, 0, 0, ah, 0, [8, 8, 4, 1], ah));
    r.attentionHeadDim = attention({ D: 129 });
    r.attentionPastEnd = attention({ S: 20 });
    r.attentionStride = attention({ qStrides: [8, 8, 4, 2] });
    r.attentionHostMask = attention({ mask: new ArrayBuffer(64) });
    r.attentionDropout = attention({ p: 1.5 });
    c.free(ah);
    torch.cuda.synchronize();
    // tensors
    const x = torch.tensor([[1, 2, 3], [4, 5, 6]], { dtype: torch.float32 });
    const y = x.to("cuda");
    r.device = String(y.device);
    r.yBytes = y.buffer.byteLength;
    r.yList = y.tolist();
    r.back = y.cpu().tolist();
    r.fromList = torch.tensor([7, 8], { device: "cuda" }).tolist();
    r.fromTyped = torch.tensor(new Float32Array([1.5, 2.5]), { device: "cuda" }).cpu().tolist();
    r.transposed = x.t().to("cuda").tolist();
    r.cuda1 = errorOf(() => x.to("cuda:1"));
    // autograd through the moves
    const w = torch.tensor([1, 2, 3], { dtype: torch.float32, requires_grad: true });
    const out = w.to("cuda").cpu().mul(2).sum();
    out.backward();
    r.grad = w.grad.tolist();
    // copy_ across devices, Module.to, safetensors from the device
    const lin = new torch.nn.Linear(3, 2);
    const weight = lin.weight.tolist();
    lin.to("cuda");
    r.moduleDevice = String(lin.weight.device);
    r.moduleWeight = JSON.stringify(lin.weight.tolist()) === JSON.stringify(weight);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ft-fake-"));
    save_file({ w: lin.weight }, path.join(dir, "w.safetensors"));
    r.saved = JSON.stringify(load_file(path.join(dir, "w.safetensors")).w.tolist()) === JSON.stringify(weight);
    const fresh = new torch.nn.Linear(3, 2).to("cuda");
    const source = new torch.nn.Linear(3, 2);
    fresh.load_state_dict(source.state_dict(), true);
    r.loaded = JSON.stringify(fresh.weight.tolist()) === JSON.stringify(source.weight.tolist());
    fs.rmSync(dir, { recursive: true });
    lin.to("cpu");
    r.moduleBack = String(lin.weight.device);
    // kernels need NVRTC, which the fake lacks: a clear error, no crash
    r.kernel = errorOf(() => y.add(1));
    console.log(JSON.stringify(r));
  `;
  return runScriptOnFakeCuda(script);
}

/** Runs `script` (an ES module printing one JSON line) in a child process against the fake driver. */
function runScriptOnFakeCuda(script: string, extraEnv: NodeJS.ProcessEnv = {}): FakeReport {
  return withFakeCuda((home) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(home, "cache"), ...extraEnv };
    delete env.FINETUNE_DISABLE_CUDA;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8", timeout: 60_000 });
    return JSON.parse(out) as FakeReport;
  });
}

test("a fake driver: handles, cache, copies, Tensor.to, Module.to and argument checks", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  const r = runOnFakeCuda();
  assert.equal(r.available, true);
  assert.equal(r.count, 1);
  assert.equal(r.handleBytes, 0, "a device handle exposes no bytes to JS");
  assert.equal(r.allocated, 512, "allocations round up to 512 bytes");
  assert.deepEqual(r.roundTrip, [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(r.zeroed, [0, 0, 0]);
  assert.match(r.copyPastEnd as string, /^RangeError: copyHostToDevice device: 40 bytes at byte 8 exceed its 40 bytes/);
  assert.match(r.hostPastEnd as string, /^RangeError: copyDeviceToHost host: 32 bytes at byte 4 exceed its 32 bytes/);
  assert.match(r.hostAsDevice as string, /^TypeError: argument 2 \(device\) must be a CUDA device buffer.*not host memory/);
  assert.match(r.deviceAsHost as string, /^TypeError: argument 2 \(host\) must be host memory, not a CUDA device buffer/);
  assert.match(r.sgemmHostA as string, /^TypeError: argument 6 \(A\) must be a CUDA device buffer/);
  assert.match(r.sgemmPastEnd as string, /^RangeError: A: 16 elements at offset 0 exceed the device buffer of 10 elements/);
  assert.match(r.sgemmNoCublas as string, /^Error: .*libcublasLt\.so\.13 lacks cublasLtCreate/);
  assert.match(r.attentionHeadDim as string, /^RangeError: argument 4 \(D\) must be in \[1, 128\]/);
  assert.match(r.attentionPastEnd as string, /^RangeError: q: 80 elements at offset 0 exceed the device buffer of 64 elements/);
  assert.match(r.attentionStride as string, /^RangeError: argument 7 \(q\): the last dimension must have stride 1/);
  assert.match(r.attentionHostMask as string, /^TypeError: argument 14 \(mask\) must be a CUDA device buffer/);
  assert.match(r.attentionDropout as string, /^RangeError: argument 19 \(dropoutP\) must be in \[0, 1\]/);
  assert.match(r.cpuGetsHandle as string, /^RangeError: A: 4 elements at offset 0 exceed the buffer of 0 elements/);
  assert.match(r.freeHost as string, /^TypeError: cuda\.free\(handle\): not a device buffer/);
  assert.match(r.useFreed as string, /^Error: argument 0 \(device\): the device memory has been released/);
  assert.ok((r.cachedAfterFree as number) >= 512);
  assert.equal(r.allocatedAfterFree, 0);
  assert.equal(r.peak, 3 * 512);
  assert.equal(r.peakAfterReset, 0);
  assert.equal(r.cachedAfterEmpty, 0);
  assert.equal(r.device, "cuda");
  assert.equal(r.yBytes, 0);
  assert.deepEqual(r.yList, [[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(r.back, [[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(r.fromList, [7, 8]);
  assert.deepEqual(r.fromTyped, [1.5, 2.5]);
  assert.deepEqual(r.transposed, [[1, 4], [2, 5], [3, 6]]);
  assert.match(r.cuda1 as string, /cuda:1 is not available: finetune drives one GPU, cuda:0/);
  assert.deepEqual(r.grad, [2, 2, 2]);
  assert.equal(r.moduleDevice, "cuda");
  assert.equal(r.moduleWeight, true);
  assert.equal(r.saved, true);
  assert.equal(r.loaded, true);
  assert.equal(r.moduleBack, "cpu");
  assert.match(r.kernel as string, /Error/);
});

const MiB = 1 << 20;

/** [allocated, reserved] after each step of a sequence of allocations and frees on the fake driver. */
const ALLOCATOR_SCRIPT = `
  import { native } from ${DIST("backend/native.js")};
  import { torch } from ${DIST("torch.js")};
  const c = native.cuda;
  const MiB = ${MiB};
  const r = {};
  const at = () => [c.memoryAllocated(), c.memoryAllocated() + c.cachedBytes()];
  const s1 = c.alloc(40), s2 = c.alloc(1000);
  r.small = at();
  c.free(s1); c.free(s2);
  torch.cuda.empty_cache();
  r.smallEmptied = at();
  const l1 = c.alloc(3 * MiB), l2 = c.alloc(5 * MiB);
  r.large = at();
  c.free(l1);
  const l3 = c.alloc(2 * MiB);
  r.reuse = at();
  const big = c.alloc(12 * MiB + 1);
  r.big = at();
  c.free(l2); c.free(l3); c.free(big);
  r.freed = at();
  torch.cuda.empty_cache();
  r.emptied = at();
  const kept = c.alloc(40);
  c.free(c.alloc(3 * MiB));  // a cached 20 MiB segment
  try { c.alloc(81 * 1024 * MiB); } catch (e) { r.oom = e.message; }
  r.afterOom = at();
  r.stats = torch.cuda.memory_stats();
  c.free(kept);
  console.log(JSON.stringify(r));
`;

test("the caching allocator cuts blocks from shared segments and merges them when freed", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  const r = runScriptOnFakeCuda(ALLOCATOR_SCRIPT);
  assert.deepEqual(r.small, [512 + 1024, 2 * MiB], "small requests share one 2 MiB segment");
  assert.deepEqual(r.smallEmptied, [0, 0], "freed neighbours merge back into a whole segment, which empty_cache frees");
  assert.deepEqual(r.large, [8 * MiB, 20 * MiB], "requests under 10 MiB share a 20 MiB segment");
  assert.deepEqual(r.reuse, [7 * MiB, 20 * MiB], "a freed block serves a smaller request, the rest stays cached");
  assert.deepEqual(r.big, [19 * MiB + 512, 34 * MiB], "a larger request gets its own segment, rounded to 2 MiB");
  assert.deepEqual(r.freed, [0, 34 * MiB]);
  assert.deepEqual(r.emptied, [0, 0]);
  assert.match(r.oom as string, /^CUDA out of memory\. Tried to allocate 81\.00 GiB\. GPU 0 has a total capacity of 80\.00 GiB of which [\d.]+ GiB is free; 0\.00 MiB is allocated by finetune\. Reduce the batch size or free tensors$/);
  assert.deepEqual(r.afterOom, [512, 2 * MiB], "out of memory, the cache gave back the free 20 MiB segment; the one in use stays");
  assert.deepEqual(r.stats, {
    "allocated_bytes.all.current": 512, "allocated_bytes.all.peak": 19 * MiB + 512, "reserved_bytes.all.current": 2 * MiB,
    "reserved_bytes.all.peak": 34 * MiB, "segment.all.current": 1, "segment.all.allocated": 5, "segment.all.freed": 4, num_alloc_retries: 1, num_ooms: 1,
  }, "torch.cuda.memory_stats: five segments from the driver, four given back (one by the retry after out of memory); 34 MiB reserved at most, with the 19 MiB block");
});

test("FINETUNE_CUDA_EXACT_BLOCKS gives each block its own allocation, for memory checkers", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  const r = runScriptOnFakeCuda(ALLOCATOR_SCRIPT, { FINETUNE_CUDA_EXACT_BLOCKS: "1" });
  assert.deepEqual(r.small, [1536, 1536]);
  assert.deepEqual(r.large, [8 * MiB, 8 * MiB]);
  assert.deepEqual(r.reuse, [7 * MiB, 10 * MiB], "the freed 3 MiB block serves only its own size");
  assert.deepEqual(r.freed, [0, 22 * MiB + 512]);
  assert.deepEqual(r.emptied, [0, 0]);
});

const DEVICE_QUERIES_SCRIPT = `
  import { torch } from ${DIST("torch.js")};
  import { TrainingArguments } from ${DIST("training/training_args.js")};
  const r = {};
  const errorOf = (f) => { try { f(); return null; } catch (e) { return e.constructor.name + ": " + e.message; } };
  r.capability = torch.cuda.get_device_capability();
  r.bf16 = [torch.cuda.is_bf16_supported(), torch.cuda.is_bf16_supported(false)];
  const [free, total] = torch.cuda.mem_get_info();
  const x = torch.zeros([1 << 20], { device: "cuda" });
  r.memInfo = [total, free - torch.cuda.mem_get_info()[0]];
  x.dispose();
  torch.cuda.empty_cache();
  r.reserved = [torch.cuda.memory_reserved(), torch.cuda.max_memory_reserved()];
  torch.cuda.reset_peak_memory_stats();
  r.reservedAfterReset = torch.cuda.max_memory_reserved();
  torch.cuda.set_device(0);
  torch.cuda.set_device("cuda:0");
  r.setOther = errorOf(() => torch.cuda.set_device(1));
  r.otherDevice = errorOf(() => torch.cuda.get_device_capability(1));
  r.tf32 = errorOf(() => new TrainingArguments("out", { tf32: true }));
  r.allowTf32 = torch.backends.cuda.matmul.allow_tf32;
  r.bf16Args = errorOf(() => new TrainingArguments("out", { bf16: true }));
  console.log(JSON.stringify(r));
`;

test("device queries as PyTorch answers them; before Ampere tf32 is refused as transformers refuses it", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  const hopper = runScriptOnFakeCuda(DEVICE_QUERIES_SCRIPT);
  assert.deepEqual(hopper.capability, [9, 0]);
  assert.deepEqual(hopper.bf16, [true, true]);
  assert.deepEqual(hopper.memInfo, [80 * 1024 * MiB, 20 * MiB], "the driver's total, and the 20 MiB segment the 4 MiB tensor took");
  assert.match(hopper.otherDevice as string, /^RangeError: torch\.cuda\.get_device_capability: invalid device 1: use 0\.\.0/);
  assert.deepEqual(hopper.reserved, [0, 20 * MiB], "empty_cache gave the segment back; the peak keeps it");
  assert.equal(hopper.reservedAfterReset, 0, "reset_peak_memory_stats starts the reserved peak from what is held");
  assert.match(hopper.setOther as string, /^RangeError: torch\.cuda\.set_device: invalid device 1: finetune runs CUDA work on device 0/);
  assert.equal(hopper.tf32, null);
  assert.equal(hopper.allowTf32, true, "TrainingArguments({ tf32: true }) sets torch.backends.cuda.matmul.allow_tf32");
  assert.equal(hopper.bf16Args, null);
  const turing = runScriptOnFakeCuda(DEVICE_QUERIES_SCRIPT, { FTEMU_COMPUTE_CAPABILITY: "7.5" });
  assert.deepEqual(turing.capability, [7, 5]);
  assert.deepEqual(turing.bf16, [true, false], "bfloat16 tensors, but no bfloat16 tensor cores");
  assert.match(turing.tf32 as string, /^Error: --tf32 requires Ampere or a newer GPU arch, cuda>=11 and torch>=1\.7$/);
  assert.equal(turing.bf16Args, null, "transformers takes torch.cuda.is_bf16_supported()'s word, emulation included");
});

test("host-to-device copies wait in pinned memory, never rewritten before they run (FTEMU_DEFER)", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  // FTEMU_DEFER runs queued work only when the host waits, so a staging slot reused too early copies the wrong
  // bytes. 40 copies of 200 KB go round the 4 MiB ring twice before anything waits; a 2 MiB one goes direct.
  const script = `
    import { native } from ${DIST("backend/native.js")};
    const c = native.cuda;
    const sizes = [...Array.from({ length: 40 }, () => 50_000), 512 * 1024, 7, 1];
    const handles = sizes.map((n, i) => {
      const h = c.alloc(n * 4);
      const values = new Float32Array(n).map((_, j) => i * 1e5 + j);
      c.copyHostToDevice(values.buffer, 0, h, 0, n * 4);
      values.fill(-1);  // the caller may reuse its buffer at once
      return h;
    });
    const wrong = sizes.flatMap((n, i) => {
      const back = new Float32Array(n);
      c.copyDeviceToHost(handles[i], 0, back.buffer, 0, n * 4);
      return back.every((v, j) => v === i * 1e5 + j) ? [] : [i];
    });
    console.log(JSON.stringify({ wrong }));
  `;
  const child = withFakeCuda((home) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(home, "cache"), FTEMU_DEFER: "1", FTEMU_TRACE: "1" };
    delete env.FINETUNE_DISABLE_CUDA;
    return spawnSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8", timeout: 60_000 });
  });
  assert.equal(child.status, 0, child.stderr);
  assert.deepEqual(JSON.parse(child.stdout), { wrong: [] }, "every device buffer holds what was copied to it");
  const copies = child.stderr.split("\n").flatMap((l) => l.match(/^ftemu: copy of (\d+) bytes to the device from (\w+) memory$/)?.slice(1) ?? []);
  assert.deepEqual(copies.filter((_, i) => i % 2 === 1).reduce<Record<string, number>>((n, kind) => ({ ...n, [kind]: (n[kind] ?? 0) + 1 }), {}),
    { pinned: 42, pageable: 1 }, "copies up to 1 MiB go through pinned memory, larger ones straight from the caller's");
});

test("every kernel's first statement waits for the previous grid (AwaitPriorGrid), as programmatic launch needs", () => {
  const dir = path.join(REPO_ROOT, "native/cuda/kernels");
  const kernels = fs.readdirSync(dir).filter((f) => f.endsWith(".cc")).flatMap((file) => {
    const source = fs.readFileSync(path.join(dir, file), "utf8");
    return [...source.matchAll(/extern "C" __global__[^{]*?void (\w+)\s*\([^{]*\{\s*([^;]*;)/g)].map((m) => ({ name: `${file}: ${m[1]}`, first: m[2] }));
  });
  assert.ok(kernels.length >= 60, `found ${kernels.length} kernels`);
  assert.deepEqual(kernels.filter((k) => k.first !== "AwaitPriorGrid();").map((k) => k.name), []);
});

test("FINETUNE_CUDA_PDL=1 launches kernels with programmatic dependent launch on sm_90, each thread waiting first; off by default", { skip: (NO_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  // The emulator fails a programmatic launch in which a thread never reached AwaitPriorGrid().
  const script = `
    import { native } from ${DIST("backend/native.js")};
    import { torch } from ${DIST("torch.js")};
    const f = (x) => torch.nn.functional.layer_norm(x.mul(2).add(1), [3]).tolist();
    const x = torch.tensor([[1, 2, 4], [4, 5, 7.5]], { dtype: torch.float32 });
    console.log(JSON.stringify({ programmatic: native.cuda.programmaticLaunch(), y: f(x.to("cuda")), cpu: f(x) }));
  `;
  const run = (pdl: string | undefined) => withFakeCuda((home) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(home, "cache"), FTEMU_TRACE: "1" };
    delete env.FINETUNE_DISABLE_CUDA;
    delete env.FINETUNE_CUDA_PDL;
    if (pdl !== undefined) env.FINETUNE_CUDA_PDL = pdl;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8", timeout: 120_000 });
    assert.equal(child.status, 0, child.stderr);
    const launches = child.stderr.split("\n").filter((l) => /^ftemu: ft_\w+ grid/.test(l));
    return { ...JSON.parse(child.stdout) as { programmatic: boolean; y: number[][]; cpu: number[][] }, launches };
  }, { emulate: true });
  const on = run("1"), off = run(undefined);
  assert.equal(on.programmatic, true);
  assert.equal(off.programmatic, false);
  assert.ok(on.launches.length >= 3 && on.launches.every((l) => l.includes(" programmatic:")), on.launches.join("\n"));
  assert.ok(off.launches.length === on.launches.length && off.launches.every((l) => !l.includes("programmatic")), off.launches.join("\n"));
  for (const r of [on, off]) r.y.flat().forEach((v, i) => assert.ok(Math.abs(v - r.cpu.flat()[i]!) < 1e-5, `${r.y} vs the CPU's ${r.cpu}`));
});
