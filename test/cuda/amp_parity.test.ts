// Autocast on CUDA against the CPU: cuBLASLt's bf16/fp16 tensor-core GEMMs (float32 accumulation and output)
// give what the CPU computes from the same 16-bit values, for products and their gradients. Runs only where
// torch.cuda.is_available(); the Trainer's bf16/fp16 runs (test/training/trainer_mixed_precision.test.ts) run on
// the GPU there too, since the Trainer then picks it. A parameter's 16-bit copy (amp/autocast_weight.ts) is kept
// from one forward to the next and written by AdamW as it updates the parameter.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import { linear_gelu } from "../../src/ops/matmul.js";
import { packed_linear_attention } from "../../src/ops/attention.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import type { DType } from "../../src/tensor/dtype.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { lowpCopyOf } from "../../src/amp/lowp_copy.js";
import { native, UnaryGradOp, type DTypeCode } from "../../src/backend/native.js";
import { rawUnaryGrad } from "../../src/ops/elementwise.js";
import { maxAbsDiff, maxAbs } from "../helpers/compare.js";
import { AdamW } from "../../src/optim/index.js";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { REPO_ROOT } from "../helpers/paths.js";

const SKIP = !torch.cuda.is_available() && `no CUDA device: ${cudaInfo().reason}`;

function within(a: Tensor, b: Tensor, rtol: number, label: string): void {
  const got = a.cpu();
  const d = maxAbsDiff(got, b);
  assert.ok(d <= rtol * Math.max(1, maxAbs(b)), `${label}: max abs difference ${d}`);
}

test("autocast products and gradients on CUDA equal the CPU's from the same 16-bit values", { skip: SKIP }, () => {
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const g = new torch.Generator().manual_seed(3);
    const x = torch.randn([4, 67, 96], { generator: g });
    const w = torch.randn([160, 96], { generator: g }).mul(0.1);
    const b = torch.randn([160], { generator: g });
    const k = torch.randn([4, 96, 67], { generator: g });
    const run = (device: string) => {
      const [xd, wd, bd, kd] = [x, w, b, k].map((t) => t.detach().to(device).requires_grad_());
      const [y, z, p] = torch.autocast(device, { dtype }, () => [F.linear(xd!, wd!, bd!), linear_gelu(xd!, wd!, bd!), torch.matmul(xd!, kd!)]);
      assert.equal(y!.dtype, torch.float32);
      // linear_gelu's gradients are another test's: its backward reads the pre-activation rounded to 16 bits on CUDA
      y!.sum().add(p!.sum()).backward();
      return [y!, z!, p!, xd!.grad!, wd!.grad!, bd!.grad!, kd!.grad!];
    };
    const cpu = run("cpu");
    const cuda = run("cuda");
    ["linear", "linear_gelu", "matmul", "dx", "dW", "db", "dk"].forEach((name, i) => {
      if (name !== "linear_gelu") within(cuda[i]!, cpu[i]!, 1e-4, `${dtype} ${name}`);
    });
    // On CUDA linear_gelu's GEMM adds the bias rounded to 16 bits and writes the pre-activation in 16 bits, as
    // PyTorch's autocast does, and GELU is taken of that, in 16 bits: the CPU's GELU of the same rounded values,
    // rounded, give or take a 16-bit rounding the two GEMMs' different summation orders may tip the other way.
    const low = (t: Tensor) => t.to(dtype).float();
    const pre = low(torch.autocast("cpu", { dtype }, () => F.linear(x, w, low(b))));
    assert.equal(cuda[1]!.dtype, dtype, `${dtype}: linear_gelu's result is in the 16-bit dtype, as PyTorch's GELU under autocast`);
    within(cuda[1]!.float(), low(F.gelu(pre)), dtype === torch.bfloat16 ? 2 ** -7 : 2 ** -10, `${dtype} linear_gelu of the 16-bit pre-activation`);
    assert.ok(maxAbsDiff(cuda[1]!.float().cpu(), cpu[1]!) > 1e-4 * Math.max(1, maxAbs(cpu[1]!)), `${dtype}: linear_gelu of the float32 pre-activation`);
  }
});

