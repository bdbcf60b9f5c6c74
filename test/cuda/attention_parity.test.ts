// The fused attention kernels (native/cuda/kernels/attention.cc) against the CPU's composite of the same op: the
// output and the gradients of q, k and v, with every kind of mask and with dropout (both devices draw from the same
// generator state and keep the same probabilities), for S, T in {1, 7, 67, 128, 300} and D in {32, 64}; and the
// memory of a forward and backward, which must hold no S x T matrix; head dims 5, 33, 65 and 128 and views that are
// not 16-byte aligned; the layouts the kernels write (out and the gradients as [B, S, H, D], so that BERT's heads
// split and merge as views), out's 16-bit copy under autocast, and BERT's packed query/key/value projection against
// the three separate ones, and with the attention as one node (its projection in 16 bits under autocast); on the
// emulator, the kernels these launch. Runs only where torch.cuda.is_available();
// bench/gpu-check.sh runs it on a GPU.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import * as F from "../../src/nn/functional.js";
import { attentionHeadChoices, packed_linear_attention, packed_qkv_attention, type ScaledDotProductAttentionOptions } from "../../src/ops/attention.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { assertClose, assertCloseRelMax, maxAbs } from "../helpers/compare.js";
import { record } from "../../src/ops/record.js";
import { lowpCopyOf } from "../../src/amp/lowp_copy.js";
import { cat, stackGroupsAs, stackRowsAs } from "../../src/ops/join.js";
import { packed_linear } from "../../src/ops/matmul.js";
import { BertConfig } from "../../src/models/bert/configuration_bert.js";
import { BertSelfAttention } from "../../src/models/bert/modeling_bert.js";
import { AdamW } from "../../src/optim/index.js";
import type { Node } from "../../src/autograd/node.js";
import { NO_LAUNCH_TRACE, launches } from "../helpers/launch_trace.js";
import { native } from "../../src/backend/native.js";

const SKIP = !torch.cuda.is_available() && `no CUDA device: ${cudaInfo().reason}`;
// On the CPU emulation of CUDA (test/cuda/emulated.test.ts) every thread of a kernel is run one after another,
// so the checks leave out 300, keeping sizes that fall on and between the tile and row-block boundaries (32 keys,
// 16 and 8 rows).
const EMULATED = process.env.FINETUNE_CUDA_EMULATED === "1";
const LONG = EMULATED ? 100 : 300;

const randn = (shape: number[], seed: number) => torch.randn(shape, { generator: new torch.Generator().manual_seed(seed) });
const FLOAT_MIN = -3.4028234663852886e38;

/** BERT's additive key-padding mask [B, 1, 1, T]: batch b hides its last b * T / 3 keys; `hideAll` hides every key of the last batch. */
function paddingMask(B: number, T: number, hideAll = false): Tensor {
  const values = Array.from({ length: B * T }, (_, i) => {
    const b = Math.floor(i / T), t = i % T;
    if (hideAll && b === B - 1) return -Infinity;
    return t > 0 && t >= T - Math.floor((b * T) / 3) ? FLOAT_MIN : 0;
  });
  return torch.tensor(values, { dtype: torch.float32 }).reshape([B, 1, 1, T]);
}

/**
 * The output and the gradients of q, k, v on `device`, from generator seed `seed` and one upstream gradient. q, k, v
 * and the upstream gradient have `pad` more columns than D; the attention takes the views of their last D columns
 * (for pad > 0 rows that are not contiguous and, unless pad is a multiple of 4, not 16-byte aligned).
 */
function attend(device: string, q: Tensor, k: Tensor, v: Tensor, options: ScaledDotProductAttentionOptions, seed: number, pad: number): Tensor[] {
  const D = q.shape[3] - pad;
  const xs = [q, k, v].map((t) => t.detach().to(device).narrow(3, pad, D).requires_grad_(true));
  const mask = options.attn_mask ? options.attn_mask.to(device) : null;
  torch.manual_seed(seed);
  const out = F.scaled_dot_product_attention(xs[0], xs[1], xs[2], { ...options, attn_mask: mask });
  if (device === "cuda") assert.equal(out.grad_fn?.name(), "ScaledDotProductFlashAttentionBackward0", "the fused kernels ran");
  out.backward(randn([...out.shape.slice(0, 3), D + pad], 99).to(device).narrow(3, pad, D));
  return [out.detach(), ...xs.map((x) => x.grad!)].map((t) => t.cpu().float());
}

function check(label: string, shape: { B: number; H: number; S: number; T: number; D: number }, options: ScaledDotProductAttentionOptions, seed = 1, pad = 0): void {
  const { B, H, S, T, D } = shape;
  const q = randn([B, H, S, D + pad], seed + 1);
  const k = randn([B, H, T, D + pad], seed + 2);
  const v = randn([B, H, T, D + pad], seed + 3);
  const cpu = attend("cpu", q, k, v, options, seed, pad);
  const gpu = attend("cuda", q, k, v, options, seed, pad);
  // Relative to the largest value but never below 1 (inputs are of order 1): with a single key, dq and dk are
  // exactly 0 on the CPU and round-off on the GPU, whose delta = rowsum(dout * out) rounds differently.
  ["output", "dq", "dk", "dv"].forEach((name, i) => {
    assertClose(gpu[i], cpu[i], (i === 0 ? 1e-5 : 1e-4) * Math.max(1, maxAbs(cpu[i])), `${label} ${name}`);
  });
}

const SIZES = EMULATED ? [1, 7, 67, 128] : [1, 7, 67, 128, 300];

test(`every S, T in {${SIZES.join(", ")}} and D in {32, 64}, with BERT's padding mask and dropout`, { skip: SKIP }, () => {
  for (const D of [32, 64]) {
    for (const S of SIZES) {
      for (const T of SIZES) {
        const shape = { B: 2, H: 3, S, T, D };
        check(`S=${S} T=${T} D=${D}`, shape, { attn_mask: paddingMask(2, T) });
        check(`S=${S} T=${T} D=${D} dropout`, shape, { attn_mask: paddingMask(2, T), dropout_p: 0.1 }, S * 1000 + T);
      }
    }
  }
});

test("every kind of mask, with and without dropout", { skip: SKIP }, () => {
  const shape = { B: 2, H: 3, S: 67, T: 128, D: 64 };
  const bools = randn([67, 128], 5).add(torch.arange(128).eq(0).float().mul(10)).gt(-0.5);  // key 0 for every query
  const masks: [string, ScaledDotProductAttentionOptions][] = [
    ["no mask", {}],
    ["every key of a batch hidden", { attn_mask: paddingMask(2, 128, true) }],
    ["float [B, H, S, T]", { attn_mask: randn([2, 3, 67, 128], 6) }],
    ["float per head [H, 1, T]", { attn_mask: randn([3, 1, 128], 7) }],
    ["bool [S, T]", { attn_mask: bools }],
    ["is_causal", { is_causal: true }],
    ["scale", { attn_mask: paddingMask(2, 128), scale: 0.3 }],
  ];
  for (const [label, options] of masks) {
    check(label, shape, options);
    check(`${label} dropout 0.3`, shape, { ...options, dropout_p: 0.3 }, 17);
  }
  check("square causal dropout", { B: 1, H: 2, S: LONG, T: LONG, D: 32 }, { is_causal: true, dropout_p: 0.2 });
  check("dropout 1", shape, { dropout_p: 1 });
  check("head dim 8", { ...shape, D: 8 }, { attn_mask: paddingMask(2, 128), dropout_p: 0.1 });
});

