// A float32 tensor's 16-bit copy, written by the kernel that produced the tensor (or by the optimizer that updated
// a parameter) in the same pass, so that autocast's matrix products read it instead of launching a cast. PyTorch
// has no such thing: its autocast casts every operand again. The copy is valid while the tensor's memory has not
// been written in place since (Storage.version, bumped by copy_, fill_, add_ and the other in-place methods); it
// lives as long as the tensor, or, when a graph node saved it, until backward() releases it.
import type { DType } from "../tensor/dtype.js";
import type { Tensor } from "../tensor/tensor.js";

/**
 * Records `copy` (same shape, a 16-bit dtype; contiguous, or with t's strides and offset: a view's copy is the same
 * view of its base's, ops/view.ts) as `t`'s values now; `t` owns it from here on.
 */
export function attachLowpCopy(t: Tensor, copy: Tensor): void {
  if (t._lowp && t._lowp.copy !== copy) releaseLowpCopy(t._lowp.copy);
  t._lowp = { copy, version: t.storage.version };
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
