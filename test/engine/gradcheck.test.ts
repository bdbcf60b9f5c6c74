// Every differentiable op against finite differences.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import { dropout_add, masked_softmax } from "../../src/ops/functional.js";
import { linear_gelu, packed_linear } from "../../src/ops/matmul.js";
import { gradcheck, leaf } from "../helpers/gradcheck.js";
import { rng } from "../helpers/rng.js";
import { leafTensors, planBackward, planLossValue, randomLeafValues, randomPlan } from "../helpers/random_graphs.js";
import type { Tensor } from "../../src/tensor/tensor.js";

const positive = (shape: number[], seed: number) => {
  const t = torch.rand(shape, { generator: new torch.Generator().manual_seed(seed) }).add(0.5);
  return t.requires_grad_(true);
};
/** values kept away from the kinks of relu / abs / clamp */
const awayFromZero = (shape: number[], seed: number) => {
  const r = torch.rand(shape, { generator: new torch.Generator().manual_seed(seed) });
  const signs = torch.rand(shape, { generator: new torch.Generator().manual_seed(seed + 100) }).gt(0.5).float().mul(2).sub(1);
  return r.add(0.2).mul(signs).requires_grad_(true);
};

// Random expression graphs over two leaves whose nodes take earlier nodes as operands, so that leaves and
// subexpressions feed several ops (and an op twice): the engine's handing on of one gradient to several inputs and
// its accumulation into .grad, against forward-mode derivatives in double precision.
test("random graphs that reuse leaves and subexpressions: autograd's gradients are forward mode's", () => {
  type Dual = { v: number; da: number; db: number };
  type Op = [(x: Tensor, y: Tensor) => Tensor, (p: Dual, q: Dual) => Dual];
  const ops: Op[] = [
    [(x, y) => x.add(y), (p, q) => ({ v: p.v + q.v, da: p.da + q.da, db: p.db + q.db })],
    [(x, y) => x.sub(y), (p, q) => ({ v: p.v - q.v, da: p.da - q.da, db: p.db - q.db })],
    [(x, y) => x.mul(y), (p, q) => ({ v: p.v * q.v, da: p.da * q.v + p.v * q.da, db: p.db * q.v + p.v * q.db })],
    [(x) => x.mul(0.5), (p) => ({ v: p.v * 0.5, da: p.da * 0.5, db: p.db * 0.5 })],
  ];
  const r = rng(77);
  const values = () => Array.from({ length: 3 }, () => r() * 2 - 1);
  for (let trial = 0; trial < 300; trial++) {
    const [av, bv] = [values(), values()];
    const a = torch.tensor(av, { dtype: torch.float32 }).requires_grad_(), b = torch.tensor(bv, { dtype: torch.float32 }).requires_grad_();
    const nodes: Tensor[] = [a, b];
    const duals: Dual[][] = [av.map((v) => ({ v, da: 1, db: 0 })), bv.map((v) => ({ v, da: 0, db: 1 }))];
    const steps = 2 + Math.floor(r() * 7);
    for (let s = 0; s < steps; s++) {
      const [op, dual] = ops[Math.floor(r() * ops.length)]!;
      const [i, j] = [Math.floor(r() * nodes.length), Math.floor(r() * nodes.length)];
      nodes.push(op(nodes[i]!, nodes[j]!));
      duals.push(duals[i]!.map((p, e) => dual(p, duals[j]![e]!)));
    }
    // the loss sums the last node and one more, so that several nodes reach it
    const k = Math.floor(r() * nodes.length);
    nodes.at(-1)!.add(nodes[k]!).sum().backward();
    const last = duals.at(-1)!;
    for (const [leafTensor, wrt] of [[a, "da"], [b, "db"]] as const) {
      const expected = last.map((p, e) => p[wrt] + duals[k]![e]![wrt]);
      const got = leafTensor.grad ? (leafTensor.grad.tolist() as number[]) : [0, 0, 0];
      expected.forEach((x, e) => assert.ok(Math.abs(got[e]! - x) <= 1e-4 * Math.max(1, Math.abs(x)),
        `trial ${trial}, ${wrt} element ${e}: ${got[e]} against ${x}`));
    }
  }
});

