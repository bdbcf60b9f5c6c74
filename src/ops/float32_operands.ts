// The native kernels compute in float32: operands are read as contiguous float32 (copied when they are not) and
// results are rounded back to the caller's dtype. Shared by the elementwise ops, torch.nn.functional and attention.
import type { Tensor } from "../tensor/tensor.js";
import { DType, float32 } from "../tensor/dtype.js";
import { convertContiguous } from "../tensor/creation.js";

/** A contiguous float32 version of t; `owned` says whether the caller must release it. */
export function f32(t: Tensor): { t: Tensor; owned: boolean } {
  t.checkAlive();
  if (t.dtype === float32 && t.is_contiguous()) return { t, owned: false };
  return { t: convertContiguous(t, float32), owned: true };
}

export function release(x: { t: Tensor; owned: boolean }): void {
  if (x.owned) x.t.dispose();
}

/** A float32 result `out` as a tensor of `dtype`: itself, or rounded to it (out is released). */
export function restoreDtype(out: Tensor, dtype: DType): Tensor {
  if (dtype === float32) return out;
  const c = convertContiguous(out, dtype);
  out.dispose();
  return c;
}