/** t's 16-bit copy, asserted to hold exactly t's values rounded to `dtype` (as a cast rounds them). */
function exactCopy(t: Tensor, dtype: DType, label: string): Tensor {
  const copy = lowpCopyOf(t, dtype);
  assert.ok(copy, `${label}: no ${dtype} copy`);
  assert.deepEqual(copy.cpu().float().data(), t.cpu().to(dtype).float().data(), `${label}: the copy is not t rounded`);
  return copy;
}

test("under autocast, layer_norm, linear_gelu and dropout write their results' 16-bit copies, which linear reads while valid", { skip: SKIP }, () => {
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const g = new torch.Generator().manual_seed(5);
    const x = torch.randn([3, 5, 24], { generator: g }).cuda();
    const [lnw, lnb] = [torch.randn([24], { generator: g }).cuda(), torch.randn([24], { generator: g }).cuda()];
    const w = torch.randn([40, 24], { generator: g }).mul(0.2).cuda();
    const w2 = torch.randn([24, 40], { generator: g }).mul(0.2).cuda();
    const [b, b2] = [torch.randn([40], { generator: g }).cuda(), torch.randn([24], { generator: g }).cuda()];
    torch.no_grad(() => torch.autocast("cuda", { dtype }, () => {
      const h = F.layer_norm(x, [24], lnw, lnb);
      exactCopy(h, dtype, `${dtype} layer_norm`);
      // rows that are not read four values at a time, and rows longer than a warp takes (one block each)
      for (const cols of [22, 1100]) exactCopy(F.layer_norm(torch.randn([3, cols], { generator: g }).cuda(), [cols]), dtype, `${dtype} layer_norm of ${cols}`);
      const viaCopy = F.linear(h, w, b);
      assert.ok(lowpCopyOf(h, dtype), `${dtype}: linear released the copy its input owns`);
      assert.deepEqual(viaCopy.cpu().data(), F.linear(h.clone(), w, b).cpu().data(), `${dtype}: linear on the copy`);
      // linear_gelu's result is itself 16-bit, as PyTorch's GELU under autocast
      const z = linear_gelu(h, w, b);
      assert.equal(z.dtype, dtype, `${dtype} linear_gelu`);
      // dropout's copy, four values at a time and (an odd count) one at a time
      exactCopy(F.dropout(h, 0.25), dtype, `${dtype} dropout`);
      exactCopy(F.dropout(torch.randn([3, 7], { generator: g }).cuda(), 0.25), dtype, `${dtype} dropout of 21 values`);
      assert.equal(linear_gelu(h, w.narrow(0, 0, 38), b.narrow(0, 0, 38).contiguous()).dtype, dtype, `${dtype} linear_gelu of 38 features`);
      // a view carries the same view of the copy; a product reads it only where that view is contiguous
      const hT = h.transpose(0, 1);
      assert.ok(lowpCopyOf(hT, dtype), `${dtype}: the transposed view has no copy`);
      assert.deepEqual(F.linear(hT, w, b).cpu().data(), F.linear(hT.contiguous(), w, b).cpu().data(), `${dtype}: linear on a transposed view`);
      // the product reads the copy, not a cast of h: a changed copy changes it
      lowpCopyOf(h, dtype)!.fill_(0);
      assert.deepEqual(F.linear(h, w, b).cpu().data(), b.expand([3, 5, 40]).cpu().contiguous().data(), `${dtype}: linear ignored the copy`);
      // an in-place write to h invalidates its copy: the product casts h's new values
      h.mul_(0.5);
      assert.equal(lowpCopyOf(h, dtype), null, `${dtype}: the copy survived an in-place write`);
      assert.deepEqual(F.linear(h, w, b).cpu().data(), F.linear(h.clone(), w, b).cpu().data(), `${dtype}: linear after the write`);
    }));
    // no copy outside autocast
    assert.equal(F.layer_norm(x, [24], lnw, lnb)._lowp, null);
  }
});

