// Every op of the engine on CUDA against the CPU on random inputs: forward values and input gradients; then the
// tiny BERT classifier's training trace (the CPU matches transformers': test/engine/golden_bert.test.ts) and flat
// memory over 100 steps. Runs only where torch.cuda.is_available(); bench/gpu-check.sh runs it on a GPU.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import { Tensor } from "../../src/tensor/tensor.js";
import * as ops from "../../src/ops/index.js";
import * as F from "../../src/nn/functional.js";
import { dropout_add, dropout_add_layer_norm, embedding_sum, masked_softmax } from "../../src/ops/functional.js";
import { linear_gelu } from "../../src/ops/matmul.js";
import { clip_grad_norm_, clip_grad_norm_deferred } from "../../src/nn/utils.js";
import { AdamW, get_scheduler } from "../../src/optim/index.js";
import { BertForSequenceClassification } from "../../src/models/index.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { native } from "../../src/backend/native.js";
import { TINY_BERT_SEQCLS } from "../helpers/paths.js";
import { rng } from "../helpers/rng.js";
import { leafTensors, planBackward, randomLeafValues, randomPlan } from "../helpers/random_graphs.js";
import { goldenBatch } from "../helpers/golden_batches.js";
import { NO_LAUNCH_TRACE, launches } from "../helpers/launch_trace.js";

const SKIP = !torch.cuda.is_available() && `no CUDA device: ${cudaInfo().reason}`;
// On the CPU emulation of CUDA (test/cuda/emulated.test.ts) a training step takes seconds, not milliseconds.
const STEPS = process.env.FINETUNE_CUDA_EMULATED === "1" ? 14 : 100;
const random = rng(1234);

function randn(shape: number[], scale = 1, shift = 0): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = Array.from({ length: n }, () => shift + scale * (random() * 2 - 1));
  return torch.tensor(v, { dtype: torch.float32 }).reshape(shape);
}

/** Largest |a - b| / (1 + |b|) over all elements, read on the host. */
function relErr(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape]);
  const x = a.cpu().data() as Float32Array;
  const y = b.cpu().data() as Float32Array;
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Number.isNaN(x[i]) && Number.isNaN(y[i]) ? 0 : Math.abs(x[i] - y[i]) / (1 + Math.abs(y[i]));
    worst = Math.max(worst, Number.isNaN(d) ? Infinity : d);
  }
  return worst;
}

function assertClose(a: Tensor, b: Tensor, tol: number, label: string): void {
  const e = relErr(a, b);
  assert.ok(e <= tol, `${label}: relative error ${e} > ${tol}`);
}

/**
 * Runs `fn` on CPU inputs and on their CUDA copies; compares the outputs and, for float outputs, every float
 * input's gradient under the same random upstream gradient.
 */
function parity(label: string, inputs: Tensor[], fn: (xs: Tensor[]) => Tensor, tol = 1e-5): void {
  const cpu = inputs.map((t) => (t.dtype === torch.float32 ? t.detach().requires_grad_(true) : t));
  const gpu = inputs.map((t) => {
    const g = t.detach().to("cuda");
    return t.dtype === torch.float32 ? g.requires_grad_(true) : g;
  });
  const outCpu = fn(cpu);
  const outGpu = fn(gpu);
  assert.equal(outGpu.device.type, "cuda", `${label} runs on the GPU`);
  assert.equal(outGpu.dtype, outCpu.dtype, `${label} dtype`);
  assertClose(outGpu.float(), outCpu.float(), tol, `${label} forward`);
  if (!outCpu.requires_grad) return;
  const upstream = randn([...outCpu.shape]);
  outCpu.backward(upstream);
  outGpu.backward(upstream.to("cuda"));
  cpu.forEach((t, i) => {
    if (!t.requires_grad) return;
    assert.ok(gpu[i].grad, `${label}: input ${i} has a gradient on the GPU`);
    assert.equal(gpu[i].grad!.device.type, "cuda");
    assertClose(gpu[i].grad!, t.grad!, tol * 10, `${label} grad of input ${i}`);
  });
}