// The kernels read rows 16 bytes at a time only where every row of an operand is 16-byte aligned (D a multiple of
// 4); the other head dims and views take 4-byte loads, and D = 128 fills every lane's share of a row. Head dims up
// to 64 run kernels sized for 64 columns, the others (65 and 128 here) kernels sized for 128.
test("head dims off the 16-byte path and at the limit, views that are not 16-byte aligned", { skip: SKIP }, () => {
  const masked = (T: number): ScaledDotProductAttentionOptions => ({ attn_mask: paddingMask(2, T), dropout_p: 0.1 });
  check("head dim 5", { B: 2, H: 3, S: 7, T: 67, D: 5 }, masked(67));
  check("head dim 33", { B: 2, H: 3, S: 67, T: 67, D: 33 }, masked(67));
  check("head dim 33 causal", { B: 2, H: 3, S: 67, T: 67, D: 33 }, { is_causal: true, dropout_p: 0.2 });
  check("head dim 65", { B: 2, H: 1, S: 7, T: 67, D: 65 }, masked(67));
  check("head dim 128", { B: 2, H: 3, S: 67, T: 128, D: 128 }, masked(128));
  check("head dim 128 no mask", { B: 1, H: 2, S: 7, T: 1, D: 128 }, {});
  for (const pad of [1, 3, 4]) {
    check(`views at column ${pad}`, { B: 2, H: 3, S: 67, T: 67, D: 64 }, masked(67), 1, pad);
    check(`views at column ${pad}, head dim 32`, { B: 2, H: 3, S: 7, T: 128, D: 32 }, masked(128), 1, pad);
  }
});

test("BERT's layout (heads as a permuted view), repeatability, bf16", { skip: SKIP }, () => {
  const [B, S, H, D] = [2, 67, 12, 64];
  const hidden = randn([B, S, H * D], 3).to("cuda");
  const heads = (t: Tensor) => t.view([B, S, H, D]).permute([0, 2, 1, 3]);
  const mask = paddingMask(B, S).to("cuda");
  const run = () => {
    torch.manual_seed(5);
    return F.scaled_dot_product_attention(heads(hidden), heads(hidden.mul(0.5)), heads(hidden.add(1)), { attn_mask: mask, dropout_p: 0.1 });
  };
  const a = run().cpu();
  assert.deepEqual(a.data(), run().cpu().data(), "the same seed gives the same bits");
  torch.manual_seed(5);
  const cpu = F.scaled_dot_product_attention(heads(hidden.cpu()), heads(hidden.cpu().mul(0.5)), heads(hidden.cpu().add(1)), { attn_mask: mask.cpu(), dropout_p: 0.1 });
  assertCloseRelMax(a, cpu, 1e-5, "permuted views");
  const bf = F.scaled_dot_product_attention(heads(hidden).to(torch.bfloat16), heads(hidden.mul(0.5)).to(torch.bfloat16), heads(hidden.add(1)).to(torch.bfloat16), { attn_mask: mask });
  assert.equal(bf.dtype, torch.bfloat16);
  const f32 = F.scaled_dot_product_attention(heads(hidden), heads(hidden.mul(0.5)), heads(hidden.add(1)), { attn_mask: mask });
  assertCloseRelMax(bf.float().cpu(), f32.cpu(), 2e-2, "bf16");
});

/**
 * The output and q, k, v's gradients of the fused kernels under autocast (they read q, k and v in `dtype`), and of
 * the CPU's composite over the operands rounded to `dtype`, the same dropout drawn; compared within `rtol` of each
 * one's largest magnitude.
 */
function checkLowp(label: string, shape: { B: number; H: number; S: number; T: number; D: number }, options: ScaledDotProductAttentionOptions,
  dtype: typeof torch.bfloat16, rtol: number, seed = 1): void {
  const { B, H, S, T, D } = shape;
  const qkv = [[B, H, S, D], [B, H, T, D], [B, H, T, D]].map((s, i) => randn(s, seed + 1 + i));
  const cpu = attend("cpu", ...qkv.map((t) => t.to(dtype).float()) as [Tensor, Tensor, Tensor], options, seed, 0);
  const xs = qkv.map((t) => t.to("cuda").requires_grad_(true));
  const mask = options.attn_mask ? options.attn_mask.to("cuda") : null;
  torch.manual_seed(seed);
  const out = torch.autocast("cuda", { dtype }, () => F.scaled_dot_product_attention(xs[0], xs[1], xs[2], { ...options, attn_mask: mask }));
  out.backward(randn([B, H, S, D], 99).to("cuda"));
  const gpu = [out.detach(), ...xs.map((x) => x.grad!)].map((t) => t.cpu().float());
  ["output", "dq", "dk", "dv"].forEach((name, i) => assertCloseRelMax(gpu[i], cpu[i], rtol, `${label} ${dtype} ${name}`));
}

/** Runs `body` with the tensor-core attention as one kernel a head where it can, then as the kernels for blocks of rows. */
function forBothBackwards(body: (backward: string) => void): void {
  const mode = native.cuda.attentionHeads();
  try {
    for (const heads of ["on", "off"] as const) {
      native.cuda.attentionHeads(heads);
      body(heads === "on" ? "whole-head kernels" : "kernels for blocks of rows");
    }
  } finally {
    native.cuda.attentionHeads(mode);
  }
}

