// A tensor's 16-bit copy (amp/lowp_copy.ts) never outlives the values it copies: the optimizers' native steps
// rewrite it or mark it stale, the in-place methods and loads mark it stale, and it dies with its tensor. On the
// CPU, autocast casts every weight afresh (only a GPU's parameters keep copies: test/cuda/amp_parity.test.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import { Parameter } from "../../src/nn/parameter.js";
import { AdamW, SGD } from "../../src/optim/index.js";
import { clip_grad_norm_ } from "../../src/nn/utils.js";
import { attachLowpCopy, lowpCopyOf } from "../../src/amp/lowp_copy.js";
import type { Tensor } from "../../src/tensor/tensor.js";

/** A parameter with a persistent copy in `dtype`, as autocast leaves a GPU's parameters, and a gradient. */
function withCopy(dtype = torch.bfloat16): { p: Tensor; copy: Tensor } {
  const p = new Parameter(torch.randn([3, 1000], { generator: new torch.Generator().manual_seed(1) }));
  const copy = p.detach().to(dtype);
  copy._persistent = true;
  attachLowpCopy(p, copy);
  p.grad = torch.randn([3, 1000], { generator: new torch.Generator().manual_seed(2) });
  return { p, copy };
}

function assertSameValues(a: Tensor, b: Tensor, label: string): void {
  const x = a.data(), y = b.data();
  assert.equal(x.length, y.length, label);
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) assert.fail(`${label}[${i}]: ${x[i]} vs ${y[i]}`);
}

test("AdamW writes a parameter's copy with the new values; it stays valid", () => {
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const { p, copy } = withCopy(dtype);
    new AdamW([p], { lr: 0.1 }).step();
    assert.equal(lowpCopyOf(p, dtype), copy);
    assertSameValues(copy, p.detach().to(dtype), `${dtype} copy after the step`);
  }
});

test("SGD, in-place methods, load_state_dict and clipping leave no copy valid of what they overwrite", () => {
  const sgd = withCopy();
  new SGD([sgd.p], { lr: 0.1 }).step();
  assert.equal(lowpCopyOf(sgd.p, torch.bfloat16), null, "SGD");

  const inplace = withCopy();
  torch.no_grad(() => inplace.p.mul_(2));
  assert.equal(lowpCopyOf(inplace.p, torch.bfloat16), null, "mul_");

  const lin = new torch.nn.Linear(4, 3);
  const copy = lin.weight.detach().to(torch.bfloat16);
  attachLowpCopy(lin.weight, copy);
  lin.load_state_dict({ weight: torch.zeros([3, 4]), bias: torch.zeros([3]) });
  assert.equal(lowpCopyOf(lin.weight, torch.bfloat16), null, "load_state_dict");

  const { p } = withCopy();
  const grad = p.grad!;
  attachLowpCopy(grad, grad.to(torch.bfloat16));
  clip_grad_norm_([p], 1e-3).dispose();
  assert.equal(lowpCopyOf(grad, torch.bfloat16), null, "clip_grad_norm_ scaled the gradient");
});

test("a persistent copy dies with its tensor; on the CPU autocast keeps no copy of a weight", () => {
  const { p, copy } = withCopy();
  p.dispose();
  assert.ok(copy._disposed);

  const lin = new torch.nn.Linear(8, 4);
  const x = torch.randn([2, 8]);
  const y = torch.autocast("cpu", () => F.linear(x, lin.weight, lin.bias));
  assert.equal(lin.weight._lowp, null);
  y.sum().backward();
});

test("autocast's cache_enabled: inherited by nested regions, restored after them", () => {
  assert.equal(torch.is_autocast_cache_enabled(), true);
  torch.autocast("cpu", { cache_enabled: false }, () => {
    assert.equal(torch.is_autocast_cache_enabled(), false);
    torch.autocast("cuda", () => assert.equal(torch.is_autocast_cache_enabled(), false));
    torch.autocast("cpu", { cache_enabled: true }, () => assert.equal(torch.is_autocast_cache_enabled(), true));
  });
  assert.equal(torch.is_autocast_cache_enabled(), true);
});
