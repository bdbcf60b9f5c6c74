// A tensor's 16-bit copy (amp/lowp_copy.ts) through the view ops: each view carries the same view of the copy,
// which holds the view's values rounded to 16 bits, lives as long as the view, and is dropped once the memory is
// written in place.
import assert from "node:assert/strict";
import { test } from "node:test";
import { torch } from "../../src/torch.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { attachLowpCopy, lowpCopyOf } from "../../src/amp/lowp_copy.js";

/** A [2, 3, 4] tensor that carries its bfloat16 copy. */
function withCopy(): Tensor {
  const t = torch.randn([2, 3, 4], { generator: new torch.Generator().manual_seed(3) });
  attachLowpCopy(t, t.to(torch.bfloat16));
  return t;
}

/** Asserts that `v` carries a copy laid out as v is, over the copy's memory, holding v's values in bfloat16. */
function assertCarries(v: Tensor, base: Tensor, label: string): void {
  const copy = lowpCopyOf(v, torch.bfloat16);
  assert.ok(copy, `${label}: the view carries a copy`);
  assert.deepEqual(copy.shape, v.shape, label);
  assert.deepEqual(copy.strides, v.strides, label);
  assert.equal(copy.offset, v.offset, label);
  assert.equal(copy.storage, base._lowp!.copy.storage, `${label}: a view of the base's copy, not a new one`);
  assert.deepEqual(copy.float().data(), v.to(torch.bfloat16).float().data(), label);
}

test("view, reshape, permute, transpose, unsqueeze, squeeze, expand, narrow, select and indexing carry the copy", () => {
  const t = withCopy();
  const views: [string, Tensor][] = [
    ["view", t.view([6, 4])],
    ["reshape", t.reshape([2, 12])],
    ["permute", t.permute([2, 0, 1])],
    ["transpose", t.transpose(0, 1)],
    ["permute then reshape of the contiguous result", t.permute([0, 1, 2]).reshape([24])],
    ["unsqueeze", t.unsqueeze(1)],
    ["squeeze", t.unsqueeze(0).squeeze(0)],
    ["expand", t.narrow(0, 1, 1).expand([5, 3, 4])],
    ["narrow", t.narrow(2, 1, 2)],
    ["select", t.select(1, 2)],
    ["index", t.index(1, [0, 3, 2], null)],
  ];
  for (const [label, v] of views) assertCarries(v, t, label);
});

test("a view's copy dies with the view; an in-place write drops the copies of the base and its views", () => {
  const t = withCopy();
  const v = t.permute([1, 0, 2]);
  const copy = lowpCopyOf(v, torch.bfloat16)!;
  v.dispose();
  assert.ok(copy._disposed, "the view's copy went with it");
  assert.ok(lowpCopyOf(t, torch.bfloat16), "the base keeps its own");
  const w = t.view([6, 4]);
  t.add_(1);
  assert.equal(lowpCopyOf(t, torch.bfloat16), null);
  assert.equal(lowpCopyOf(w, torch.bfloat16), null, "a view made before the write");
  assert.equal(lowpCopyOf(t.view([6, 4]), torch.bfloat16), null, "a view made after the write");
});

test("no copy is carried where the base has none, or where its copy is laid out otherwise", () => {
  assert.equal(torch.ones([2, 3]).t()._lowp, null);
  const t = torch.randn([4, 3]).t();
  attachLowpCopy(t, t.to(torch.bfloat16));  // contiguous, unlike t
  assert.ok(lowpCopyOf(t, torch.bfloat16));
  assert.equal(t.unsqueeze(0)._lowp, null);
  assert.equal(t.transpose(0, 1)._lowp, null);
});