// Under autocast, even head dims up to 64 (BERT's) run on the tensor cores where the GPU has them (sm_80 on; the
// emulator's too): 64-key tiles, 32-row blocks, the probabilities, dS and dout rounded to the operands' dtype for
// their products. float16's 10-bit mantissa keeps that rounding small enough to catch a single misplaced dropout
// or mask element.
test("16-bit operands: sizes across the tensor-core kernels' tiles, head dims, masks, causal, dropout", { skip: SKIP }, () => {
  const cases: [string, { B: number; H: number; S: number; T: number; D: number }, ScaledDotProductAttentionOptions][] = [
    ["S=7 T=67 D=64", { B: 2, H: 2, S: 7, T: 67, D: 64 }, { attn_mask: paddingMask(2, 67), dropout_p: 0.1 }],
    ["S=67 T=7 D=32", { B: 2, H: 2, S: 67, T: 7, D: 32 }, { attn_mask: paddingMask(2, 7), dropout_p: 0.1 }],
    ["S=33 T=128 D=16", { B: 2, H: 2, S: 33, T: 128, D: 16 }, { attn_mask: paddingMask(2, 128), dropout_p: 0.2 }],
    ["S=T=65 D=64 causal", { B: 1, H: 2, S: 65, T: 65, D: 64 }, { is_causal: true, dropout_p: 0.3 }],
    ["every key of a batch hidden", { B: 2, H: 2, S: 7, T: 33, D: 64 }, { attn_mask: paddingMask(2, 33, true) }],
    ["float [B, H, S, T] mask, head dim 6", { B: 2, H: 2, S: 7, T: 9, D: 6 }, { attn_mask: randn([2, 2, 7, 9], 6), dropout_p: 0.1 }],
    ["S=128 T=100 D=64: every warp of the whole-head kernels", { B: 2, H: 1, S: 128, T: 100, D: 64 }, { attn_mask: paddingMask(2, 100), dropout_p: 0.1 }],
  ];
  // the forward and the backward as one kernel a head (S and T up to 128) and as the kernels for blocks of rows
  forBothBackwards((backward) => {
    for (const [label, shape, options] of cases) {
      checkLowp(`${label}, ${backward}`, shape, options, torch.float16, 5e-3, shape.S * 100 + shape.T);
      checkLowp(`${label}, ${backward}`, shape, options, torch.bfloat16, 3e-2, shape.S * 100 + shape.T);
    }
  });
});

test("forward and backward hold no S x T matrix", { skip: SKIP }, () => {
  // The memory of a few S x D tensors must stay far below one S x S matrix: S / D large enough either way.
  const [B, H, S, D] = EMULATED ? [1, 2, 512, 16] : [1, 2, 2048, 64];
  const xs = [1, 2, 3].map((seed) => randn([B, H, S, D], seed).to("cuda").requires_grad_(true));
  const upstream = randn([B, H, S, D], 4).to("cuda");
  torch.cuda.synchronize();
  const before = torch.cuda.memory_allocated();
  torch.cuda.reset_peak_memory_stats();
  F.scaled_dot_product_attention(xs[0], xs[1], xs[2], { dropout_p: 0.1 }).backward(upstream);
  torch.cuda.synchronize();
  const extra = torch.cuda.max_memory_allocated() - before;
  const matrix = B * H * S * S * 4;
  assert.ok(extra < matrix / 2, `peak grew by ${extra} bytes; the probabilities alone would take ${matrix}`);
});

/** The identity, whose backward hands the gradient reaching `x` to `seen`. */
function probe(x: Tensor, seen: Tensor[]): Tensor {
  return record(x.alias(), "Probe", [x], (g) => {
    seen.push(g);
    return [g.alias()];
  });
}

test("the output and q, k, v's gradients are stored as [B, S, H, D]: BERT's heads split and merge as views", { skip: SKIP }, () => {
  const [B, S, H, D] = [2, 7, 3, 32];
  const heads = (t: Tensor) => t.view([B, S, H, D]).permute([0, 2, 1, 3]);
  const mask = paddingMask(B, S);
  const upstream = randn([B, S, H * D], 9);
  const run = (device: string) => {
    const xs = [1, 2, 3].map((seed) => randn([B, S, H * D], seed).to(device).requires_grad_(true));
    const seen: Tensor[] = [];
    torch.manual_seed(4);
    const out = F.scaled_dot_product_attention(heads(probe(xs[0], seen)), heads(probe(xs[1], seen)), heads(probe(xs[2], seen)),
      { attn_mask: mask.to(device), dropout_p: 0.1 });
    const merged = out.permute([0, 2, 1, 3]).reshape([B, S, H * D]);
    merged.backward(upstream.to(device));
    return { out, merged, seen, grads: xs.map((x) => x.grad!.cpu()) };
  };
  const gpu = run("cuda");
  assert.deepEqual(gpu.out.stride(), [S * H * D, D, H * D, 1], "out is [B, S, H, D] in memory");
  assert.equal(gpu.merged.storage, gpu.out.storage, "merging the heads is a view");
  assert.equal(gpu.seen.length, 3);
  for (const g of gpu.seen) assert.ok(g.is_contiguous(), `the gradient reaching a projection is contiguous, strides ${g.stride()}`);
  const cpu = run("cpu");
  gpu.grads.forEach((g, i) => assertClose(g, cpu.grads[i], 1e-4 * Math.max(1, maxAbs(cpu.grads[i])), `gradient ${i}`));
  assertClose(gpu.merged.cpu(), cpu.merged, 1e-5, "output");
});

test("under autocast the forward also writes out's 16-bit copy, which BERT's merged heads carry", { skip: SKIP }, () => {
  const [B, S, H, D] = [2, 7, 3, 32];
  const heads = (t: Tensor) => t.view([B, S, H, D]).permute([0, 2, 1, 3]);
  const xs = [1, 2, 3].map((seed) => heads(randn([B, S, H * D], seed).to("cuda")));
  const attend = () => F.scaled_dot_product_attention(xs[0], xs[1], xs[2], { attn_mask: paddingMask(B, S).to("cuda") });
  assert.equal(attend()._lowp, null, "no copy outside autocast");
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const out = torch.autocast("cuda", { dtype }, attend);
    assert.equal(out.dtype, torch.float32);
    const merged = out.permute([0, 2, 1, 3]).reshape([B, S, H * D]);
    for (const [label, t] of [["out", out], ["merged heads", merged]] as const) {
      const copy = lowpCopyOf(t, dtype);
      assert.ok(copy, `${label} carries a ${dtype} copy`);
      assert.deepEqual(copy.stride(), t.stride(), label);
      assert.deepEqual(copy.float().cpu().data(), t.to(dtype).float().cpu().data(), `${label}: out rounded to ${dtype}`);
    }
  }
});

/** The bytes the caching allocator counts for a request: rounded up to 512. */
const block = (bytes: number): number => Math.ceil(bytes / 512) * 512;

