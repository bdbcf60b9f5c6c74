// Finite-difference gradient checks in float32: central differences of a random projection of the output.
import assert from "node:assert/strict";
import { Tensor } from "../../src/tensor/tensor.js";
import { torch } from "../../src/torch.js";

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  /** at most this many elements of each input are perturbed */
  samples?: number;
}

function scalarLoss(out: Tensor, weights: Tensor): number {
  return torch.no_grad(() => out.mul(weights).sum().item());
}

export function gradcheck(label: string, fn: (...inputs: Tensor[]) => Tensor, inputs: Tensor[], options: GradcheckOptions = {}): void {
  const eps = options.eps ?? 1e-2;
  const atol = options.atol ?? 2e-3;
  const rtol = options.rtol ?? 2e-2;
  const samples = options.samples ?? 24;
  for (const x of inputs) x.grad = null;
  const out = fn(...inputs);
  const weights = torch.randn([...out.shape], { generator: new torch.Generator().manual_seed(7) });
  out.mul(weights).sum().backward();
  inputs.forEach((x, k) => {
    if (!x.requires_grad) return;
    assert.ok(x.grad, `${label}: input ${k} got no gradient`);
    const analytic = x.grad.data() as Float32Array;
    const data = new Float32Array(x.buffer, x.offset * 4, x.numel());
    const n = x.numel();
    const picks = n <= samples ? [...Array(n).keys()] : Array.from({ length: samples }, (_, i) => Math.floor((i * n) / samples));
    for (const i of picks) {
      const original = data[i];
      data[i] = original + eps;
      const plus = scalarLoss(fn(...inputs), weights);
      data[i] = original - eps;
      const minus = scalarLoss(fn(...inputs), weights);
      data[i] = original;
      const numeric = (plus - minus) / (2 * eps);
      const diff = Math.abs(numeric - analytic[i]);
      assert.ok(diff <= atol + rtol * Math.abs(numeric), `${label}: d/d input${k}[${i}] analytic ${analytic[i]} vs numeric ${numeric}`);
    }
  });
}

/** A float32 leaf with values from the seeded generator, scaled and shifted. */
export function leaf(shape: number[], seed: number, scale = 1, shift = 0): Tensor {
  const t = torch.randn(shape, { generator: new torch.Generator().manual_seed(seed) }).mul(scale).add(shift);
  return t.requires_grad_(true);
}
