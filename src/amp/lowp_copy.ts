// A float32 tensor's 16-bit copy, written by the kernel that produced the tensor (or by the optimizer that updated
// a parameter) in the same pass, so that autocast's matrix products read it instead of launching a cast. PyTorch
// has no such thing: its autocast casts every operand again. The copy is valid while the tensor's memory has not
// been written in place since (Storage.version, bumped by copy_, fill_, add_ and the other in-place methods); it
// lives as long as the tensor, or, when a graph node saved it, until backward() releases it.
//
// Gradients have them too: a linear layer's backward reads its output's gradient in 16 bits (its GEMMs' operand)
// and sums its columns (the bias gradient), so the op that takes that output says so (readsGradientAs), and where
// its backward's kernel can, it writes the gradient's 16-bit copy and column sums in the pass that writes the
// gradient (dropout_add_layer_norm), sparing the linear layer a launch that reads it all again.
import type { DType } from "../tensor/dtype.js";
import type { Tensor } from "../tensor/tensor.js";

/** A tensor's 16-bit copy, the storage version it holds, and the column sums its kernel also wrote, if any. */
export interface LowpEntry {
  copy: Tensor;
  version: number;
  column_sums: Tensor | null;
}

/**
 * Records `copy` (same shape, a 16-bit dtype; contiguous, or with t's strides and offset: a view's copy is the same
 * view of its base's, ops/view.ts) as `t`'s values now, with `column_sums` (float32, t's last dim: the sums of the
 * float32 values over every other dim) where the kernel also wrote them; `t` owns both from here on.
 */
export function attachLowpCopy(t: Tensor, copy: Tensor, column_sums: Tensor | null = null): void {
  if (t._lowp) {
    if (t._lowp.copy !== copy) releaseLowpCopy(t._lowp.copy);
    if (t._lowp.column_sums !== column_sums) t._lowp.column_sums?.dispose();
  }
  t._lowp = { copy, version: t.storage.version, column_sums };
}

/** The column sums attached with `t`'s 16-bit copy while it holds t's values, handed over (the caller disposes them), else null. */
export function takeColumnSums(t: Tensor): Tensor | null {
  const entry = t._lowp;
  if (!entry || entry.column_sums === null || lowpCopyOf(t, entry.copy.dtype) === null) return null;
  const sums = entry.column_sums;
  entry.column_sums = null;
  return sums;
}

const gradientDtypes = new WeakMap<Tensor, DType>();

/** Records that the backward of the op which made `t` reads t's gradient in the 16-bit `dtype`, with its column sums. */
export function readsGradientAs(t: Tensor, dtype: DType): void {
  gradientDtypes.set(t, dtype);
}

/** The 16-bit dtype the backward of the op which made `t` reads t's gradient in, where it said (readsGradientAs). */
export function gradientDtypeOf(t: Tensor): DType | null {
  return gradientDtypes.get(t) ?? null;
}

/** `t`'s 16-bit copy in `dtype` when it still holds t's values, else null. */
export function lowpCopyOf(t: Tensor, dtype: DType): Tensor | null {
  const entry = t._lowp;
  if (!entry || entry.copy.dtype !== dtype || entry.copy._disposed || entry.version !== t.storage.version) return null;
  return entry.copy;
}

/**
 * A 16-bit copy dies with its tensor (a parameter's persistent one too: nothing else owns it), unless a graph
 * node saved it (backward() releases it then).
 */
export function releaseLowpCopy(copy: Tensor): void {
  if (copy._savedCount > 0) copy._graphOwned = true;
  else copy.dispose();
}

/** A dying tensor's copy (releaseLowpCopy) and column sums. */
export function releaseLowpEntry(entry: LowpEntry): void {
  releaseLowpCopy(entry.copy);
  entry.column_sums?.dispose();
}

/**
 * The copies a native in-place update of `tensors` (an optimizer step) can write in the same pass: each tensor's
 * contiguous 16-bit copy (the whole of its memory, or its rows of a packed copy), valid or stale (the update
 * overwrites all of it), else null.
 */
export function lowpCopiesToWrite(tensors: readonly Tensor[]): (Tensor | null)[] {
  return tensors.map((t) => {
    const copy = t._lowp?.copy;
    const writable = copy && !copy._disposed && copy.dtype.itemsize === 2 && copy.is_contiguous() && copy.numel() === t.numel();
    return writable ? copy : null;
  });
}

/**
 * Records that a native call wrote `tensors`' memory in place (the in-place methods count their own writes) and,
 * where `written[i]` is not null, that copy with it: older copies are stale, the written ones hold the new values.
 */
export function wroteInPlace(tensors: readonly Tensor[], written: readonly (Tensor | null)[] = []): void {
  tensors.forEach((t, i) => {
    t.storage.version++;
    const copy = written[i];
    if (copy) attachLowpCopy(t, copy);
  });
}
