// packed_linear: one linear layer over stacked weights, which it stacks again for the backward instead of keeping.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import { packed_linear } from "../../src/ops/matmul.js";
import { cat } from "../../src/ops/join.js";
import { assertClose } from "../helpers/compare.js";

const randn = (shape: number[], seed: number) => torch.randn(shape, { generator: new torch.Generator().manual_seed(seed) });

test("packed_linear is linear over the concatenated weights and biases, gradients included", () => {
  const x = randn([2, 3, 4], 1);
  const parts = [[5, 2], [3, 3], [2, 4]].map(([rows, seed]) => ({ w: randn([rows!, 4], seed!), b: randn([rows!], seed! + 10) }));
  const leaves = () => ({ x: x.clone().requires_grad_(true), ws: parts.map((p) => p.w.clone().requires_grad_(true)), bs: parts.map((p) => p.b.clone().requires_grad_(true)) });
  const upstream = randn([2, 3, 10], 9);
  const a = leaves();
  const packed = packed_linear(a.x, a.ws, a.bs);
  packed.backward(upstream);
  const e = leaves();
  const expected = F.linear(e.x, cat(e.ws), cat(e.bs));
  expected.backward(upstream);
  assertClose(packed.detach(), expected.detach(), 1e-6, "output");
  assertClose(a.x.grad!, e.x.grad!, 1e-6, "x.grad");
  a.ws.forEach((w, i) => assertClose(w.grad!, e.ws[i]!.grad!, 1e-6, `weight ${i}`));
  a.bs.forEach((b, i) => assertClose(b.grad!, e.bs[i]!.grad!, 1e-6, `bias ${i}`));
});

test("packed_linear's backward refuses weights written in place since the forward, as PyTorch does", () => {
  const x = randn([3, 4], 1).requires_grad_(true);
  const ws = [randn([2, 4], 2), randn([2, 4], 3)].map((w) => w.requires_grad_(true));
  const bs = [randn([2], 4), randn([2], 5)];
  const y = packed_linear(x, ws, bs);
  torch.no_grad(() => ws[1]!.add_(1));
  assert.throws(() => y.sum().backward(), /one of the variables needed for gradient computation has been modified by an inplace operation: \[torch.float32 \[2, 4\]\] is at version \d+; expected version \d+ instead/);
});

test("packed_linear names what does not fit", () => {
  const x = randn([3, 4], 1);
  assert.throws(() => packed_linear(x, [randn([2, 4], 2)], []), /packed_linear: expected as many biases as weights \(at least one\), got 1 and 0/);
  assert.throws(() => packed_linear(x, [randn([2, 4], 2), randn([2, 5], 3)], [randn([2], 4), randn([2], 5)]), /mat1 and mat2 shapes cannot be multiplied \(3x4 and 5x2\)/);
});