test("elementwise, broadcasting, comparisons and casts", { skip: SKIP }, () => {
  const a = randn([4, 5, 6]);
  const b = randn([5, 1]);
  const pos = randn([4, 5, 6], 0.9, 1);
  for (const [name, f] of [
    ["add", (x: Tensor[]) => x[0].add(x[1])], ["sub", (x: Tensor[]) => x[0].sub(x[1])],
    ["mul", (x: Tensor[]) => x[0].mul(x[1])], ["div", (x: Tensor[]) => x[0].div(x[1].abs().add(0.5))],
    ["maximum", (x: Tensor[]) => x[0].maximum(x[1])], ["minimum", (x: Tensor[]) => x[0].minimum(x[1])],
  ] as const) parity(name, [a, b], f as (x: Tensor[]) => Tensor);
  for (const [name, f] of [
    ["neg", (x: Tensor) => x.neg()], ["exp", (x: Tensor) => x.exp()], ["tanh", (x: Tensor) => x.tanh()],
    ["sigmoid", (x: Tensor) => x.sigmoid()], ["relu", (x: Tensor) => x.relu()], ["abs", (x: Tensor) => x.abs()],
    ["square", (x: Tensor) => x.square()], ["gelu", (x: Tensor) => F.gelu(x)], ["gelu tanh", (x: Tensor) => F.gelu(x, "tanh")],
    ["softplus", (x: Tensor) => F.softplus(x)], ["pow 3", (x: Tensor) => x.pow(3)], ["sign", (x: Tensor) => x.sign()],
    ["clamp", (x: Tensor) => x.clamp(-0.5, 0.5)], ["rsub", (x: Tensor) => x.rsub(2)], ["scalar div", (x: Tensor) => x.div(3)],
  ] as const) parity(name, [a], (x) => f(x[0]));
  for (const [name, f] of [
    ["log", (x: Tensor) => x.log()], ["sqrt", (x: Tensor) => x.sqrt()], ["rsqrt", (x: Tensor) => x.rsqrt()],
    ["reciprocal", (x: Tensor) => x.reciprocal()],
  ] as const) parity(name, [pos], (x) => f(x[0]));
  for (const op of ["eq", "ne", "lt", "le", "gt", "ge"] as const) parity(op, [a, b], (x) => x[0][op](x[1]));
  parity("where", [a, b], (x) => ops.where(x[0].gt(0), x[0], x[1]));
  parity("masked_fill", [a], (x) => x[0].masked_fill(x[0].lt(0), -1));
  for (const dtype of [torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool]) {
    parity(`cast to ${dtype}`, [a], (x) => x[0].mul(3).to(dtype).float());
  }
  parity("int64 arithmetic", [torch.tensor([[1, -2, 3], [4, 5, -6]])], (x) => x[0].add(x[0]).mul(3));
});

test("views, copies, joins and reductions", { skip: SKIP }, () => {
  const a = randn([3, 4, 5]);
  parity("transpose contiguous", [a], (x) => x[0].transpose(0, 2).contiguous());
  parity("permute + reshape", [a], (x) => x[0].permute([2, 0, 1]).reshape([5, 12]).mul(1));
  parity("narrow", [a], (x) => x[0].narrow(1, 1, 2).mul(2));
  parity("select", [a], (x) => x[0].select(2, 3).mul(2));
  parity("expand", [randn([3, 1, 5])], (x) => x[0].expand([3, 4, 5]).mul(1));
  parity("cat", [a, randn([3, 2, 5])], (x) => torch.cat([x[0], x[1]], 1));
  parity("stack", [a, randn([3, 4, 5])], (x) => torch.stack([x[0], x[1]], 0));
  for (const dim of [0, 1, 2]) {
    parity(`sum ${dim}`, [a], (x) => x[0].sum(dim));
    parity(`mean ${dim} keepdim`, [a], (x) => x[0].mean(dim, true));
    parity(`max ${dim}`, [a], (x) => x[0].max(dim).values);
    parity(`argmax ${dim}`, [a], (x) => x[0].argmax(dim));
    parity(`amax ${dim}`, [a], (x) => x[0].amax(dim));
  }
  parity("sum all", [a], (x) => x[0].sum());
  parity("var", [a], (x) => x[0].var(1));
  parity("norm", [a], (x) => x[0].norm());
  parity("index", [a], (x) => x[0].index([1]).mul(1));
  const big = randn([1 << 20]);
  parity("sum of 2^20", [big], (x) => x[0].sum(), 1e-4);
});

// The engine's gradient hand-offs on the GPU's kernels: random graphs of linear layers (whose backward may add into
// a gradient already summed, a GEMM with beta 1 here), elementwise ops, tanh and a broadcast bias leaf, with leaves
// and subexpressions feeding several ops (test/helpers/random_graphs.ts); every leaf's gradient as on the CPU.
test("random graphs reusing leaves and subexpressions: the CPU's gradients", { skip: SKIP }, () => {
  const r = rng(404);
  const trials = process.env.FINETUNE_CUDA_EMULATED === "1" ? 25 : 100;
  for (let trial = 0; trial < trials; trial++) {
    const plan = randomPlan(r);
    const init = randomLeafValues(r);
    // every fourth graph runs its backward twice (retain_graph), accumulating into .grad
    const run = (device: "cpu" | "cuda") => {
      const leaves = leafTensors(init, device);
      planBackward(plan, leaves, trial % 4 === 0 ? 2 : 1);
      return leaves;
    };
    const [cpu, cuda] = [run("cpu"), run("cuda")];
    for (const name of ["x", "w", "c"] as const) {
      const [want, got] = [cpu[name].grad, cuda[name].grad];
      assert.equal(got === null, want === null, `trial ${trial}: d${name} exists on both devices or neither`);
      if (want && got) assert.ok(relErr(got, want) < 1e-5, `trial ${trial}: d${name} ${relErr(got, want)}`);
    }
  }
});