// The same with linear layers, tanh and a bias leaf broadcast over rows (test/helpers/random_graphs.ts): against
// central differences of the graph evaluated in double precision.
test("random graphs with linear layers, broadcasting and reused parameters: gradients against double-precision differences", () => {
  const r = rng(91);
  for (let trial = 0; trial < 200; trial++) {
    const plan = randomPlan(r);
    const init = randomLeafValues(r);
    const leaves = leafTensors(init);
    // every fourth graph runs its backward twice (retain_graph): .grad holds twice the gradient
    const passes = trial % 4 === 0 ? 2 : 1;
    planBackward(plan, leaves, passes);
    for (const name of ["x", "w", "c"] as const) {
      const got = leaves[name].grad ? (leaves[name].grad!.flatten().tolist() as number[]) : init[name].map(() => 0);
      init[name].forEach((v, e) => {
        const h = 1e-5;
        const at = (d: number) => planLossValue(plan, { ...init, [name]: init[name].map((u, f) => (f === e ? v + d : u)) });
        const expected = (passes * (at(h) - at(-h))) / (2 * h);
        assert.ok(Math.abs(got[e]! - expected) <= 1e-3 * Math.max(1, Math.abs(expected)),
          `trial ${trial}, d${name}[${e}]: ${got[e]} against ${expected}`);
      });
    }
  }
});

test("elementwise arithmetic with broadcasting", () => {
  gradcheck("add", (a, b) => a.add(b, { alpha: 2 }), [leaf([3, 4], 1), leaf([4], 2)]);
  gradcheck("sub", (a, b) => a.sub(b), [leaf([2, 3, 4], 3), leaf([3, 1], 4)]);
  gradcheck("mul", (a, b) => a.mul(b), [leaf([3, 4], 5), leaf([1, 4], 6)]);
  gradcheck("div", (a, b) => a.div(b), [leaf([3, 4], 7), positive([3, 4], 8)]);
  gradcheck("scalar ops", (a) => a.mul(3).add(1).sub(2).div(4).rsub(5), [leaf([5], 9)]);
  gradcheck("scalar / tensor", (a) => torch.div(2, a), [positive([5], 10)]);
  gradcheck("pow", (a) => a.pow(3), [leaf([6], 11)]);
  gradcheck("neg", (a) => a.neg(), [leaf([6], 12)]);
  gradcheck("maximum", (a, b) => torch.maximum(a, b), [leaf([8], 13), leaf([8], 14)]);
  gradcheck("minimum", (a, b) => torch.minimum(a, b), [leaf([8], 15), leaf([8], 16)]);
  gradcheck("clamp", (a) => a.clamp(-0.5, 0.5), [torch.tensor([-1.2, -0.8, -0.2, 0.1, 0.35, 0.9, 1.5]).requires_grad_()]);
});

test("unary functions", () => {
  gradcheck("exp", (a) => a.exp(), [leaf([6], 20)]);
  gradcheck("log", (a) => a.log(), [positive([6], 21)]);
  gradcheck("log1p", (a) => a.log1p(), [positive([6], 22)]);
  gradcheck("sqrt", (a) => a.sqrt(), [positive([6], 23)]);
  gradcheck("rsqrt", (a) => a.rsqrt(), [positive([6], 24)]);
  gradcheck("abs", (a) => a.abs(), [awayFromZero([6], 25)]);
  gradcheck("square", (a) => a.square(), [leaf([6], 26)]);
  gradcheck("reciprocal", (a) => a.reciprocal(), [positive([6], 27)]);
  gradcheck("tanh", (a) => a.tanh(), [leaf([6], 28)]);
  gradcheck("sigmoid", (a) => a.sigmoid(), [leaf([6], 29)]);
  gradcheck("relu", (a) => a.relu(), [awayFromZero([6], 30)]);
  gradcheck("gelu erf", (a) => F.gelu(a), [leaf([12], 31, 2)]);
  gradcheck("gelu tanh", (a) => F.gelu(a, "tanh"), [leaf([12], 32, 2)]);
  // the backward reads a contiguous input in place, from its offset
  gradcheck("gelu of rows at an offset", (a) => F.gelu(a.narrow(0, 1, 2)), [leaf([3, 4], 34, 2)]);
  gradcheck("softplus", (a) => F.softplus(a), [leaf([6], 33)]);
});