test("under autocast the kernels read q, k and v in 16 bits, and the backward keeps 16-bit copies only", { skip: SKIP }, () => {
  const [B, S, H, D] = [2, 7, 3, 32];
  const heads = (t: Tensor) => t.view([B, S, H, D]).permute([0, 2, 1, 3]);
  const mask = paddingMask(B, S);
  const qkv = [1, 2, 3].map((seed) => heads(randn([B, S, H * D], seed)));
  const upstream = randn([B, H, S, D], 4);
  for (const [dtype, tolerance] of [[torch.bfloat16, 2e-2], [torch.float16, 4e-3]] as const) {
    const xs = qkv.map((t) => t.to("cuda").requires_grad_(true));
    const out = torch.autocast("cuda", { dtype }, () => F.scaled_dot_product_attention(xs[0], xs[1], xs[2], { attn_mask: mask.to("cuda") }));
    out.backward(upstream.to("cuda"));
    // The CPU's composite from the same 16-bit values, in float32
    const rounded = qkv.map((t) => t.to(dtype).float().requires_grad_(true));
    const expected = F.scaled_dot_product_attention(rounded[0], rounded[1], rounded[2], { attn_mask: mask });
    expected.backward(upstream);
    // the tensor-core kernels round the probabilities to dtype too, as flash attention does
    assertCloseRelMax(out.detach().cpu(), expected.detach(), tolerance, `${dtype} output`);
    const unrounded = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], { attn_mask: mask });
    assert.ok(maxAbs(out.detach().cpu().sub(unrounded)) > 1e-4, `${dtype}: the kernels read rounded operands`);
    // The backward's delta = rowsum(dout * out) reads out's 16-bit copy, as flash attention reads its 16-bit out
    ["dq", "dk", "dv"].forEach((name, i) => {
      assertCloseRelMax(xs[i]!.grad!.cpu(), rounded[i]!.grad!, tolerance, `${dtype} ${name}`);
    });
  }
  // BERT's packed projection: the backward keeps its 16-bit copy, not the float32 projection
  const packed = randn([B, S, 3 * H * D], 5).to("cuda").requires_grad_(true);
  const x = packed.mul(1);
  const cudaMask = mask.to("cuda");
  torch.cuda.synchronize();
  const before = torch.cuda.memory_allocated();
  const out = torch.autocast("cuda", { dtype: torch.bfloat16 }, () => packed_qkv_attention(x, H, { attn_mask: cudaMask }));
  x.dispose();
  const n = B * S * H * D;
  const held = block(3 * n * 2) + block(n * 4) + block(n * 2) + block(B * H * S * 4) - block(3 * n * 4);
  assert.equal(torch.cuda.memory_allocated() - before, held, "q, k, v and out kept in 16 bits, out and lse in float32; the float32 projection freed");
  out.sum().backward();
  assert.equal(packed.grad!.dtype, torch.float32);
});

test("packed_linear_attention: packed_qkv_attention(packed_linear(...)) as one node; under autocast the projection in 16 bits, its bias rounded as PyTorch's autocast rounds it", { skip: SKIP }, () => {
  const [B, S, H, D] = [2, 7, 2, 16];
  const W = H * D;
  const inputs = [randn([B, S, W], 1), ...[2, 3, 4].map((seed) => randn([W, W], seed).mul(0.2)), ...[5, 6, 7].map((seed) => randn([W], seed))];
  const upstream = randn([B, H, S, D], 8).to("cuda");
  const options = { attn_mask: paddingMask(B, S).to("cuda") };
  /** the output and the gradients of x, the weights and the biases */
  const run = (autocast: boolean, fn: (x: Tensor, ws: Tensor[], bs: Tensor[]) => Tensor): Tensor[] => {
    const leaves = inputs.map((t) => t.to("cuda").requires_grad_(true));
    const forward = () => fn(leaves[0]!, leaves.slice(1, 4), leaves.slice(4));
    const out = autocast ? torch.autocast("cuda", { dtype: torch.bfloat16 }, forward) : forward();
    assert.equal(out.dtype, torch.float32);
    out.backward(upstream);
    return [out.detach(), ...leaves.map((l) => l.grad!)];
  };
  const fused = (x: Tensor, ws: Tensor[], bs: Tensor[]) => packed_linear_attention(x, ws, bs, H, options);
  // without autocast it is the composition, bit for bit
  const plain = run(false, fused);
  run(false, (x, ws, bs) => packed_qkv_attention(packed_linear(x, ws, bs), H, options)).forEach((t, i) =>
    assert.deepEqual(plain[i]!.cpu().tolist(), t.cpu().tolist(), `float32 tensor ${i}`));
  // under autocast: the composition with the biases rounded to bfloat16 first
  const lowp = run(true, fused);
  const composed = run(true, (x, ws, bs) => packed_qkv_attention(packed_linear(x, ws, bs.map((b) => b.to(torch.bfloat16).float())), H, options));
  const names = ["output", "dx", "dwq", "dwk", "dwv", "dbq", "dbk", "dbv"];
  lowp.forEach((t, i) => assertCloseRelMax(t.cpu(), composed[i]!.cpu(), 1e-2, `bf16 ${names[i]}`));
  assert.ok(maxAbs(lowp[0]!.cpu().sub(plain[0]!.cpu())) > 1e-4, "autocast's output differs from float32's: the operands were rounded");
});

test("packed attention of the first queries only: those queries against every token's keys and values, the other queries' gradient 0", { skip: SKIP }, () => {
  const [B, S, H, D] = [2, 7, 2, 16];
  const W = H * D;
  const mask = paddingMask(B, S);
  const qkv = randn([B, S, 3 * W], 11);
  const split = (t: Tensor, i: number, rows: number) => t.narrow(2, i * W, W).narrow(1, 0, rows).reshape([B, rows, H, D]).permute([0, 2, 1, 3]);
  for (const queries of [1, 3]) {
    const upstream = randn([B, H, queries, D], 12);
    const cpu = qkv.clone().requires_grad_(true);
    const expected = F.scaled_dot_product_attention(split(cpu, 0, queries), split(cpu, 1, S), split(cpu, 2, S), { attn_mask: mask });
    expected.backward(upstream);
    const gpu = qkv.to("cuda").requires_grad_(true);
    const out = packed_qkv_attention(gpu, H, { attn_mask: mask.to("cuda") }, queries);
    assert.deepEqual(out.shape, [B, H, queries, D]);
    out.backward(upstream.to("cuda"));
    assertClose(out.detach().cpu(), expected.detach(), 1e-5, `${queries} queries: output`);
    assertClose(gpu.grad!.cpu(), cpu.grad!, 1e-4, `${queries} queries: gradient`);
    assert.equal(maxAbs(gpu.grad!.cpu().narrow(2, 0, W).narrow(1, queries, S - queries)), 0, "the other queries' gradient");
    // under autocast (the tensor-core kernels, both backwards): the CPU's attention of those queries on the
    // operands rounded to bfloat16, and the rows of the attention of every query
    forBothBackwards((backward) => {
      const rounded = qkv.to(torch.bfloat16).float().requires_grad_(true);
      const want = F.scaled_dot_product_attention(split(rounded, 0, queries), split(rounded, 1, S), split(rounded, 2, S), { attn_mask: mask });
      want.backward(upstream);
      const leaf = qkv.to("cuda").requires_grad_(true);
      const got = torch.autocast("cuda", { dtype: torch.bfloat16 }, () => packed_qkv_attention(leaf.mul(1), H, { attn_mask: mask.to("cuda") }, queries));
      got.backward(upstream.to("cuda"));
      assertCloseRelMax(got.detach().cpu(), want.detach(), 2e-2, `${queries} queries, ${backward}: bf16 output`);
      assertCloseRelMax(leaf.grad!.cpu(), rounded.grad!, 2e-2, `${queries} queries, ${backward}: bf16 gradient`);
      assert.equal(maxAbs(leaf.grad!.cpu().narrow(2, 0, W).narrow(1, queries, S - queries)), 0, `${backward}: the other queries' bf16 gradient`);
    });
    const [x, ...params] = [randn([B, S, W], 13), ...[14, 15, 16].map((seed) => randn([W, W], seed).mul(0.2)), ...[17, 18, 19].map((seed) => randn([W], seed))]
      .map((t) => t.to("cuda").requires_grad_(true));
    const attend = (rows: number) => torch.autocast("cuda", { dtype: torch.bfloat16 }, () =>
      packed_linear_attention(x!, params.slice(0, 3), params.slice(3), H, { attn_mask: mask.to("cuda") }, rows));
    assertCloseRelMax(attend(queries).detach().cpu(), attend(S).detach().narrow(2, 0, queries).cpu(), 1e-2, `${queries} queries: bf16 output`);
  }
  assert.throws(() => packed_qkv_attention(qkv.to("cuda"), H, {}, 0), /queries must be an integer from 1 to the 7 tokens, got 0/);
});