test("a BERT block's chain (layer_norm -> linears, linear_gelu -> linear) on the 16-bit copies trains as on the CPU", { skip: SKIP }, () => {
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const g = new torch.Generator().manual_seed(9);
    const init = [
      torch.randn([4, 33, 48], { generator: g }), torch.randn([48], { generator: g }), torch.randn([48], { generator: g }),
      torch.randn([48, 48], { generator: g }).mul(0.1), torch.randn([48], { generator: g }),
      torch.randn([96, 48], { generator: g }).mul(0.1), torch.randn([96], { generator: g }),
      torch.randn([48, 96], { generator: g }).mul(0.1), torch.randn([48], { generator: g }),
    ];
    const run = (device: string) => {
      const p = init.map((t) => t.detach().to(device).requires_grad_());
      const [x, lnw, lnb, wq, bq, wi, bi, wo, bo] = p as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
      const out = torch.autocast(device, { dtype }, () => {
        const h = F.layer_norm(x, [48], lnw, lnb);
        const q = F.linear(h, wq, bq);
        const k = F.linear(h, wq, bq);
        const inter = linear_gelu(h, wi, bi);
        return F.linear(inter, wo, bo).add(q.mul(k));
      });
      out.mul(out).sum().backward();
      return [out, ...p.map((t) => t.grad!)];
    };
    const cpu = run("cpu");
    const cuda = run("cuda");
    // the output and the gradients through linear_gelu differ from the CPU's by its 16-bit pre-activation (GELU and
    // GELU' at the rounded value)
    const rtol = dtype === torch.bfloat16 ? 2e-2 : 3e-3;
    ["out", "dx", "dlnw", "dlnb", "dwq", "dbq", "dwi", "dbi", "dwo", "dbo"].forEach((name, i) => within(cuda[i]!, cpu[i]!, rtol, `${dtype} ${name}`));
  }
});

test("castColumnSums reads a linear layer's gradient once: the cast and column sums of the unfused kernels", { skip: SKIP }, () => {
  const g = new torch.Generator().manual_seed(11);
  // [2100, 8] splits its rows into chunks (a second kernel adds the partials); [800, 24] gives a thread 25 rows, a
  // whole batch and a part; 5 columns are fewer than a tile
  for (const [rows, cols] of [[70, 40], [2100, 8], [800, 24], [3, 5]] as const) {
    const grad = torch.randn([rows, cols], { generator: g }).mul(3).cuda();
    const pre32 = torch.randn([rows, cols], { generator: g }).mul(2).cuda();
    for (const dtype of [torch.bfloat16, torch.float16]) {
      // the gradient in float32, or 16-bit (linear_gelu's under autocast)
      for (const [pre, g16] of [[null, false], [pre32, false], [pre32.to(torch.bfloat16), false], [pre32.to(torch.float16), false],
        [pre32.to(dtype), true]] as const) {
        const label = `[${rows}, ${cols}] ${dtype}, pre ${pre?.dtype ?? "none"}${g16 ? `, gradient ${dtype}` : ""}`;
        const g = g16 ? grad.to(dtype) : grad;
        const dh = pre ? rawUnaryGrad(UnaryGradOp.GeluErf, pre.float(), g.float()) : g;
        const lowp = torch.empty([rows, cols], { dtype, device: "cuda" });
        const sums = torch.empty([cols], { device: "cuda" });
        native.cuda.castColumnSums(rows, cols, g.buffer, g.offset, pre?.buffer ?? null, pre?.offset ?? 0, (pre ?? g).dtype.code,
          dtype.code, lowp.buffer, sums.buffer, g.dtype.code);
        assert.deepEqual(lowp.cpu().float().data(), dh.to(dtype).cpu().float().data(), `${label}: the 16-bit gradient`);
        const expected = dh.sum(0);
        if (cols >= 8) assert.deepEqual(sums.cpu().data(), expected.cpu().data(), `${label}: the column sums`);
        else within(sums, expected.cpu(), 1e-6, `${label}: the column sums`);
        within(sums, dh.cpu().sum(0), 1e-6, `${label}: the column sums against the CPU's`);
      }
    }
  }
  assert.throws(() => native.cuda.castColumnSums(4, 4, torch.empty([4, 3], { device: "cuda" }).buffer, 0, null, 0, torch.float32.code,
    torch.bfloat16.code, torch.empty([16], { dtype: torch.bfloat16, device: "cuda" }).buffer, torch.empty([4], { device: "cuda" }).buffer), RangeError);
  // a 16-bit gradient of 16 values is 32 bytes; an integer dtype is no gradient's
  const [g16, lowp16, sums4] = [torch.empty([4, 4], { dtype: torch.bfloat16, device: "cuda" }),
    torch.empty([16], { dtype: torch.bfloat16, device: "cuda" }), torch.empty([4], { device: "cuda" })];
  assert.throws(() => native.cuda.castColumnSums(4, 8, g16.buffer, 0, null, 0, torch.bfloat16.code, torch.bfloat16.code,
    torch.empty([32], { dtype: torch.bfloat16, device: "cuda" }).buffer, torch.empty([8], { device: "cuda" }).buffer, torch.bfloat16.code), RangeError);
  assert.throws(() => native.cuda.castColumnSums(4, 4, g16.buffer, 0, null, 0, torch.bfloat16.code, torch.bfloat16.code,
    lowp16.buffer, sums4.buffer, torch.int64.code), /\(gDtype\) must be float32, float16 or bfloat16/);
});

