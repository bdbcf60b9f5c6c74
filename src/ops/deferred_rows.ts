// Weights whose rows an optimizer brings up to date lazily (AdamW's deferred zero-gradient rows, optim/adamw.ts):
// an op that reads such a weight by row ids (embedding) has the rows it reads made current first, so that a
// forward sees the weights of the dense update.
import type { Tensor } from "../tensor/tensor.js";

/** Makes the rows of the weight named by `ids` (int64, contiguous) current. */
export type CatchUpRows = (ids: Tensor) => void;

const pending = new WeakMap<Tensor, CatchUpRows>();

/** Registers (or with null removes) how `weight`'s rows are made current. */
export function setDeferredRows(weight: Tensor, catchUp: CatchUpRows | null): void {
  if (catchUp === null) pending.delete(weight);
  else pending.set(weight, catchUp);
}

/** Makes `weight`'s rows named by `ids` current, where an optimizer defers them. */
export function catchUpRows(weight: Tensor, ids: Tensor): void {
  pending.get(weight)?.(ids);
}
