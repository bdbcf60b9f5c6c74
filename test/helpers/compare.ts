// Numerical comparisons with messages that say where two tensors differ.
import assert from "node:assert/strict";
import type { Tensor } from "../../src/tensor/tensor.js";

export function maxAbsDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual([...a.shape], [...b.shape], "shapes differ");
  const x = a.data() as Float32Array;
  const y = b.data() as Float32Array;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

export function maxAbs(t: Tensor): number {
  return (t.data() as Float32Array).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

export function assertClose(actual: Tensor, expected: Tensor, atol: number, label: string): void {
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= atol, `${label}: max abs difference ${d} > ${atol}`);
}

/**
 * Within `rtol` of the expected tensor's largest magnitude (how gradients are compared). A tensor that is zero
 * up to round-off (below 1e-6, e.g. the gradient of attention's key bias) is compared against 1e-6 instead.
 */
export function assertCloseRelMax(actual: Tensor, expected: Tensor, rtol: number, label: string): void {
  const scale = Math.max(maxAbs(expected), 1e-6);
  const d = maxAbsDiff(actual, expected);
  assert.ok(d <= rtol * scale, `${label}: max abs difference ${d} > ${rtol} x max|expected| ${scale}`);
}