test("GEMM: every transpose, batches, views and beta (tf32 off)", { skip: SKIP }, () => {
  torch.backends.cuda.matmul.allow_tf32 = false;
  for (const [m, k, n] of [[1, 1, 1], [7, 13, 5], [64, 64, 64], [67, 768, 64], [128, 3072, 96]]) {
    parity(`mm ${m}x${k}x${n}`, [randn([m, k]), randn([k, n])], (x) => x[0].matmul(x[1]), 1e-4);
    parity(`mm A^T ${m}x${k}x${n}`, [randn([k, m]), randn([k, n])], (x) => x[0].t().matmul(x[1]), 1e-4);
    parity(`mm B^T ${m}x${k}x${n}`, [randn([m, k]), randn([n, k])], (x) => x[0].matmul(x[1].t()), 1e-4);
  }
  parity("bmm", [randn([6, 9, 17]), randn([6, 17, 11])], (x) => x[0].bmm(x[1]), 1e-4);
  parity("attention-shaped matmul", [randn([2, 4, 10, 16]), randn([2, 4, 10, 16])], (x) => x[0].matmul(x[1].transpose(-1, -2)), 1e-4);
  parity("broadcast matmul", [randn([3, 5, 8]), randn([8, 4])], (x) => x[0].matmul(x[1]), 1e-4);
  parity("offset views", [randn([10, 12]), randn([12, 9])], (x) => x[0].narrow(0, 3, 5).matmul(x[1].narrow(1, 1, 7)), 1e-4);
  parity("linear", [randn([4, 6, 32]), randn([16, 32]), randn([16])], (x) => F.linear(x[0], x[1], x[2]), 1e-4);
  // A bias view off cuBLASLt's 16-byte boundary is copied before the GEMM's bias epilogue reads it
  parity("linear, bias view", [randn([5, 32]), randn([16, 32]), randn([19])], (x) => F.linear(x[0], x[1], x[2].narrow(0, 1, 16)), 1e-4);
  parity("linear, K = 0", [randn([3, 0]), randn([4, 0]), randn([4])], (x) => F.linear(x[0], x[1], x[2]));
  parity("linear_gelu", [randn([24, 32]), randn([48, 32]), randn([48])], (x) => linear_gelu(x[0], x[1], x[2]), 1e-4);
  parity("K = 0", [randn([3, 0]), randn([0, 4])], (x) => x[0].matmul(x[1]));
  torch.backends.cuda.matmul.allow_tf32 = true;
  parity("tf32 mm", [randn([64, 256]), randn([256, 64])], (x) => x[0].matmul(x[1]), 5e-2);
  torch.backends.cuda.matmul.allow_tf32 = false;
});

test("GEMM: shapes differing only in the token count (M, or K of a weight gradient), within a factor of 4, share one cuBLASLt algorithm", { skip: SKIP }, () => {
  torch.backends.cuda.matmul.allow_tf32 = false;
  // an algorithm from the disk cache (an earlier run's heuristic query) counts as the family's query
  const queries = () => {
    const stats = native.cuda.gemmStats();
    return stats.heuristic_queries + stats.disk_algos;
  };
  // widths no other test uses, so that these families are new
  const weight = randn([44, 52]);
  const before = queries();
  for (const tokens of [24, 40, 56]) {
    parity(`linear, ${tokens} tokens`, [randn([tokens, 52]), weight, randn([44])], (x) => F.linear(x[0], x[1], x[2]), 1e-4);
  }
  // forward (bias epilogue), input gradient and weight gradient: one query each, for the first token count only
  assert.equal(queries() - before, 3);
  // token counts more than 4 times apart choose their own
  parity("linear, 4 tokens", [randn([4, 52]), weight, randn([44])], (x) => F.linear(x[0], x[1], x[2]), 1e-4);
  assert.equal(queries() - before, 6);
  parity("another width", [randn([24, 36]), randn([44, 36])], (x) => F.linear(x[0], x[1]), 1e-4);
  assert.ok(queries() - before > 6, "a GEMM of other widths asks the heuristic");
});