test("castColumnSums' GELU' of every bfloat16 pre-activation (the hot part of the table from shared memory, the rest from global memory): the CPU's bits", { skip: SKIP }, () => {
  // one row: the column sums of ones times GELU'(pre) are GELU'(pre) itself, in float32
  const bits = new Uint32Array(65536).map((_, i) => i << 16);
  const pre = torch.tensor(new Float32Array(bits.buffer)).to(torch.bfloat16).reshape([1, 65536]);
  const ones = torch.ones([1, 65536]);
  const expected = rawUnaryGrad(UnaryGradOp.GeluErf, pre.float(), ones);
  const [preCuda, onesCuda] = [pre.cuda(), ones.cuda()];
  const hotTables = native.cuda.hotTables();
  try {
    for (const [hot, dtype] of [[true, torch.bfloat16], [true, torch.float16], [false, torch.bfloat16]] as const) {
      native.cuda.hotTables(hot);
      const label = `written ${dtype}${hot ? "" : ", every value from the global table"}`;
      const lowp = torch.empty([1, 65536], { dtype, device: "cuda" });
      const sums = torch.empty([65536], { device: "cuda" });
      native.cuda.castColumnSums(1, 65536, onesCuda.buffer, onesCuda.offset, preCuda.buffer, preCuda.offset, torch.bfloat16.code,
        dtype.code, lowp.buffer, sums.buffer);
      assert.deepEqual(sums.cpu().data(), expected.reshape([65536]).data(), `GELU' of each value, ${label}`);
      assert.deepEqual(lowp.cpu().float().data(), expected.to(dtype).float().data(), `the 16-bit copy, ${label}`);
    }
  } finally {
    native.cuda.hotTables(hotTables);
  }
});

