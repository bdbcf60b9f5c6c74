// Autocast's 16-bit copy of a parameter, kept from one forward to the next instead of cast by every product.
// PyTorch's autocast caches its casts of leaf weights within one region; here the copy outlives the region and
// the optimizer keeps it current (AdamW writes it in the pass that updates the parameter, see optim/adamw.ts),
// so a training step casts no weight. The copy belongs to the parameter (persistent, disposed with it). From the
// forward to its product's backward (the dX product reads it) it holds the bytes the cast held; after that it
// stays where the cast was freed, so a step whose memory peaks at the end of the backward or in the optimizer
// (gradients outweighing activations: small batches) peaks higher by the copies' size. autocast's
// `cache_enabled: false` keeps no copy.
import type { Tensor } from "../tensor/tensor.js";
import { float32, type DType } from "../tensor/dtype.js";
import { convertContiguous } from "../tensor/creation.js";
import { contiguousStrides } from "../tensor/shape.js";
import { native } from "../backend/native.js";
import { stackRowsAs } from "../ops/join.js";
import { attachLowpCopy, lowpCopyOf } from "./lowp_copy.js";
import { is_autocast_cache_enabled } from "./autocast_mode.js";

/** `weight` as a matrix product under autocast reads it, in `dtype`; the caller may dispose the result. */
export function autocastWeight(weight: Tensor, dtype: DType): Tensor {
  if (weight.dtype === dtype) return weight;
  const kept = lowpCopyOf(weight, dtype);
  // An alias, so that disposing the operand or releasing it after backward leaves the parameter's copy alone
  if (kept) return kept.alias();
  if (!keepsCopy(weight) || !is_autocast_cache_enabled()) return convertContiguous(weight, dtype);
  let copy = weight._lowp?.copy;
  if (copy && copy.dtype === dtype && !copy._disposed) {
    // Stale (the parameter was written in place): cast again into the same memory, which a graph may have captured
    copy.copy_(weight);
  } else if (native.cuda.isCurrentStreamCapturing()) {
    // Memory allocated during a capture is the graph's: a copy that outlives the capture must predate it (the
    // Trainer's eager first update makes them), so this step casts as without one.
    return convertContiguous(weight, dtype);
  } else {
    copy = convertContiguous(weight, dtype);
    copy._persistent = true;
  }
  attachLowpCopy(weight, copy);
  return copy.alias();
}

/**
 * `parts` (parameters of equal shapes but the first dimension) stacked by rows in `dtype`, as packed_linear's
 * product under autocast reads them, or null where their copies are not kept (the caller stacks them then); the
 * caller may dispose the result. Their copies are rows of one packed copy, which the optimizer's updates keep
 * current as they write each parameter's copy: a step stacks nothing. (In place of copies made by autocastWeight,
 * the first call makes the pack, outside CUDA graph captures as autocastWeight makes its copies.)
 */
export function autocastPackedWeights(parts: readonly Tensor[], dtype: DType): Tensor | null {
  if (!parts.every(keepsCopy) || !is_autocast_cache_enabled()) return null;
  const packed = packedCopyOf(parts, dtype);
  if (packed) {
    for (const p of parts) {
      // Stale rows (the parameter was written in place) are cast again where they are
      if (!lowpCopyOf(p, dtype)) attachLowpCopy(p, p._lowp!.copy.copy_(p));
    }
    return packed;
  }
  if (native.cuda.isCurrentStreamCapturing()) return null;
  const stacked = stackRowsAs(parts, dtype);
  let at = 0;
  for (const p of parts) {
    const rows = stacked._view(p.shape, contiguousStrides(p.shape), at);
    rows._persistent = true;
    attachLowpCopy(p, rows);
    at += p.numel();
  }
  return stacked;
}

/** The whole of the packed copy whose rows are `parts`' copies in order, or null where they are not one. */
function packedCopyOf(parts: readonly Tensor[], dtype: DType): Tensor | null {
  const storage = parts[0]!._lowp?.copy.storage;
  let at = 0;
  for (const p of parts) {
    const copy = p._lowp?.copy;
    if (!copy || copy._disposed || copy.storage !== storage || copy.dtype !== dtype || copy.offset !== at || !copy.is_contiguous()) return null;
    at += copy.numel();
  }
  if (!storage || at * dtype.itemsize !== storage.nbytes) return null;
  const shape = [parts.reduce((rows, p) => rows + p.shape[0]!, 0), ...parts[0]!.shape.slice(1)];
  return parts[0]!._lowp!.copy._view(shape, contiguousStrides(shape), 0);
}

/** A parameter on the GPU, whose copy an optimizer can keep current: a contiguous float32 leaf that requires grad. */
function keepsCopy(t: Tensor): boolean {
  return t.device.type === "cuda" && t.is_leaf && t.requires_grad && t.dtype === float32 && t.isExclusive();
}