test("GEMM with a 16-bit output: the float32 products plus the 16-bit bias, rounded to the operands' dtype", { skip: SKIP }, () => {
  const [M, N, K] = [37, 24, 40];
  const a = randn([M, K]), b = randn([N, K]), bias = randn([N]);
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const [a16, b16, bias16] = [a, b, bias].map((t) => t.to(dtype));
    const expected = a16.float().matmul(b16.float().t()).add(bias16.float());
    const [ga, gb, gbias] = [a16, b16, bias16].map((t) => t.to("cuda"));
    const out = torch.empty([M, N], { dtype, device: "cuda" });
    const gemm = (beta: number, c: number) => native.cuda.sgemm(false, true, M, N, K, 1, ga.buffer, 0, K, 0, gb.buffer, 0, K, 0, beta,
      out.buffer, 0, N, 0, 1, dtype.code, gbias.buffer, 0, c);
    gemm(0, dtype.code);
    // rounded once from float32 (half an ulp of the 16-bit dtype), whatever order the products were summed in
    assertClose(out.float(), expected, dtype === torch.bfloat16 ? 2 ** -8 : 2 ** -11, `${dtype} output`);
    assert.throws(() => gemm(1, dtype.code), /a bias is added only with batch 1 and beta 0/);
    assert.throws(() => gemm(0, dtype === torch.bfloat16 ? torch.float16.code : torch.bfloat16.code), /cDtype must be float32, or A and B's 16-bit dtype with beta 0/);
  }
});

const NO_TRACE = SKIP || NO_LAUNCH_TRACE;

test("embedding's and cross_entropy's backward check no ids the forward checked: a check each, not two", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const F = await import(dist + "/nn/functional.js");
    const w = torch.randn([10, 4]).to("cuda").requires_grad_(true);
    const ids = torch.tensor([[1, 2, 3]]).to("cuda");
    const target = torch.tensor([0, 2, 1]).to("cuda");
    torch.cuda.synchronize();
    console.error("ftemu: begin");
    F.cross_entropy(F.embedding(ids, w).reshape([3, 4]), target).backward();
    torch.cuda.synchronize();
  `);
  assert.equal(kernels.filter((k) => k === "ft_first_invalid_index").length, 2, kernels.join(" "));
  assert.ok(kernels.includes("ft_embedding_backward") && kernels.includes("ft_cross_entropy_backward"), kernels.join(" "));
});

test("embedding_sum on CUDA: the composition's bits, forward and gradients, in one launch with the ids' checks", { skip: SKIP }, () => {
  const word = torch.tensor([[1, 0, 3, 3, 7], [2, 9, 0, 1, 1]]);
  const types = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]);
  const positions = torch.tensor([[0, 1, 2, 3, 4]]);
  // D 16 adds four columns an access, D 6 one; the position table is [1, S], broadcast over the batch
  for (const D of [16, 6]) {
    const tables = [randn([10, D]), randn([2, D]), randn([6, D])];
    const upstream = randn([2, 5, D]);
    const run = (device: string, fused: boolean) => {
      const ws = tables.map((t) => t.to(device).requires_grad_(true));
      const ids = [word, types, positions].map((t) => t.to(device));
      const out = fused
        ? embedding_sum([ids[0]!, ids[1]!, ids[2]!], [ws[0]!, ws[1]!, ws[2]!], [0, null, null])
        : ops.add(ops.add(F.embedding(ids[0]!, ws[0]!, 0), F.embedding(ids[1]!, ws[1]!)), F.embedding(ids[2]!, ws[2]!));
      out.backward(upstream.to(device));
      return [out, ...ws.map((w) => w.grad!)].map((t) => Array.from(t.cpu().data() as Float32Array));
    };
    const composed = run("cuda", false), fused = run("cuda", true), cpu = run("cpu", true);
    ["forward", "word grad", "type grad", "position grad"].forEach((label, i) => {
      assert.deepEqual(fused[i], composed[i], `D ${D} ${label}: the composition's bits`);
      assert.deepEqual(fused[i], cpu[i], `D ${D} ${label}: the CPU's bits`);
    });
  }
  const ws = [randn([10, 4]), randn([2, 4]), randn([6, 4])].map((t) => t.to("cuda"));
  const bad = torch.tensor([[0, 1, 2, 6, 4]]).to("cuda");
  assert.throws(() => embedding_sum([word.to("cuda"), types.to("cuda"), bad], [ws[0]!, ws[1]!, ws[2]!], [0, null, null]),
    (e: Error) => e instanceof RangeError && e.message === "embedding: id 6 at position 3 is outside [0, V) with V = 6");
});

