// F.scaled_dot_product_attention on the CPU: against softmax(q k^T * scale + mask) v written out from primitives
// (values and the gradients of q, k and v), against BERT's former attention code to the bit with dropout, and its
// argument checks. test/cuda/attention_parity.test.ts holds the fused CUDA kernels to these numbers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import * as F from "../../src/nn/functional.js";
import { masked_softmax } from "../../src/ops/functional.js";
import { assertClose, maxAbsDiff } from "../helpers/compare.js";
import { leaf } from "../helpers/gradcheck.js";

type Attention = (q: Tensor, k: Tensor, v: Tensor) => Tensor;

function reference(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null, scale: number): Tensor {
  const z = q.matmul(k.transpose(-1, -2)).mul(scale);
  return (mask ? z.add(mask) : z).softmax(-1).matmul(v);
}

/** The output and the gradients of q, k and v under one seeded upstream gradient. */
function run(fn: Attention, q: Tensor, k: Tensor, v: Tensor): Tensor[] {
  const xs = [q, k, v].map((t) => t.detach().requires_grad_(true));
  const out = fn(xs[0], xs[1], xs[2]);
  out.backward(torch.randn([...out.shape], { generator: new torch.Generator().manual_seed(11) }));
  return [out.detach(), ...xs.map((x) => x.grad!)];
}

function assertSame(a: Tensor[], b: Tensor[], atol: number, label: string): void {
  ["output", "dq", "dk", "dv"].forEach((name, i) => assertClose(a[i], b[i], atol, `${label}: ${name}`));
}

const f32 = (values: number[], shape: number[]) => torch.tensor(values, { dtype: torch.float32 }).reshape(shape);
/** a bool mask with at least one key per query, and the additive mask torch's math path makes of it */
function boolMask(shape: number[], seed: number): { attend: Tensor; additive: Tensor } {
  const T = shape[shape.length - 1];
  const u = torch.rand(shape, { generator: new torch.Generator().manual_seed(seed) }).data() as Float32Array;
  const keep = Array.from(u, (x, i) => x > 0.4 || i % T === 0);
  return { attend: torch.tensor(keep).reshape(shape), additive: f32(keep.map((k) => (k ? 0 : -Infinity)), shape) };
}

const [B, H, S, T, D] = [2, 3, 5, 7, 4];
const q = leaf([B, H, S, D], 1);
const k = leaf([B, H, T, D], 2);
const v = leaf([B, H, T, D], 3);

test("equals softmax(q k^T * scale + mask) v and its gradients for every kind of mask", () => {
  const padding = f32([0, 0, 0, 0, 0, -3.4028234663852886e38, -3.4028234663852886e38, 0, 0, 0, 0, 0, 0, 0], [B, 1, 1, T]);
  const full = torch.randn([B, H, S, T], { generator: new torch.Generator().manual_seed(4) });
  const perHead = torch.randn([H, 1, T], { generator: new torch.Generator().manual_seed(5) });
  const bools = boolMask([S, T], 6);
  const causal = f32(Array.from({ length: S * T }, (_, i) => (i % T <= Math.floor(i / T) ? 0 : -Infinity)), [S, T]);
  const scale = 1 / Math.sqrt(D);
  const cases: [string, Attention, Attention][] = [
    ["no mask", (a, b, c) => F.scaled_dot_product_attention(a, b, c), (a, b, c) => reference(a, b, c, null, scale)],
    ["key padding [B, 1, 1, T]", (a, b, c) => F.scaled_dot_product_attention(a, b, c, { attn_mask: padding }), (a, b, c) => reference(a, b, c, padding, scale)],
    ["key padding [T]", (a, b, c) => F.scaled_dot_product_attention(a, b, c, { attn_mask: padding.select(0, 0).reshape([T]) }), (a, b, c) => reference(a, b, c, padding.select(0, 0).reshape([T]), scale)],
    ["full float [B, H, S, T]", (a, b, c) => F.scaled_dot_product_attention(a, b, c, { attn_mask: full }), (a, b, c) => reference(a, b, c, full, scale)],
    ["per head [H, 1, T]", (a, b, c) => F.scaled_dot_product_attention(a, b, c, { attn_mask: perHead }), (a, b, c) => reference(a, b, c, perHead, scale)],
    ["bool [S, T]", (a, b, c) => F.scaled_dot_product_attention(a, b, c, { attn_mask: bools.attend }), (a, b, c) => reference(a, b, c, bools.additive, scale)],
    ["is_causal", (a, b, c) => F.scaled_dot_product_attention(a, b, c, { is_causal: true }), (a, b, c) => reference(a, b, c, causal, scale)],
    ["scale", (a, b, c) => F.scaled_dot_product_attention(a, b, c, { attn_mask: padding, scale: 0.3 }), (a, b, c) => reference(a, b, c, padding, 0.3)],
  ];
  for (const [label, fn, ref] of cases) assertSame(run(fn, q, k, v), run(ref, q, k, v), 1e-6, label);
  const wide = leaf([B, H, T, 6], 7);
  assertSame(run((a, b, c) => F.scaled_dot_product_attention(a, b, c), q, k, wide), run((a, b, c) => reference(a, b, c, null, scale), q, k, wide), 1e-6, "value head dim 6");
});