test("matrix products", () => {
  gradcheck("matmul 2d", (a, b) => a.matmul(b), [leaf([3, 5], 40), leaf([5, 4], 41)]);
  gradcheck("matmul batched broadcast", (a, b) => a.matmul(b), [leaf([2, 3, 5], 42), leaf([5, 4], 43)]);
  gradcheck("matmul 4d with transposed view", (a, b) => a.matmul(b.transpose(-1, -2)), [leaf([2, 2, 3, 4], 44), leaf([2, 2, 5, 4], 45)]);
  gradcheck("matmul vector", (a, b) => a.matmul(b), [leaf([4], 46), leaf([4, 3], 47)]);
  gradcheck("matmul dot", (a, b) => a.matmul(b), [leaf([4], 48), leaf([4], 49)]);
  gradcheck("bmm", (a, b) => torch.bmm(a, b), [leaf([2, 3, 4], 50), leaf([2, 4, 2], 51)]);
  gradcheck("linear", (x, w, b) => F.linear(x, w, b), [leaf([2, 3, 4], 52), leaf([5, 4], 53), leaf([5], 54)]);
  gradcheck("linear no bias", (x, w) => F.linear(x, w), [leaf([3, 4], 55), leaf([2, 4], 56)]);
  gradcheck("linear_gelu", (x, w, b) => linear_gelu(x, w, b), [leaf([2, 3, 4], 57), leaf([6, 4], 58), leaf([6], 59)]);
  gradcheck("packed_linear", (x, w1, w2, b1, b2) => packed_linear(x, [w1, w2], [b1, b2]),
    [leaf([2, 3, 4], 60), leaf([5, 4], 61), leaf([2, 4], 62), leaf([5], 63), leaf([2], 64)]);
});

test("softmax family, layer norm, embedding, dropout, attention", () => {
  gradcheck("softmax last", (a) => a.softmax(-1), [leaf([3, 5], 60)]);
  gradcheck("softmax dim 0", (a) => a.softmax(0), [leaf([3, 5], 61)]);
  gradcheck("log_softmax", (a) => a.log_softmax(1), [leaf([2, 4, 3], 62)]);
  const mask = torch.tensor([[0, 0, -1e9], [0, 0, 0]]);
  gradcheck("masked_softmax", (s) => masked_softmax(s, mask, 0.5), [leaf([2, 2, 4, 3], 63)]);
  gradcheck("layer_norm", (x, w, b) => F.layer_norm(x, [6], w, b, 1e-5), [leaf([4, 6], 64), leaf([6], 65, 0.5, 1), leaf([6], 66)]);
  gradcheck("layer_norm without affine", (x) => F.layer_norm(x, [3, 4]), [leaf([2, 3, 4], 67)]);
  const ids = torch.tensor([[1, 3, 0], [3, 3, 2]]);
  gradcheck("embedding", (w) => F.embedding(ids, w), [leaf([5, 4], 68)]);
  const padded = leaf([5, 4], 69);
  F.embedding(ids, padded, 3).sum().backward();
  assert.deepEqual(padded.grad!.select(0, 3).tolist(), [0, 0, 0, 0], "the padding row gets no gradient");
  assert.deepEqual(padded.grad!.select(0, 1).tolist(), [1, 1, 1, 1]);
  gradcheck("dropout", (x) => F.dropout(x, 0.3, true, new torch.Generator().manual_seed(3)), [leaf([40], 70)]);
  gradcheck("dropout_add", (x, r) => dropout_add(x, r, 0.3, true, new torch.Generator().manual_seed(3)), [leaf([40], 74), leaf([40], 75)]);
  const keys = torch.tensor([[[[0, 0, -1e9, 0, 0]]]], { dtype: torch.float32 });
  gradcheck("scaled_dot_product_attention", (q, k, v) => F.scaled_dot_product_attention(q, k, v, { attn_mask: keys }), [leaf([1, 2, 3, 4], 71), leaf([1, 2, 5, 4], 72), leaf([1, 2, 5, 4], 73)]);
  gradcheck("scaled_dot_product_attention causal", (q, k, v) => F.scaled_dot_product_attention(q, k, v, { is_causal: true, scale: 0.7 }), [leaf([2, 1, 4, 3], 74), leaf([2, 1, 4, 3], 75), leaf([2, 1, 4, 2], 76)]);
});