test("BERT's embeddings on CUDA: one launch for the lookups and additions, each table's ids checked once", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const { BertConfig, BertModel } = await import(dist + "/models/index.js");
    const config = new BertConfig({ vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32 });
    const model = new BertModel(config).to("cuda");
    const ids = torch.tensor([[1, 2, 3], [4, 5, 6]]).to("cuda");
    torch.cuda.synchronize();
    console.error("ftemu: begin");
    model.embeddings(ids, torch.tensor([[0, 0, 1], [0, 1, 1]]).to("cuda"));
    torch.cuda.synchronize();
  `);
  assert.deepEqual(kernels.slice(0, 4), ["ft_first_invalid_index", "ft_first_invalid_index", "ft_first_invalid_index", "ft_embedding_sum"], kernels.join(" "));
  assert.ok(!kernels.includes("ft_embedding_forward") && !kernels.some((k) => k.startsWith("ft_binary")), kernels.join(" "));
});

test("ids and targets written in place after the forward are checked again by the backward", { skip: SKIP }, () => {
  const w = randn([10, 4]).to("cuda").requires_grad_(true);
  const ids = torch.tensor([[1, 2, 3]]).to("cuda");
  const e = F.embedding(ids, w);
  ids.fill_(12);
  assert.throws(() => e.sum().backward(), RangeError);
  const logits = randn([3, 4]).to("cuda").requires_grad_(true);
  const target = torch.tensor([0, 2, 1]).to("cuda");
  const loss = F.cross_entropy(logits, target);
  target.fill_(7);
  assert.throws(() => loss.backward(), RangeError);
});

test("softmax, layer norm, embedding, cross-entropy, dropout", { skip: SKIP }, () => {
  const x = randn([6, 33], 3);
  parity("softmax", [x], (t) => F.softmax(t[0], -1));
  parity("log_softmax", [x], (t) => F.log_softmax(t[0], -1));
  parity("softmax dim 0", [x], (t) => F.softmax(t[0], 0));
  const mask = torch.tensor([[0, 0, 0, -1e9, -1e9], [0, 0, 0, 0, 0]], { dtype: torch.float32 });
  // The mask is not an input of parity(): masks may not require grad.
  parity("masked_softmax", [randn([2, 3, 4, 5])], (t) => masked_softmax(t[0], mask.to(t[0].device), 0.125));
  parity("masked_softmax no mask", [randn([2, 3, 4, 5])], (t) => masked_softmax(t[0], null, 0.5));
  parity("layer_norm", [randn([5, 7, 48], 2, 1), randn([48]), randn([48])], (t) => F.layer_norm(t[0], [48], t[1], t[2], 1e-12));
  parity("layer_norm no affine", [randn([9, 768])], (t) => F.layer_norm(t[0], [768]));
  const ids = torch.tensor([[1, 0, 3, 3], [2, 9, 0, 1]]);
  parity("embedding", [ids, randn([10, 16])], (t) => F.embedding(t[0], t[1]));
  parity("embedding padding_idx", [ids, randn([10, 16])], (t) => F.embedding(t[0], t[1], 0));
  assert.throws(() => F.embedding(torch.tensor([10]).to("cuda"), randn([10, 4]).to("cuda")).cpu(), RangeError);
  const targets = torch.tensor([3, -100, 0, 32, 5, 7]);
  for (const reduction of ["mean", "sum", "none"] as const) {
    parity(`cross_entropy ${reduction}`, [x, targets], (t) => F.cross_entropy(t[0], t[1], { reduction }));
  }
  // Masks come from the same counter-based draws on both devices, so dropout agrees element by element.
  const dropInput = randn([64, 33]);
  torch.manual_seed(7);
  const dropCpu = F.dropout(dropInput, 0.3);
  torch.manual_seed(7);
  const dropGpu = F.dropout(dropInput.to("cuda"), 0.3);
  assertClose(dropGpu, dropCpu, 1e-6, "dropout");
  // A generator per call: both devices draw the same masks, so the gradients (one backward kernel) agree too.
  const seeded = () => new torch.Generator().manual_seed(5);
  parity("dropout backward", [randn([7, 33])], (t) => F.dropout(t[0], 0.3, true, seeded()));
  parity("dropout_add", [randn([7, 33]), randn([7, 33])], (t) => {
    const y = dropout_add(t[0], t[1], 0.3, true, seeded());
    assert.equal(y.grad_fn?.name(), "DropoutAddBackward0", "the fused kernel ran");
    return y;
  });
});

test("dropout_add_layer_norm: one graph node on CUDA, whose layer-norm backward also writes dropout's, with the composition's bits", { skip: SKIP }, () => {
  // a generator that has drawn 5 numbers: the first element's draw is word 1 of its Philox block
  const seeded = (drawn = 0) => {
    const g = new torch.Generator().manual_seed(8);
    if (drawn > 0) torch.rand([drawn], { generator: g });
    return g;
  };
  const bits = (t: Tensor | null | undefined) => Array.from(new Uint32Array(new Float32Array(t!.cpu().data() as Float32Array).buffer));
  // a warp a row: short rows (vector loads), rows whose length is not a multiple of 4; a team of warps a row (rows
  // too few for the SMs): BERT's (vector loads), not a multiple of 4; rows longer than one warp takes
  for (const [cols, drawn] of [[48, 0], [48, 5], [33, 5], [768, 5], [130, 0], [1100, 0]]) {
    for (const xNeedsGrad of [true, false]) {
      const label = `${cols} columns, ${drawn} drawn before${xNeedsGrad ? "" : ", x without grad"}`;
      const leaves = [randn([5, cols!]), randn([5, cols!]), randn([cols!]), randn([cols!])];
      const upstream = randn([5, cols!]).to("cuda");
      const run = (fused: boolean) => {
        const [x, r, w, b] = leaves.map((t, i) => t.to("cuda").requires_grad_(i !== 0 || xNeedsGrad));
        const y = fused
          ? dropout_add_layer_norm(x!, r!, 0.3, true, [cols!], w!, b!, 1e-12, seeded(drawn))
          : F.layer_norm(dropout_add(x!, r!, 0.3, true, seeded(drawn)), [cols!], w!, b!, 1e-12);
        y.backward(upstream);
        return { y, grad_fn: y.grad_fn?.name(), grads: [x, r, w, b].map((t) => t!.grad) };
      };
      const fused = run(true);
      const composed = run(false);
      assert.equal(fused.grad_fn, "DropoutAddLayerNormBackward0", `${label}: one node`);
      assert.deepEqual(bits(fused.y), bits(composed.y), `${label}: the output`);
      fused.grads.forEach((g, i) => {
        if (i === 0 && !xNeedsGrad) assert.equal(g, null, `${label}: x has no gradient`);
        else assert.deepEqual(bits(g), bits(composed.grads[i]), `${label}: the gradient of input ${i}`);
      });
    }
  }
  // on the CPU, and with dropout off, it is the composition itself
  const cpu = dropout_add_layer_norm(randn([2, 8]).requires_grad_(true), randn([2, 8]), 0.3, true, [8], null, null, 1e-5, seeded());
  assert.equal(cpu.grad_fn?.name(), "NativeLayerNormBackward0");
  const off = dropout_add_layer_norm(randn([2, 8]).to("cuda").requires_grad_(true), randn([2, 8]).to("cuda"), 0.3, false, [8], null, null, 1e-5);
  assert.equal(off.grad_fn?.name(), "NativeLayerNormBackward0");
});

test("under autocast, dropout_add_layer_norm's backward writes the 16-bit gradient and the bias gradient that the linear layer before it reads", { skip: SKIP }, () => {
  const seeded = () => new torch.Generator().manual_seed(4);
  const bits = (t: Tensor | null) => Array.from(new Uint32Array(new Float32Array(t!.cpu().data() as Float32Array).buffer));
  for (const dtype of [torch.bfloat16, torch.float16]) {
    // 150 rows: the launch's row blocks in three clusters
    const leaves = [randn([3, 50, 64]), randn([96, 64], 0.1), randn([96]), randn([3, 50, 96]), randn([96]), randn([96])];
    const upstream = randn([3, 50, 96]).to("cuda");
    const run = (fused: boolean) => {
      const [x, w, b, r, lnw, lnb] = leaves.map((t) => t.to("cuda").requires_grad_());
      const y = torch.autocast("cuda", { dtype }, () => {
        const h = F.linear(x!, w!, b!);
        return fused
          ? dropout_add_layer_norm(h, r!, 0.1, true, [96], lnw!, lnb!, 1e-12, seeded())
          : F.layer_norm(dropout_add(h, r!, 0.1, true, seeded()), [96], lnw!, lnb!, 1e-12);
      });
      y.backward(upstream);
      return [x, w, b, r, lnw, lnb].map((t) => t!.grad);
    };
    const fused = run(true);
    const composed = run(false);
    // the same 16-bit gradient in the GEMMs: dx and dW to the bit; the bias gradient summed in another order
    for (const [i, name] of [[0, "x"], [1, "weight"], [3, "residual"], [4, "layer norm weight"], [5, "layer norm bias"]] as const) {
      assert.deepEqual(bits(fused[i]!), bits(composed[i]!), `${dtype}: the gradient of the ${name}`);
    }
    assertClose(fused[2]!, composed[2]!.cpu(), 1e-6, `${dtype}: the bias gradient`);
  }
});

test("a BERT layer's two dropout_add_layer_norm backward kernels spare the linear layers before them a cast_column_sums each", { skip: NO_TRACE }, () => {
  const castsPerStep = (layers: number) => launches(`
    const { torch } = await import(dist + "/torch.js");
    const { BertConfig, BertForSequenceClassification } = await import(dist + "/models/index.js");
    const config = new BertConfig({ vocab_size: 50, hidden_size: 32, num_hidden_layers: ${layers}, num_attention_heads: 2,
      intermediate_size: 64, max_position_embeddings: 16 });
    const model = new BertForSequenceClassification(config).to("cuda");
    const input_ids = torch.randint(0, 50, [4, 12]).to("cuda");
    const labels = torch.tensor([0, 1, 1, 0]).to("cuda");
    const step = () => torch.autocast("cuda", { dtype: torch.bfloat16 }, () => model.forward({ input_ids, labels }).loss).backward();
    step();
    torch.cuda.synchronize();
    console.error("ftemu: begin");
    step();
    torch.cuda.synchronize();
  `).filter((k) => k === "ft_cast_column_sums").length;
  // per layer the intermediate layer's (GELU'); not the attention output's nor the output's, nor from sm_80 on (the
  // tensor-core attention kernels writing its gradient) the query/key/value's
  assert.equal(castsPerStep(2) - castsPerStep(1), torch.cuda.get_device_capability()[0] >= 8 ? 1 : 2);
});

test("cross_entropy's mean on CUDA: one kernel, the bits of the sum times 1 / the count; all targets ignored is NaN", { skip: SKIP }, () => {
  for (const N of [8, 1000]) {
    const logits = randn([N, 5]).to("cuda");
    const ids = Array.from({ length: N }, (_, i) => (i % 7 === 3 ? -100 : i % 5));
    const targets = torch.tensor(ids).to("cuda");
    const kept = ids.filter((t) => t !== -100).length;
    const mean = F.cross_entropy(logits, targets).item();
    const composed = F.cross_entropy(logits, targets, { reduction: "sum" }).mul(Math.fround(1 / kept)).item();
    assert.ok(Object.is(mean, composed), `N = ${N}: ${mean} vs ${composed}`);
    const cpu = F.cross_entropy(logits.cpu(), targets.cpu()).item();
    assert.ok(Math.abs(mean - cpu) < 1e-6, `N = ${N}: ${mean} vs the CPU's ${cpu}`);
  }
  const none = F.cross_entropy(randn([3, 4]).to("cuda"), torch.tensor([-100, -100, -100]).to("cuda"));
  assert.ok(Number.isNaN(none.item()), "no target left: NaN, as torch");
});