test("castColumnSums looks GELU' up by the 16-bit pre-activation's bits: a graph captured before the table exists evaluates it, to the same bits", { skip: SKIP }, () => {
  // a new process, so that the capture comes before the process's first table
  const dist = JSON.stringify(path.join(REPO_ROOT, "dist/src"));
  const script = `
    const { torch } = await import(${dist} + "/torch.js");
    const { native } = await import(${dist} + "/backend/native.js");
    const gen = new torch.Generator().manual_seed(3);
    const [rows, cols] = [40, 24];
    const grad = torch.randn([rows, cols], { generator: gen }).mul(3).cuda();
    const out = {};
    for (const dtype of [torch.bfloat16, torch.float16]) {
      const pre = torch.randn([rows, cols], { generator: gen }).mul(4).to(dtype).cuda();
      const results = [0, 1].map(() => [torch.empty([rows, cols], { dtype, device: "cuda" }), torch.empty([cols], { device: "cuda" })]);
      const run = ([lowp, sums]) => native.cuda.castColumnSums(rows, cols, grad.buffer, grad.offset, pre.buffer, pre.offset,
        dtype.code, dtype.code, lowp.buffer, sums.buffer);
      const graph = new torch.cuda.CUDAGraph();
      torch.cuda.synchronize();
      torch.cuda.graph(graph, () => run(results[0]));
      graph.replay();
      console.error("ftemu: begin");
      run(results[1]);
      torch.cuda.synchronize();
      out[dtype.name] = results.map(([lowp, sums]) => [lowp.float().cpu().tolist(), sums.cpu().tolist()]);
    }
    console.log(JSON.stringify(out));`;
  const child = spawnSync(process.execPath, ["--input-type=module", "-e", script],
    { env: { ...process.env, FTEMU_TRACE: "1" }, encoding: "utf8", maxBuffer: 64 << 20 });
  assert.equal(child.status, 0, child.stderr.slice(-4000));
  const out = JSON.parse(child.stdout) as Record<string, [number[][], number[]][]>;
  for (const [dtype, [captured, looked_up]] of Object.entries(out)) {
    assert.deepEqual(looked_up, captured, `${dtype}: the table's GELU' and the evaluated one`);
  }
  // On the emulator the trace shows the first eager call building its dtype's table
  if (process.env.FINETUNE_CUDA_EMULATED === "1") {
    const kernels = child.stderr.split("\n").flatMap((l) => l.match(/^ftemu: (\S+) grid/)?.[1] ?? []);
    assert.equal(kernels.filter((k) => k === "ft_gelu_grad_table").length, 2, "one table per dtype");
  }
});

test("under autocast on CUDA linear_gelu saves its pre-activation in 16 bits: gradients from GELU' at the rounded value", { skip: SKIP }, () => {
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const g = new torch.Generator().manual_seed(13);
    const [x, w, b, gz] = [torch.randn([37, 24], { generator: g }), torch.randn([44, 24], { generator: g }).mul(0.3),
      torch.randn([44], { generator: g }), torch.randn([37, 44], { generator: g })];
    // the incoming gradient in float32, and in 16 bits as the next linear layer's backward writes it under autocast
    for (const incoming of [gz, gz.to(dtype)]) {
      const label = `${dtype}, incoming ${incoming.dtype}`;
      const [xd, wd, bd] = [x, w, b].map((t) => t.cuda().requires_grad_()) as [Tensor, Tensor, Tensor];
      const z = torch.autocast("cuda", { dtype }, () => linear_gelu(xd, wd, bd));
      z.backward(incoming.cuda());
      // the reference, on the CPU from the same 16-bit operands and bias: dh = gz * GELU'(pre rounded), its
      // products in float32
      const low = (t: Tensor) => t.to(dtype).float();
      const pre = torch.matmul(low(x), low(w).t()).add(low(b));
      const expect = (rounded: boolean) => {
        const dh = rawUnaryGrad(UnaryGradOp.GeluErf, rounded ? low(pre) : pre, incoming.float());
        return [torch.matmul(low(dh), low(w)), torch.matmul(low(dh).t(), low(x)), dh.sum(0)];
      };
      const got = [xd.grad!, wd.grad!, bd.grad!];
      expect(true).forEach((e, i) => within(got[i]!, e, 1e-4, `${label} ${["dx", "dW", "db"][i]}`));
      // and not the float32 pre-activation's gradients: the test tells the two apart
      const unrounded = expect(false);
      assert.ok(got.some((t, i) => maxAbsDiff(t.cpu(), unrounded[i]!) > 1e-4 * Math.max(1, maxAbs(unrounded[i]!))), `${label}: gradients of the float32 pre-activation`);
    }
  }
});