test("losses", () => {
  const target = torch.tensor([1, 0, -100, 2]);
  gradcheck("cross_entropy mean", (x) => F.cross_entropy(x, target), [leaf([4, 3], 80)]);
  gradcheck("cross_entropy sum", (x) => F.cross_entropy(x, target, { reduction: "sum" }), [leaf([4, 3], 81)]);
  gradcheck("cross_entropy none", (x) => F.cross_entropy(x, target, { reduction: "none" }), [leaf([4, 3], 82)]);
  gradcheck("mse_loss", (x, y) => F.mse_loss(x, y), [leaf([3, 2], 83), leaf([3, 2], 84)]);
  const labels = torch.tensor([[1, 0], [0, 1], [1, 1]]).float();
  gradcheck("bce_with_logits", (x) => F.binary_cross_entropy_with_logits(x, labels), [leaf([3, 2], 85)]);
  gradcheck("bce_with_logits pos_weight", (x) => F.binary_cross_entropy_with_logits(x, labels, { pos_weight: torch.tensor([2, 0.5]) }), [leaf([3, 2], 86)]);
});

test("reductions", () => {
  gradcheck("sum all", (a) => a.sum(), [leaf([3, 4], 90)]);
  gradcheck("sum dims keepdim", (a) => a.sum([0, 2], true), [leaf([2, 3, 4], 91)]);
  gradcheck("mean dim", (a) => a.mean(1), [leaf([2, 3, 4], 92)]);
  gradcheck("amax", (a) => a.amax(1), [leaf([3, 5], 93)]);
  gradcheck("max dim", (a) => a.max(1).values, [leaf([3, 5], 94)]);
  gradcheck("min dim keepdim", (a) => a.min(0, true).values, [leaf([3, 5], 95)]);
  gradcheck("var", (a) => a.var(1), [leaf([3, 5], 96)]);
  gradcheck("norm", (a) => a.norm(), [leaf([7], 97)]);
});

test("views, joins and selection", () => {
  gradcheck("view/reshape", (a) => a.view([4, 3]).reshape(2, 6), [leaf([3, 4], 100)]);
  gradcheck("permute + contiguous", (a) => a.permute(2, 0, 1).contiguous(), [leaf([2, 3, 4], 101)]);
  gradcheck("transpose + reshape (copy)", (a) => a.transpose(0, 1).reshape([-1]), [leaf([3, 4], 102)]);
  gradcheck("unsqueeze/squeeze", (a) => a.unsqueeze(1).squeeze(1).unsqueeze(0), [leaf([3, 4], 103)]);
  gradcheck("expand", (a) => a.expand(3, 2, 4), [leaf([2, 1], 104)]);
  gradcheck("select", (a) => a.select(1, 2), [leaf([3, 4], 105)]);
  gradcheck("narrow", (a) => a.narrow(0, 1, 2), [leaf([4, 3], 106)]);
  gradcheck("index", (a) => a.index(null, [1, null], 0, "..."), [leaf([4, 3, 2], 107)]);
  gradcheck("index with step", (a) => a.index(":", [0, 5, 2]), [leaf([2, 6], 108)]);
  gradcheck("split", (a) => a.split(2, 1)[1], [leaf([2, 5], 109)]);
  gradcheck("chunk", (a) => a.chunk(2, 0)[0], [leaf([4, 2], 110)]);
  gradcheck("cat", (a, b) => torch.cat([a, b], 1), [leaf([2, 3], 111), leaf([2, 2], 112)]);
  gradcheck("stack", (a, b) => torch.stack([a, b], 1), [leaf([2, 3], 113), leaf([2, 3], 114)]);
  const cond = torch.tensor([[true, false, true], [false, false, true]]);
  gradcheck("where", (a, b) => torch.where(cond, a, b), [leaf([2, 3], 115), leaf([3], 116)]);
  gradcheck("masked_fill", (a) => a.masked_fill(cond, -1), [leaf([2, 3], 117)]);
  gradcheck("clone", (a) => a.clone(), [leaf([3], 118)]);
  gradcheck("to bfloat16 and back", (a) => a.to(torch.bfloat16).to(torch.float32), [leaf([3], 119)], { eps: 0.1, atol: 0.1 });
});