test("random numbers: the same (seed, offset) gives the same numbers on both devices", { skip: SKIP }, () => {
  const g1 = new torch.Generator().manual_seed(3);
  const g2 = new torch.Generator().manual_seed(3);
  const cpu = torch.rand([1000], { generator: g1 });
  const gpu = torch.rand([1000], { generator: g2, device: "cuda" });
  assert.equal(gpu.device.type, "cuda");
  assertClose(gpu, cpu, 1e-6, "rand");
  const n1 = torch.randn([1000], { generator: new torch.Generator().manual_seed(4) });
  const n2 = torch.randn([1000], { generator: new torch.Generator().manual_seed(4), device: "cuda" });
  assertClose(n2, n1, 1e-5, "randn");
});

test("clip_grad_norm_ and AdamW on the GPU match the CPU; clipping inside the update (step_clipped) is the same", { skip: SKIP }, () => {
  const init = [randn([30, 20]), randn([20]), randn([7])];
  const grads = [randn([30, 20], 5), randn([20], 5), randn([7], 5)];
  const run = (device: string, inUpdate = false) => {
    // A copy: on the CPU .to() is the tensor itself, which the steps would update for the CUDA run too.
    const params = init.map((p) => new torch.nn.Parameter(p.clone().to(device)));
    const opt = new AdamW(params, { lr: 1e-2, weight_decay: 0.01 });
    const norms: number[] = [];
    const norm = torch.zeros([], { device });
    const coef = torch.zeros([], { device });
    // Step 0's gradients are within the norm (nothing clipped), the later ones are clipped
    for (const [step, scale] of [0.01, 2, 3].entries()) {
      params.forEach((p, i) => { p.grad = grads[i].mul(scale).to(device); });
      if (inUpdate) {
        clip_grad_norm_deferred(params, 1.0, norm, coef);
        norms.push(norm.item());
        opt.step_clipped(coef);
      } else {
        norms.push(clip_grad_norm_(params, 1.0).item());
        opt.step();
      }
      assert.ok(step === 0 ? norms[step]! < 1 : norms[step]! > 1);
      opt.zero_grad();
    }
    return { params, norms };
  };
  const cpu = run("cpu");
  const gpu = run("cuda");
  gpu.norms.forEach((n, i) => assert.ok(Math.abs(n - cpu.norms[i]) <= 1e-5 * (1 + cpu.norms[i]), `norm ${i}: ${n} vs ${cpu.norms[i]}`));
  gpu.params.forEach((p, i) => assertClose(p, cpu.params[i], 1e-5, `param ${i} after 3 steps`));
  for (const [device, reference] of [["cuda", gpu], ["cpu", cpu]] as const) {
    const fused = run(device, true);
    assert.deepEqual(fused.norms, reference.norms, `${device}: the same norms`);
    fused.params.forEach((p, i) => assert.deepEqual(p.cpu().data(), reference.params[i]!.cpu().data(), `${device}: param ${i}, bit for bit`));
  }
  // gradients without elements: a norm of 0 and a factor that clips nothing
  const empty = new torch.nn.Parameter(torch.zeros([0]).to("cuda"));
  empty.grad = torch.zeros([0]).to("cuda");
  const [norm, coef] = [torch.zeros([], { device: "cuda" }), torch.zeros([], { device: "cuda" })];
  clip_grad_norm_deferred([empty], 1.0, norm, coef);
  assert.deepEqual([norm.item(), coef.item()], [0, Math.fround(1 / Math.fround(1e-6))]);
});