/** Runs `fn` counting the float32 casts to `dtype` of `n` elements the GPU's copy kernel makes. */
function countingCasts<T>(dtype: DTypeCode, n: number, fn: (count: () => number) => T): T {
  const copy = native.cuda.copy;
  let count = 0;
  native.cuda.copy = (shape, src, srcDtype, srcOff, srcStrides, dst, dstDtype, ...rest) => {
    if (srcDtype === 0 && dstDtype === dtype && shape.reduce((a, b) => a * b, 1) === n) count++;
    return copy(shape, src, srcDtype, srcOff, srcStrides, dst, dstDtype, ...rest);
  };
  try {
    return fn(() => count);
  } finally {
    native.cuda.copy = copy;
  }
}

test("packed_linear_attention under autocast reads its parameters' packed 16-bit copy: AdamW writes each one's rows, a stale one is cast again in place", { skip: SKIP }, () => {
  const dtype = torch.bfloat16;
  torch.manual_seed(6);
  // BERT's query, key and value: 2 heads of 32 each, the biases rounded to 16 bits with the product
  const ws = [0, 1, 2].map(() => torch.randn([64, 40]).mul(0.2).to("cuda").requires_grad_(true));
  const bs = [0, 1, 2].map(() => torch.randn([64]).to("cuda").requires_grad_(true));
  const x = torch.randn([3, 5, 40]).to("cuda");
  const optimizer = new AdamW([...ws, ...bs], { lr: 1e-2 });
  const run = (cache_enabled: boolean) => torch.autocast("cuda", { dtype, cache_enabled }, () => packed_linear_attention(x, ws, bs, 2));
  // the product stacked and cast afresh (no copies kept), which the packed copy must reproduce bit for bit
  const fresh = () => torch.no_grad(() => run(false).cpu().data());
  const stackCalls = () => {
    let calls = 0;
    const castMany = native.cuda.castMany;
    native.cuda.castMany = (...args) => {
      calls++;
      return castMany(...args);
    };
    try {
      run(true).dispose();
    } finally {
      native.cuda.castMany = castMany;
    }
    return calls;
  };

  const y = run(true);
  assert.deepEqual(y.cpu().data(), fresh(), "the first product");
  const copies = [...ws, ...bs].map((p) => exactCopy(p, dtype, "after the first product"));
  assert.ok(copies.slice(1, 3).every((c) => c.storage === copies[0]!.storage), "the weights' copies are rows of one packed copy");
  assert.ok(copies.slice(4).every((c) => c.storage === copies[3]!.storage), "so are the biases'");
  y.sum().backward();
  optimizer.step();
  optimizer.zero_grad();
  [...ws, ...bs].forEach((p, i) => assert.equal(exactCopy(p, dtype, `parameter ${i} after an AdamW step`), copies[i]));
  assert.equal(stackCalls(), 0, "a product after the step stacks nothing");
  assert.deepEqual(run(true).cpu().data(), fresh(), "the product after the step");

  torch.no_grad(() => ws[1]!.mul_(2));
  assert.equal(lowpCopyOf(ws[1]!, dtype), null, "an in-place write makes its rows stale");
  assert.deepEqual(run(true).cpu().data(), fresh(), "the product after the in-place write");
  assert.equal(exactCopy(ws[1]!, dtype, "re-cast"), copies[1], "into the same rows");
});