test("under autocast the attention's kernels write the packed projection's gradient in 16 bits with its bias gradient: the cast's bits, the sums of the float32 values", { skip: SKIP }, () => {
  const float32Bits = (t: Tensor) => Array.from(new Uint32Array(new Float32Array(t.cpu().data() as Float32Array).buffer));
  // sizes on and across the kernels' 16-row blocks and 64-row tiles, head dims below and at 64, heads up to 3
  forBothBackwards((backward) => {
    for (const [B, S, H, D] of [[2, 7, 2, 16], [1, 1, 1, 64], [2, 17, 3, 32], [3, EMULATED ? 67 : 130, 2, 64]] as const) {
      for (const dtype of [torch.bfloat16, torch.float16]) {
        const W = H * D;
        const inputs = [randn([B, S, W], 1), ...[2, 3, 4].map((seed) => randn([W, W], seed).mul(0.2)), ...[5, 6, 7].map((seed) => randn([W], seed))];
        const upstream = randn([B, H, S, D], 8).to("cuda");
        const options = { attn_mask: paddingMask(B, S).to("cuda"), dropout_p: 0.1 };
        /** dx, the weights' and the biases' gradients; with `kernels` false the backward takes the float32 gradient and casts it */
        const run = (kernels: boolean): Tensor[] => {
          const leaves = inputs.map((t) => t.to("cuda").requires_grad_(true));
          const lowpGradients = native.cuda.attentionLowpGradients;
          if (!kernels) native.cuda.attentionLowpGradients = () => false;
          try {
            torch.manual_seed(3);
            const out = torch.autocast("cuda", { dtype }, () => packed_linear_attention(leaves[0]!, leaves.slice(1, 4), leaves.slice(4), H, options));
            out.backward(upstream);
          } finally {
            native.cuda.attentionLowpGradients = lowpGradients;
          }
          return leaves.map((l) => l.grad!.cpu());
        };
        const label = `${dtype} [${B}, ${S}, ${H}, ${D}], ${backward}`;
        const fused = run(true);
        const cast = run(false);
        // the GEMMs read the same 16-bit gradient: dx and dW to the bit
        for (let i = 0; i < 4; ++i) assert.deepEqual(float32Bits(fused[i]!), float32Bits(cast[i]!), `${label}: gradient ${i}`);
        for (let i = 4; i < 7; ++i) assertClose(fused[i]!, cast[i]!, 1e-6 * Math.max(1, maxAbs(cast[i]!)), `${label}: bias gradient ${i - 4}`);
        // the sums' order is fixed (the last block of each head adds them) and the kernels leave their tickets at 0
        const again = run(true);
        for (let i = 0; i < 7; ++i) assert.deepEqual(float32Bits(again[i]!), float32Bits(fused[i]!), `${label}: repeated, gradient ${i}`);
        assert.equal(native.cuda.attentionLowpGradients(dtype.code, H, D), torch.cuda.get_device_capability()[0] >= 8, `${label}: the tensor-core kernels write them`);
      }
    }
  });
  assert.equal(native.cuda.attentionLowpGradients(torch.float32.code, 2, 64), false, "float32 operands: the CUDA-core kernels");
  assert.equal(native.cuda.attentionLowpGradients(torch.bfloat16.code, 2, 80), false, "head dims over 64: the CUDA-core kernels");
  assert.equal(native.cuda.attentionLowpGradients(torch.bfloat16.code, 129, 64), false, "more heads than ticket words");
});

test("attentionBackward refuses 16-bit gradients the kernels cannot write, naming the argument", { skip: SKIP }, () => {
  const [B, H, S, D] = [1, 1, 4, 8];
  const t = (dtype = torch.float32) => torch.zeros([B, S, H, D], { dtype, device: "cuda" });
  const view = (x: Tensor): [ArrayBuffer, number, number[]] => [x.buffer, x.offset, [S * H * D, D, H * D, 1]];
  const lse = torch.zeros([B, H, S], { device: "cuda" });
  const sums = torch.zeros([3 * H * D], { device: "cuda" });
  const [q, k, v, out, dout, dq, dk, dv] = [t(), t(), t(), t(), t(), t(), t(), t()];
  assert.throws(() => native.cuda.attentionBackward(B, H, S, S, D, ...view(q), ...view(k), ...view(v), null, 0, [0, 0, 0, 0], false,
    1, 0, 0, 0, torch.float32.code, ...view(out), ...view(dout), lse.buffer, ...view(dq), ...view(dk), ...view(dv), sums.buffer),
  /argument 39 \(sums\).*16-bit gradients need the tensor-core kernels/);
});

test("packed_linear keeps its input for the backward, and the stacked weight only in 16 bits", { skip: SKIP }, () => {
  const [B, S, W] = [2, 7, 64];
  const x = randn([B, S, W], 1).to("cuda").requires_grad_(true);
  const ws = [2, 3, 4].map((seed) => randn([W, W], seed).to("cuda").requires_grad_(true));
  const bs = [5, 6, 7].map((seed) => randn([W], seed).to("cuda").requires_grad_(true));
  torch.no_grad(() => packed_linear(x, ws, bs)).dispose();  // the GEMM's workspace, held from its first use on
  for (const autocast of [false, true]) {
    torch.cuda.synchronize();
    const before = torch.cuda.memory_allocated();
    const forward = () => packed_linear(x, ws, bs);
    const y = autocast ? torch.autocast("cuda", { dtype: torch.bfloat16 }, forward) : forward();
    // the result, and under autocast the 16-bit copies of x and of the stacked weight that the backward's products read
    const held = block(B * S * 3 * W * 4) + (autocast ? block(B * S * W * 2) + block(3 * W * W * 2) : 0);
    assert.equal(torch.cuda.memory_allocated() - before, held, `autocast ${autocast}`);
    y.backward(randn([B, S, 3 * W], 8).to("cuda"));
  }
});