async function bertTrace(device: string) {
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  model.to(device);
  model.train();
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 });
  const scheduler = get_scheduler("linear", { optimizer, num_warmup_steps: 1, num_training_steps: 3 });
  const losses: number[] = [];
  let logits: Tensor | null = null;
  let grads: Record<string, Tensor> = {};
  for (let i = 0; i < 3; i++) {
    const out = model(goldenBatch(i, device));
    // Copies: on the CPU .cpu() is the tensor itself, whose memory the next call and zero_grad() release.
    if (i === 0) logits = out.logits.detach().cpu().clone();
    losses.push(out.loss.item());
    out.loss.backward();
    if (i === 0) grads = Object.fromEntries([...model.named_parameters()].map(([n, p]) => [n, p.grad!.cpu().clone()]));
    clip_grad_norm_(model.parameters(), 1.0);
    optimizer.step();
    scheduler.step();
    optimizer.zero_grad();
  }
  const params = Object.fromEntries(Object.entries(model.state_dict()).map(([n, p]) => [n, p.cpu()]));
  return { logits: logits!, losses, grads, params };
}

test("tiny BERT on the GPU, fp32: logits, loss, gradients and 3 AdamW steps match the CPU", { skip: SKIP }, async () => {
  torch.backends.cuda.matmul.allow_tf32 = false;
  const cpu = await bertTrace("cpu");
  const gpu = await bertTrace("cuda");
  assertClose(gpu.logits, cpu.logits, 1e-4, "logits");
  gpu.losses.forEach((l, i) => assert.ok(Math.abs(l - cpu.losses[i]) <= 1e-4, `loss ${i}: ${l} vs ${cpu.losses[i]}`));
  for (const [name, g] of Object.entries(cpu.grads)) assertClose(gpu.grads[name], g, 1e-4, `grad of ${name}`);
  for (const [name, p] of Object.entries(cpu.params)) assertClose(gpu.params[name], p, 1e-4, name);
});

test(`GPU memory stays flat over ${STEPS} training steps`, { skip: SKIP }, async () => {
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  model.to("cuda");
  model.train();
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4 });
  const inputs = goldenBatch(0, "cuda");
  let atStep10 = 0;
  for (let step = 0; step < STEPS; step++) {
    // Everything the step returns is disposed: memory the garbage collector has yet to reclaim varies from step
    // to step.
    const out = model(inputs);
    const loss = out.loss;
    loss.backward();
    loss.dispose();
    out.logits.dispose();
    // The norm is a GPU tensor: released now, not when the garbage collector finds it.
    clip_grad_norm_(model.parameters(), 1.0).dispose();
    optimizer.step();
    optimizer.zero_grad();
    if (step === 10) atStep10 = torch.cuda.memory_allocated();
  }
  torch.cuda.synchronize();
  assert.equal(torch.cuda.memory_allocated(), atStep10, `bytes allocated at step ${STEPS} equal step 10's`);
  assert.ok(torch.cuda.max_memory_allocated() >= atStep10);
});
