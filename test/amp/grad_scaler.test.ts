// torch.amp.GradScaler: PyTorch's scaling, unscaling, skipped steps, growth and backoff, and its misuse errors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { torch } from "../../src/torch.js";
import type { Tensor } from "../../src/tensor/tensor.js";

function setup(gradValues: number[]): { p: Tensor; opt: InstanceType<typeof torch.optim.SGD> } {
  const p = torch.tensor([1, 2, 3, 4], { dtype: torch.float32 }).requires_grad_();
  p.grad = torch.tensor(gradValues, { dtype: torch.float32 });
  return { p, opt: new torch.optim.SGD([p], { lr: 0.5 }) };
}

test("scale multiplies by the scale, unscale_ divides the gradients, step runs the optimizer", () => {
  const scaler = new torch.amp.GradScaler("cpu", { init_scale: 1024 });
  assert.equal(scaler.get_scale(), 1024);
  assert.deepEqual(scaler.scale(torch.tensor([0.5, -2], { dtype: torch.float32 })).tolist(), [512, -2048]);
  const { p, opt } = setup([1024, 2048, -1024, 0]);
  scaler.unscale_(opt);
  assert.deepEqual(p.grad!.tolist(), [1, 2, -1, 0]);
  scaler.step(opt); // already unscaled: not divided again
  assert.deepEqual(p.tolist(), [0.5, 1, 3.5, 4]);
  scaler.update();
  assert.equal(scaler.get_scale(), 1024, "one clean step does not grow the scale yet");
});

test("an inf or NaN gradient skips the step and halves the scale; growth_interval clean steps double it", () => {
  const scaler = new torch.amp.GradScaler("cpu", { init_scale: 8, growth_interval: 3 });
  for (const bad of [Infinity, -Infinity, NaN]) {
    const { p, opt } = setup([8, bad, 8, 8]);
    const before = scaler.get_scale();
    scaler.step(opt);
    scaler.update();
    assert.deepEqual(p.tolist(), [1, 2, 3, 4], `step skipped for ${bad}`);
    assert.equal(scaler.get_scale(), before / 2);
  }
  assert.equal(scaler.get_scale(), 1);
  for (let i = 1; i <= 3; i++) {
    const { p, opt } = setup([1, 1, 1, 1]);
    scaler.step(opt);
    scaler.update();
    assert.deepEqual(p.tolist(), [0.5, 1.5, 2.5, 3.5]);
    assert.equal(scaler.get_scale(), i < 3 ? 1 : 2, `after ${i} clean steps`);
  }
  assert.deepEqual(scaler.state_dict(), { scale: 2, growth_factor: 2, backoff_factor: 0.5, growth_interval: 3, _growth_tracker: 0 });
  const copy = new torch.amp.GradScaler("cpu");
  copy.load_state_dict(scaler.state_dict());
  assert.deepEqual(copy.state_dict(), scaler.state_dict());
  scaler.update(64);
  assert.equal(scaler.get_scale(), 64, "update(new_scale) sets the scale");
});

test("GradScaler refuses misuse as PyTorch does, and does nothing when disabled", () => {
  const scaler = new torch.amp.GradScaler("cpu");
  const { opt } = setup([1, 1, 1, 1]);
  scaler.unscale_(opt);
  assert.throws(() => scaler.unscale_(opt), /unscale_\(\) has already been called on this optimizer since the last update\(\)/);
  scaler.step(opt);
  assert.throws(() => scaler.unscale_(opt), /unscale_\(\) is being called after step\(\)/);
  assert.throws(() => scaler.step(opt), /step\(\) has already been called since the last update\(\)/);
  scaler.update();
  assert.throws(() => scaler.update(), /No inf checks were recorded prior to update/);
  assert.throws(() => new torch.amp.GradScaler("cpu", { growth_factor: 1 }), /growth factor must be > 1/);
  assert.throws(() => new torch.amp.GradScaler("cpu", { backoff_factor: 1 }), /backoff factor must be < 1/);
  assert.throws(() => new torch.amp.GradScaler("cuda").scale(torch.tensor([1.5])), /cannot scale a tensor on cpu/);

  const off = new torch.amp.GradScaler("cpu", { enabled: false });
  const x = torch.tensor([3.5]);
  assert.equal(off.scale(x), x);
  assert.equal(off.get_scale(), 1);
  const { p, opt: opt2 } = setup([1, 1, 1, 1]);
  off.step(opt2);
  off.update();
  assert.deepEqual(p.tolist(), [0.5, 1.5, 2.5, 3.5]);
  assert.deepEqual(off.state_dict(), {});
});