test("packed_linear's parameters take their rows of the packed gradient as .grad, uncopied; clipping and AdamW read them there", { skip: SKIP }, () => {
  const [B, S, W] = [2, 7, 16];
  const x = randn([B, S, W], 1).to("cuda");
  const leaves = (seed: number, shape: number[]) => [0, 1, 2].map((i) => randn(shape, seed + i).to("cuda").requires_grad_(true));
  const ws = leaves(2, [W, W]), bs = leaves(5, [W]);
  const upstream = randn([B, S, 3 * W], 8).to("cuda");
  packed_linear(x, ws, bs).backward(upstream);
  for (const [label, params] of [["weights", ws], ["biases", bs]] as const) {
    const grads = params.map((p) => p.grad!);
    assert.ok(grads.every((g) => g.storage === grads[0]!.storage), `${label}: one packed gradient`);
    assert.deepEqual(grads.map((g) => g.offset), [0, 1, 2].map((i) => i * params[0]!.numel()), `${label}: each its rows`);
  }
  // the same gradients as three layers' (one GEMM's sums against three: within float32 rounding)
  const [refW, refB] = [ws, bs].map((ps) => ps.map((p) => p.detach().clone().requires_grad_(true)));
  cat([0, 1, 2].map((i) => F.linear(x, refW![i]!, refB![i]!)), -1).backward(upstream);
  [...ws, ...bs].forEach((p, i) => assertClose(p.grad!, [...refW!, ...refB!][i]!.grad!, 1e-5, `the gradient of parameter ${i}`));
  // clipping and AdamW on the packed rows give the bits they give on the same values in buffers of their own
  const own = [...ws, ...bs].map((p) => {
    const q = p.detach().clone().requires_grad_(true);
    q.grad = p.grad!.clone();
    return q;
  });
  const packed = [...ws, ...bs];
  for (const params of [packed, own]) {
    torch.nn.utils.clip_grad_norm_(params, 0.5);
    const opt = new AdamW(params, { lr: 0.1 });
    opt.step();
  }
  packed.forEach((p, i) => assert.deepEqual(p.cpu().tolist(), own[i]!.cpu().tolist(), `parameter ${i} after clipping and AdamW`));
});

/** BERT's self-attention as three separate linear layers compute it, each split into heads (the unpacked path). */
function unpackedSelfAttention(m: BertSelfAttention, x: Tensor, mask: Tensor, p: number): Tensor {
  const [B, S, W] = x.shape;
  const heads = (t: Tensor) => t.view([B, S, m.num_attention_heads, m.attention_head_size]).permute([0, 2, 1, 3]);
  const out = F.scaled_dot_product_attention(heads(m.query(x)), heads(m.key(x)), heads(m.value(x)), { attn_mask: mask, dropout_p: p });
  return out.permute([0, 2, 1, 3]).reshape([B, S, W]);
}

/** The node of the first op named `name` on the path through first inputs from `t` back. */
function nodeOf(t: Tensor, name: string): Node {
  let node = t.grad_fn;
  while (node && node.name() !== name) {
    const edge = node.next[0];
    node = edge && "node" in edge ? edge.node : null;
  }
  assert.ok(node, `no ${name} behind the output`);
  return node;
}

test("BERT's self-attention on CUDA computes Q, K, V with one packed linear layer, as the three layers do", { skip: SKIP }, () => {
  const config = new BertConfig({ hidden_size: 64, num_attention_heads: 2, attention_probs_dropout_prob: 0.1 });
  const [B, S, W] = [2, 7, 64];
  const reference = new BertSelfAttention(config);
  const modules = [0, 1].map(() => {
    const m = new BertSelfAttention(config);
    m.load_state_dict(reference.state_dict());
    return m.to("cuda").train();
  });
  const mask = paddingMask(B, S).to("cuda");
  // Two backward passes (the second accumulates into .grad), then an optimizer step.
  const results = modules.map((m, packed) => {
    const x = randn([B, S, W], 1).to("cuda").requires_grad_(true);
    const outs = [0, 1].map((pass) => {
      torch.manual_seed(20 + pass);
      const out = packed ? m(x, mask) : unpackedSelfAttention(m, x, mask, 0.1);
      const attention = nodeOf(out, "ScaledDotProductFlashAttentionBackward0");
      assert.equal(attention.next.length, packed ? 1 : 3, "the attention's inputs: the packed projection, or q, k and v");
      if (packed) assert.equal((attention.next[0] as { node: Node }).node.name(), "AddmmBackward0");
      out.backward(randn([B, S, W], 30 + pass).to("cuda"));
      return out.detach().cpu();
    });
    const named = [...m.named_parameters()];
    const grads = [x.grad!, ...named.map(([, t]) => t.grad!)].map((g) => g.cpu());
    new AdamW(m.parameters(), { lr: 0.1 }).step();
    return { outs, grads, names: ["hidden", ...named.map(([n]) => n)], params: named.map(([, t]) => t.detach().cpu()) };
  });
  const [unpacked, packed] = results;
  packed.outs.forEach((o, i) => assertClose(o, unpacked.outs[i], 1e-5 * Math.max(1, maxAbs(unpacked.outs[i])), `output ${i}: the same dropout masks`));
  packed.grads.forEach((g, i) => assertClose(g, unpacked.grads[i], 1e-4 * Math.max(1, maxAbs(unpacked.grads[i])), `${packed.names[i]}.grad`));
  packed.params.forEach((t, i) => assertClose(t, unpacked.params[i], 1e-5, `${packed.names[i + 1]} after a step`));
  assert.deepEqual(Object.keys(modules[1].state_dict()), Object.keys(reference.state_dict()), "the checkpoint's keys");
});

test("cat's backward hands each part a view of the packed gradient; the packed projection's gradient is one tensor", { skip: SKIP }, () => {
  const seen: Tensor[] = [];
  const parts = [1, 2, 3].map((seed) => randn([4, 3], seed).to("cuda").requires_grad_(true));
  cat(parts.map((t) => probe(t, seen))).backward(randn([12, 3], 4).to("cuda"));
  assert.ok(seen.every((g) => g.storage === seen[0].storage), "row slices of one gradient");
  parts.forEach((t, i) => assert.ok(t.grad!.isExclusive(), `part ${i}'s .grad owns its memory, as the optimizer's kernels need`));

  const [B, S, H, D] = [2, 7, 3, 32];
  const qkv = randn([B, S, 3 * H * D], 5).to("cuda").requires_grad_(true);
  const grads: Tensor[] = [];
  const out = packed_qkv_attention(probe(qkv, grads), H, { attn_mask: paddingMask(B, S).to("cuda") });
  out.permute([0, 2, 1, 3]).reshape([B, S, H * D]).backward(randn([B, S, H * D], 6).to("cuda"));
  assert.equal(grads.length, 1);
  assert.ok(grads[0].isExclusive(), "one contiguous tensor of qkv's shape, written by the kernels");
  // the same as attention over the three slices, whose gradients autograd scatters into zeros and adds
  const x = qkv.detach().requires_grad_(true);
  const heads = (i: number) => x.narrow(2, i * H * D, H * D).view([B, S, H, D]).permute([0, 2, 1, 3]);
  const reference = F.scaled_dot_product_attention(heads(0), heads(1), heads(2), { attn_mask: paddingMask(B, S).to("cuda") });
  assertClose(out.cpu(), reference.cpu(), 1e-6, "output");
  reference.permute([0, 2, 1, 3]).reshape([B, S, H * D]).backward(randn([B, S, H * D], 6).to("cuda"));
  assertClose(qkv.grad!.cpu(), x.grad!.cpu(), 1e-6, "qkv's gradient");
});

