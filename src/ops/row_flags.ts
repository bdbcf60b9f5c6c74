// The rows of an embedding table's gradient that its backward gave values (a byte a row, 0 where the row is all
// zeros), kept with the gradient's storage while it is unwritten: the clipping then reads only chunks holding a
// flagged row, and AdamW's deferred rows (optim/adamw.ts) take the flagged rows without reading the gradient to
// find them. A batch touches a few hundred of bert-base's 30,522 word rows: the two reads of its 94 MB gradient
// become a few MB. Both give the bits of reading everything: the other rows are zeros.
import { Storage } from "../backend/storage.js";
import type { Tensor } from "../tensor/tensor.js";

/** Zeroed flags for a [rows, D] gradient on `device`, for the backward's kernel to set. */
export function rowFlagsMemory(rows: number, device: Tensor["device"]): Storage {
  return Storage.allocate(Math.max(rows, 1), device, true);
}

/** Keeps `flags` (rowFlagsMemory's, set) with `grad` (a contiguous [rows, D] gradient) as it is now. */
export function keepRowFlags(grad: Tensor, flags: Storage): void {
  grad.storage.keepDerived("row flags", {
    memory: flags, begin: grad.offset, end: grad.offset + grad.numel(), unit: grad.shape[1]!, version: grad.storage.version,
  });
}

/** The flags of gradient `g` rows of `rowLength` values, where they are kept and still true, else null. */
export function rowFlagsOf(g: Tensor, rowLength: number): ArrayBuffer | null {
  const flags = g.storage.derived("row flags");
  if (flags === null || flags.version !== g.storage.version || flags.unit !== rowLength) return null;
  return flags.begin === g.offset && flags.end === g.offset + g.numel() ? flags.memory.buffer : null;
}

/** Runs `scale`, an in-place scaling of `grads` (zeros stay zeros), keeping their flags true across it. */
export function scaleKeepingRowFlags(grads: readonly Tensor[], scale: () => void): void {
  const kept = grads.filter((g) => g.storage.derived("row flags")?.version === g.storage.version);
  scale();
  for (const g of kept) g.storage.derived("row flags")!.version = g.storage.version;
}