test("autocast keeps a parameter's 16-bit copy: AdamW writes it, the next forward casts no weight, an in-place write re-casts", { skip: SKIP }, () => {
  for (const dtype of [torch.bfloat16, torch.float16]) {
    torch.manual_seed(5);
    const lin = new torch.nn.Linear(96, 160).to("cuda");
    const x = torch.randn([4, 67, 96]).to("cuda");
    const optimizer = new AdamW(lin.parameters(), { lr: 1e-2 });
    const forward = () => torch.autocast("cuda", { dtype }, () => lin(x) as Tensor);
    // the product of a weight that is no parameter, cast afresh
    const fresh = () => torch.autocast("cuda", { dtype }, () => F.linear(x, lin.weight.detach(), lin.bias!.detach()));
    const copy = countingCasts(dtype.code, lin.weight.numel(), (casts) => {
      forward().sum().backward();
      assert.equal(casts(), 1, `${dtype}: the first forward casts the weight`);
      optimizer.step();
      optimizer.zero_grad();
      const copy = exactCopy(lin.weight, dtype, `${dtype}: after an AdamW step`);

      const castsBefore = casts();
      const y = forward();
      assert.equal(casts(), castsBefore, `${dtype}: the second forward casts no weight`);
      assert.equal(lowpCopyOf(lin.weight, dtype), copy);
      assert.deepEqual(y.cpu().data(), fresh().cpu().data(), `${dtype}: the forward reading the copy`);
      torch.no_grad(() => forward()).dispose();
      assert.equal(lowpCopyOf(lin.weight, dtype), copy, `${dtype}: a forward without grad leaves the copy alone`);

      torch.no_grad(() => lin.weight.mul_(2));
      assert.equal(lowpCopyOf(lin.weight, dtype), null, `${dtype}: an in-place write makes the copy stale`);
      const before = casts();
      const z = forward();
      assert.equal(casts(), before + 1, `${dtype}: the forward after an in-place write casts again`);
      assert.equal(exactCopy(lin.weight, dtype, `${dtype}: re-cast`), copy, `${dtype}: into the same memory`);
      assert.deepEqual(z.cpu().data(), fresh().cpu().data(), `${dtype}: the forward after an in-place write`);
      return copy;
    });
    lin.to("cpu");
    assert.ok(copy._disposed, `${dtype}: the copy dies with the parameter that .to() replaced`);
    const uncached = new torch.nn.Linear(96, 160).to("cuda");
    torch.autocast("cuda", { dtype, cache_enabled: false }, () => uncached(x) as Tensor).sum().backward();
    assert.equal(uncached.weight._lowp, null, `${dtype}: cache_enabled: false keeps no copy`);
  }
});

test("under bf16 autocast with the side stream on, a BERT layer's backward forks it for each linear layer and gives the main stream's bits", { skip: SKIP }, async () => {
  const { BertConfig } = await import("../../src/models/bert/configuration_bert.js");
  const { BertLayer } = await import("../../src/models/bert/modeling_bert.js");
  const config = new BertConfig({ hidden_size: 64, num_attention_heads: 2, intermediate_size: 128, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 });
  torch.manual_seed(0);
  const layer = new BertLayer(config).to("cuda").train();
  const input = torch.randn([2, 7, 64]).to("cuda");
  const upstream = torch.randn([2, 7, 64]).to("cuda");
  const bits = (t: Tensor) => Array.from(new Uint32Array(new Float32Array(t.cpu().data() as Float32Array).buffer));
  /** the gradients of the input and of every parameter, and how many forks the backward made */
  const run = (side: boolean): { grads: number[][]; forks: number } => {
    const fork = native.cuda.sideStreamFork;
    let forks = 0;
    native.cuda.sideStreamFork = () => {
      forks++;
      fork();
    };
    const before = native.cuda.sideStreamGemms();
    native.cuda.sideStreamGemms(side ? "on" : "off");
    try {
      const hidden = input.clone().requires_grad_(true);
      const out = torch.autocast("cuda", { dtype: torch.bfloat16 }, () => layer(hidden, torch.zeros([2, 1, 1, 7]).to("cuda")));
      out.backward(upstream);
      const grads = [hidden.grad!, ...layer.parameters().map((p) => p.grad!)].map(bits);
      layer.zero_grad();
      return { grads, forks };
    } finally {
      native.cuda.sideStreamGemms(before);
      native.cuda.sideStreamFork = fork;
    }
  };
  const main = run(false);
  const side = run(true);
  assert.equal(main.forks, 0);
  // the query/key/value projection, the attention output, the intermediate and the output layer
  assert.equal(side.forks, 4);
  side.grads.forEach((g, i) => assert.deepEqual(g, main.grads[i], `gradient ${i}`));
});