const NO_TRACE = SKIP || NO_LAUNCH_TRACE;

test("a BERT layer's backward adds the residual connections' gradients in its GEMMs, with no addition kernels", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const { BertConfig } = await import(dist + "/models/bert/configuration_bert.js");
    const { BertLayer } = await import(dist + "/models/bert/modeling_bert.js");
    const config = new BertConfig({ hidden_size: 64, num_attention_heads: 2, intermediate_size: 128 });
    const layer = new BertLayer(config).to("cuda").train();
    // the hidden states as a previous layer hands them on: not a leaf (a view launches nothing either way)
    const hidden = torch.randn([2, 7, 64]).to("cuda").requires_grad_(true).view([2, 7, 64]);
    const out = layer(hidden, torch.zeros([2, 1, 1, 7]).to("cuda"));
    const upstream = torch.randn([2, 7, 64]).to("cuda");
    torch.cuda.synchronize();
    console.error("ftemu: begin");
    out.backward(upstream);
    torch.cuda.synchronize();
  `);
  // the hidden states and the attention block's output each feed a linear layer and a residual connection
  assert.deepEqual(kernels.filter((k) => k.startsWith("ft_binary")), [], kernels.join(" "));
  assert.equal(kernels.filter((k) => k === "ft_layer_norm_backward_warp").length, 2, kernels.join(" "));
});

test("BERT's heads through the fused attention and back launch no copy kernels", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const F = await import(dist + "/nn/functional.js");
    const [B, S, H, D] = [2, 7, 3, 32];
    const heads = (t) => t.view([B, S, H, D]).permute([0, 2, 1, 3]);
    const xs = [1, 2, 3].map(() => torch.randn([B, S, H * D]).to("cuda").requires_grad_(true));
    const mask = torch.zeros([B, 1, 1, S]).to("cuda");
    const upstream = torch.randn([B, S, H * D]).to("cuda");
    torch.cuda.synchronize();
    console.error("ftemu: begin");
    const out = F.scaled_dot_product_attention(heads(xs[0]), heads(xs[1]), heads(xs[2]), { attn_mask: mask, dropout_p: 0.1 });
    out.permute([0, 2, 1, 3]).reshape([B, S, H * D]).backward(upstream);
    torch.cuda.synchronize();
  `);
  assert.deepEqual(kernels, ["ft_attention_forward_64", "ft_attention_backward_dq_64", "ft_attention_backward_dkv_64"]);
});

test("under autocast BERT's heads run the tensor-core kernels from sm_80 on, the CUDA-core ones before", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const F = await import(dist + "/nn/functional.js");
    const [B, S, H, D] = [2, 7, 3, 64];
    const heads = (t) => t.view([B, S, H, D]).permute([0, 2, 1, 3]);
    const xs = [1, 2, 3].map(() => torch.randn([B, S, H * D]).to("cuda").requires_grad_(true));
    const mask = torch.zeros([B, 1, 1, S]).to("cuda");
    torch.cuda.synchronize();
    console.error("ftemu: begin");
    const out = torch.autocast("cuda", { dtype: torch.bfloat16 }, () =>
      F.scaled_dot_product_attention(heads(xs[0]), heads(xs[1]), heads(xs[2]), { attn_mask: mask, dropout_p: 0.1 }));
    out.sum().backward();
    torch.cuda.synchronize();
  `);
  const tensorCores = torch.cuda.get_device_capability()[0] >= 8;
  assert.deepEqual(kernels.filter((k) => k.includes("attention")), tensorCores
    ? ["ft_attention_forward_head_mma", "ft_attention_backward_head_mma"]
    : ["ft_attention_forward_64", "ft_attention_backward_dq_64", "ft_attention_backward_dkv_64"]);
});

test("the tensor-core attention takes one kernel a head up to 128 queries and keys, the kernels for blocks of rows beyond or when told", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const { native } = await import(dist + "/backend/native.js");
    const F = await import(dist + "/nn/functional.js");
    const backward = (S, T) => {
      const q = torch.randn([1, 1, S, 16]).to("cuda").requires_grad_(true);
      const kv = [1, 2].map(() => torch.randn([1, 1, T, 16]).to("cuda").requires_grad_(true));
      const out = torch.autocast("cuda", { dtype: torch.bfloat16 }, () => F.scaled_dot_product_attention(q, kv[0], kv[1]));
      out.sum().backward();
      torch.cuda.synchronize();
    };
    console.error("ftemu: begin");
    backward(128, 128);
    backward(129, 3);
    backward(3, 129);
    native.cuda.attentionHeads("off");
    backward(128, 128);
  `);
  const blocks = torch.cuda.get_device_capability()[0] >= 8
    ? ["ft_attention_forward_mma", "ft_attention_backward_dq_mma", "ft_attention_backward_dkv_mma"]
    : ["ft_attention_forward_64", "ft_attention_backward_dq_64", "ft_attention_backward_dkv_64"];
  const heads = torch.cuda.get_device_capability()[0] >= 8 ? ["ft_attention_forward_head_mma", "ft_attention_backward_head_mma"] : blocks;
  assert.deepEqual(kernels.filter((k) => k.includes("attention")), [...heads, ...blocks, ...blocks, ...blocks]);
});

