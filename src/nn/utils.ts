// torch.nn.utils: gradient clipping over all parameters in one pass (one native call for the norm, one to scale;
// on a GPU one call for both, which never waits for the device, copies the sums of squares that a gradient's maker
// already summed, ops/chunk_squares.ts, and reads only the rows of an embedding's gradient given values,
// ops/row_flags.ts).
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import { native } from "../backend/native.js";
import { backendFor, checkSameDevice } from "../backend/kernels.js";
import { fromFlat } from "../tensor/creation.js";
import { wroteInPlace } from "../amp/lowp_copy.js";
import { chunkSquaresOf } from "../ops/chunk_squares.js";
import { rowFlagsOf, scaleKeepingRowFlags } from "../ops/row_flags.js";

/** The gradients of the parameters that have one, checked for the one-pass kernels; `caller` names the user. */
export function gradsOf(parameters: Iterable<Tensor> | Tensor, caller = "clip_grad_norm_"): Tensor[] {
  const list = (parameters as Tensor)._isTensor ? [parameters as Tensor] : [...(parameters as Iterable<Tensor>)];
  const grads = list.map((p) => p.grad).filter((g): g is Tensor => g !== null);
  for (const g of grads) {
    if (g.dtype !== float32 || !g.is_contiguous()) throw new Error(`${caller}: gradients must be contiguous float32 tensors`);
  }
  checkSameDevice(...grads);
  return grads;
}

/** The 2-norm of all gradients together (a JS number). */
export function gradNorm(grads: Tensor[]): number {
  const kernels = grads.length > 0 ? backendFor(grads[0]) : native;
  return Math.sqrt(kernels.sumSquares(grads.map((g) => g.buffer), grads.map((g) => g.offset), grads.map((g) => g.numel())));
}

/** Scales the gradients so that their total 2-norm is at most max_norm; returns the norm before clipping. */
export function clip_grad_norm_(parameters: Iterable<Tensor> | Tensor, max_norm: number, norm_type = 2, error_if_nonfinite = false): Tensor {
  if (norm_type !== 2) throw new Error(`clip_grad_norm_: norm_type ${norm_type} is not supported (only 2)`);
  const grads = gradsOf(parameters);
  if (grads.length > 0 && grads[0].device.type === "cuda" && !error_if_nonfinite) {
    const norm = Tensor.empty([], float32, grads[0].device);
    clipOnDevice(grads, max_norm, norm);
    return norm;
  }
  const total = gradNorm(grads);
  if (error_if_nonfinite && !Number.isFinite(total)) {
    throw new Error(`The total norm of order ${norm_type} for gradients from \`parameters\` is non-finite, so it cannot be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set \`error_if_nonfinite=False\``);
  }
  const coef = clipFactor(max_norm, total);
  if (coef < 1 && grads.length > 0) scaleGrads(grads, coef);
  return fromFlat([total], [], float32);
}

/** torch computes clip_coef = max_norm / (total_norm + 1e-6) in float32 (and clamps it at 1). */
function clipFactor(max_norm: number, total: number): number {
  return Math.fround(Math.fround(max_norm) / Math.fround(Math.fround(total) + 1e-6));
}

/** Multiplies every gradient by `factor` in place. */
export function scaleGrads(grads: Tensor[], factor: number): void {
  backendFor(grads[0]).scaleMany(grads.map((g) => g.buffer), grads.map((g) => g.offset), grads.map((g) => g.numel()), factor);
  wroteInPlace(grads);
}

/**
 * finetune-specific, for an optimizer that clips as it reads the gradients (AdamW.step_clipped): writes the total
 * 2-norm of the gradients to `norm` and clip_grad_norm_'s factor max_norm / (norm + 1e-6) to `coef` (float32
 * scalars on the gradients' device; on a GPU nothing waits for it) and scales nothing.
 */
export function clip_grad_norm_deferred(parameters: Iterable<Tensor> | Tensor, max_norm: number, norm: Tensor, coef: Tensor): void {
  const grads = gradsOf(parameters);
  if (grads.length > 0 && grads[0].device.type === "cuda") return clipOnDevice(grads, max_norm, norm, coef);
  const total = gradNorm(grads);
  norm.fill_(total);
  coef.fill_(clipFactor(max_norm, total));
}

/**
 * The norm and the factor stay on the GPU (the same roundings as above), so a CUDA graph can capture the clipping:
 * the gradients are scaled, or with `coef` the factor is written there and nothing is scaled.
 */
function clipOnDevice(grads: Tensor[], max_norm: number, norm: Tensor, coef?: Tensor): void {
  const sums = grads.map(chunkSquaresOf);
  const rowLengths = grads.map((g) => (g.ndim === 2 ? g.shape[1]! : 0));
  const flags = grads.map((g, i) => (rowLengths[i]! > 0 ? rowFlagsOf(g, rowLengths[i]!) : null));
  native.cuda.clipGradNorm(grads.map((g) => g.buffer), grads.map((g) => g.offset), grads.map((g) => g.numel()), max_norm,
    norm.buffer, norm.offset, coef?.buffer ?? null, coef?.offset ?? 0, sums.map((s) => s?.buffer ?? null), sums.map((s) => s?.offset ?? 0),
    flags, rowLengths);
  if (!coef) scaleKeepingRowFlags(grads, () => wroteInPlace(grads));
}

export function clip_grad_value_(parameters: Iterable<Tensor> | Tensor, clip_value: number): void {
  for (const g of gradsOf(parameters)) g.clamp_(-clip_value, clip_value);
}