test("a query that may attend no key attends all uniformly, as masked_softmax does", () => {
  const none = torch.tensor([true, true, false, true, true]).reshape([S, 1]).expand([S, T]);
  const out = F.scaled_dot_product_attention(q, k, v, { attn_mask: none });
  assertClose(out.select(2, 2), v.mean(2), 1e-6, "row 2 is the mean of the values");
});

test("dropout draws the bits F.dropout draws on the probabilities: BERT's former attention to the bit", () => {
  const padding = f32([0, 0, 0, 0, -3.4028234663852886e38, -3.4028234663852886e38, -3.4028234663852886e38, 0, 0, 0, 0, 0, 0, 0], [B, 1, 1, T]);
  const former: Attention = (a, b, c) => {
    const probs = masked_softmax(a.matmul(b.transpose(-1, -2)), padding.reshape([B, T]), 1 / Math.sqrt(D));
    return F.dropout(probs, 0.3).matmul(c);
  };
  torch.manual_seed(42);
  const expected = run(former, q, k, v);
  const state = torch.default_generator.get_state();
  torch.manual_seed(42);
  const actual = run((a, b, c) => F.scaled_dot_product_attention(a, b, c, { attn_mask: padding, dropout_p: 0.3 }), q, k, v);
  assertSame(actual, expected, 0, "dropout 0.3");
  assert.deepEqual(torch.default_generator.get_state(), state, "the same counters are consumed");
  const kept = F.scaled_dot_product_attention(q, k, v, { attn_mask: padding });
  assert.ok(maxAbsDiff(actual[0], kept.detach()) > 0.1, "dropout changed the output");
  assertClose(F.scaled_dot_product_attention(q, k, v, { dropout_p: 1 }).detach(), torch.zeros([B, H, S, D]), 0, "p = 1 drops everything");
});

test("argument checks", () => {
  const sdpa = F.scaled_dot_product_attention;
  assert.throws(() => sdpa(q.select(0, 0), k, v), /expected query of shape \[B, H, S, D\], got \[3, 5, 4\]/);
  assert.throws(() => sdpa(q, k.narrow(3, 0, 3), v), /must be \[B, H, S, D\], \[B, H, T, D\] and \[B, H, T, Dv\]/);
  assert.throws(() => sdpa(q, k, v.narrow(2, 0, 6)), /must be \[B, H, S, D\]/);
  assert.throws(() => sdpa(q, k, v.to(torch.bfloat16)), /Expected query, key, and value to have the same dtype/);
  assert.throws(() => sdpa(q.to(torch.int64), k.to(torch.int64), v.to(torch.int64)), /expected a floating point query/);
  assert.throws(() => sdpa(q, k, v, { attn_mask: torch.zeros([S, T], { dtype: torch.int64 }) }), /attn_mask dtype to be bool or float/);
  assert.throws(() => sdpa(q, k, v, { attn_mask: torch.zeros([S, 2]) }), /attn_mask of shape \[5, 2\] does not broadcast to \[B, H, S, T\] = \[2, 3, 5, 7\]/);
  assert.throws(() => sdpa(q, k, v, { attn_mask: torch.zeros([1, 1, 1, 1, T]) }), /does not broadcast/);
  assert.throws(() => sdpa(q, k, v, { attn_mask: torch.zeros([T]), is_causal: true }), /Explicit attn_mask should not be set when is_causal=True/);
  assert.throws(() => sdpa(q, k, v, { attn_mask: torch.zeros([T]).requires_grad_(true) }), /attention mask cannot require grad/);
  assert.throws(() => sdpa(q, k, v, { dropout_p: 1.5 }), /dropout probability has to be between 0 and 1/);
});