test("a GPU that cannot lend a block 159 KiB of shared memory (sm_86's 99) keeps the kernels for blocks of rows", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const { native } = await import(dist + "/backend/native.js");
    const F = await import(dist + "/nn/functional.js");
    const q = torch.randn([1, 1, 8, 16]).to("cuda").requires_grad_(true);
    const kv = [1, 2].map(() => torch.randn([1, 1, 8, 16]).to("cuda").requires_grad_(true));
    console.error("ftemu: begin");
    if (native.cuda.attentionHeadKernel(torch.bfloat16.code, 16, 8, 8)) throw new Error("the whole-head kernels on sm_86");
    const out = torch.autocast("cuda", { dtype: torch.bfloat16 }, () => F.scaled_dot_product_attention(q, kv[0], kv[1]));
    out.sum().backward();
    torch.cuda.synchronize();
  `, { FTEMU_COMPUTE_CAPABILITY: "8.6" });
  assert.deepEqual(kernels.filter((k) => k.includes("attention")),
    ["ft_attention_forward_mma", "ft_attention_backward_dq_mma", "ft_attention_backward_dkv_mma"]);
});

test("by default (\"auto\") the forward and the backward take one kernel a head where timing that against the kernels for blocks of rows showed it 5% faster, once per size class; a capture takes the nearest class's choice", { skip: SKIP }, () => {
  const mode = native.cuda.attentionHeads();
  native.cuda.attentionHeads("auto");
  try {
    const [B, H, S, D] = [2, 2, 40, 64];
    /** the backward with T keys, run at once or by the returned function */
    const backward = (T: number, now = true) => {
      const q = torch.randn([B, H, S, D]).to("cuda").requires_grad_(true);
      const kv = [1, 2].map(() => torch.randn([B, H, T, D]).to("cuda").requires_grad_(true));
      const run = () => {
        const out = torch.autocast("cuda", { dtype: torch.float16 }, () => F.scaled_dot_product_attention(q, kv[0]!, kv[1]!, { dropout_p: 0.1 }));
        out.backward(torch.ones_like(out));
      };
      if (now) run();
      return run;
    };
    const kind = (pass: string, T: number) => `${pass} d${D} float16 @ ${Math.round(Math.log2(B * H * S * T))}`;
    const tensorCores = torch.cuda.get_device_capability()[0] >= 8;
    backward(40);
    for (const pass of ["forward", "backward"]) {
      const timed = attentionHeadChoices().get(kind(pass, 40));
      // before sm_80 the CUDA-core kernels run, with nothing to choose
      assert.equal(timed !== undefined, tensorCores, [...attentionHeadChoices().keys()].join(", "));
      if (timed) assert.equal(timed.taken, timed.new_ms < 0.95 * timed.old_ms, JSON.stringify(timed));
    }
    const before = attentionHeadChoices().size;
    backward(44);
    assert.equal(attentionHeadChoices().size, before, "the same size class: timed once");
    const graph = new torch.cuda.CUDAGraph();
    const captured = backward(100, false);
    torch.cuda.graph(graph, captured);
    graph.reset();
    assert.equal(attentionHeadChoices().has(kind("forward", 100)), false, "nothing timed while capturing");
    assert.equal(native.cuda.attentionHeadKernel(torch.float16.code, D, S, 129), false, "over 128 keys: the dq and dk/dv kernels");
    assert.equal(native.cuda.attentionHeadKernel(torch.float32.code, D, S, S), false, "float32: the CUDA-core kernels");
    assert.equal(native.cuda.attentionHeadKernel(torch.float16.code, D, S, S), torch.cuda.get_device_capability()[0] >= 8);
  } finally {
    native.cuda.attentionHeads(mode);
  }
  assert.throws(() => native.cuda.attentionHeads("sometimes" as "on"), /attentionHeads: mode must be "on", "off" or "auto"/);
});

test("stackRowsAs / stackGroupsAs cast float32 parts to 16 bits (or copy them) in one launch, bit for bit as cat and a cast", { skip: SKIP }, () => {
  const parts = [[3, 5], [1, 5], [4096 + 7, 5]].map((shape, i) => randn(shape, 10 + i).to("cuda"));
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const stacked = stackRowsAs(parts, dtype);
    assert.equal(stacked.dtype, dtype);
    assert.deepEqual(stacked.shape, [4096 + 11, 5]);
    assert.deepEqual(stacked.float().tolist(), cat(parts).to(dtype).float().tolist());
  }
  // groups of their own dtypes (packed_linear's weights and biases), float32 copied bit for bit
  const vectors = [randn([7], 30), randn([4096 + 3], 31)].map((v) => v.to("cuda"));
  const [ws, bs] = stackGroupsAs([{ parts, dtype: torch.bfloat16 }, { parts: vectors, dtype: torch.float32 }]);
  assert.deepEqual(ws!.float().tolist(), cat(parts).to(torch.bfloat16).float().tolist());
  assert.equal(bs!.dtype, torch.float32);
  assert.deepEqual(bs!.tolist(), cat(vectors).tolist());
  // a view past its storage's start, and the kernel's trace
  const view = randn([6, 5], 20).to("cuda").narrow(0, 2, 3);
  assert.deepEqual(stackRowsAs([parts[0]!, view], torch.bfloat16).float().tolist(), cat([parts[0]!, view]).to(torch.bfloat16).float().tolist());
  if (!NO_TRACE) {
    const kernels = launches(`
      const { torch } = await import(dist + "/torch.js");
      const { stackRowsAs } = await import(dist + "/ops/join.js");
      const parts = [torch.randn([4, 8]).to("cuda"), torch.randn([2, 8]).to("cuda")];
      torch.cuda.synchronize();
      console.error("ftemu: begin");
      stackRowsAs(parts, torch.bfloat16);
      const { stackGroupsAs } = await import(dist + "/ops/join.js");
      stackGroupsAs([{ parts, dtype: torch.float16 }, { parts: [torch.randn([3]).to("cuda"), torch.randn([5]).to("cuda")], dtype: torch.float32 }]);
      torch.cuda.synchronize();
    `);
    assert.deepEqual(kernels, ["ft_cast_many", "ft_cast_many"], "one launch a call, two groups included");
  }
});

test("BERT's self-attention launches one projection's kernels: the packed one", { skip: NO_TRACE }, () => {
  const kernels = launches(`
    const { torch } = await import(dist + "/torch.js");
    const { BertConfig } = await import(dist + "/models/bert/configuration_bert.js");
    const { BertSelfAttention } = await import(dist + "/models/bert/modeling_bert.js");
    const config = new BertConfig({ hidden_size: 64, num_attention_heads: 2, attention_probs_dropout_prob: 0.1 });
    const layer = new BertSelfAttention(config).to("cuda").train();
    const hidden = torch.randn([2, 7, 64]).to("cuda").requires_grad_(true);
    const mask = torch.zeros([2, 1, 1, 7]).to("cuda");
    const upstream = torch.randn([2, 7, 64]).to("cuda");
    torch.cuda.synchronize();
    console.error("ftemu: begin");
    layer(hidden, mask).backward(upstream);
    torch.cuda.synchronize();
  `);
  // The GEMMs (cuBLASLt) and the copies of the parameters' first gradients (memcpy) launch no kernels; the weights and
  // biases are stacked in one launch (and the weights again for the backward); three projections would sum three
  // bias gradients and add the hidden states' three gradients.
  assert.deepEqual(kernels, ["ft_cast_many", "ft_attention_forward_64", "ft_attention_backward_dq_64", "ft_attention_backward_dkv_64", "ft_cast_many", "ft_reduce_column_tiles"]);
});
