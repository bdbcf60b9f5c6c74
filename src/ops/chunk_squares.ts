// The clipping's sums of squares of a gradient, summed where the gradient is made: a linear layer's backward with
// the side stream on sums its weight gradient's squares there, beside the main stream's work, while the gradient
// is fresh in the GPU's cache, and clip_grad_norm_ then copies those sums instead of reading the gradient again at
// the end of the backward. Sums per 4096-element chunk, as the clipping's kernel sums a tensor's: the same bits.
import { Storage } from "../backend/storage.js";
import { native } from "../backend/native.js";
import type { Tensor } from "../tensor/tensor.js";

/** Elements per partial sum: the multi-tensor kernels' chunk (kChunk / FT_CHUNK in native/cuda/kernels). */
const CHUNK = 4096;

/** Memory for the sums of contiguous float32 CUDA tensor `t`, kept with its storage (taken before a side stream's
 * fork, so that the side stream only writes it); the sums are valid once sumChunkSquares ran. */
export function reserveChunkSquares(t: Tensor): void {
  const memory = Storage.allocate(Math.ceil(t.numel() / CHUNK) * 8, t.device);
  t.storage.keepDerived("chunk squares", { memory, begin: t.offset, end: t.offset + t.numel(), unit: CHUNK, version: -1 });
}

/** The memory reserveChunkSquares took for `t`'s sums, if it took any (the side stream's work writes it). */
export function chunkSquaresMemory(t: Tensor): Storage[] {
  const sums = t.storage.derived("chunk squares");
  return sums === null ? [] : [sums.memory];
}

/** Queues the sums of `t`'s chunks on the current stream, into reserveChunkSquares' memory. */
export function sumChunkSquares(t: Tensor): void {
  const sums = t.storage.derived("chunk squares");
  if (sums === null || sums.begin !== t.offset || sums.end !== t.offset + t.numel()) {
    throw new Error("internal error: sumChunkSquares without reserveChunkSquares");
  }
  native.cuda.sumSquaresChunks(t.buffer, t.offset, t.numel(), sums.memory.buffer, 0);
  sums.version = t.storage.version;
}

/**
 * The sums of `g`'s chunks (a contiguous float32 gradient) where its storage has them current and g's chunks are
 * chunks of the summed range (a view of a packed gradient at a multiple of 4096 elements from its start): the
 * buffer and the index of g's first sum; else null.
 */
export function chunkSquaresOf(g: Tensor): { buffer: ArrayBuffer; offset: number } | null {
  const sums = g.storage.derived("chunk squares");
  if (sums === null || sums.version !== g.storage.version) return null;
  const from = g.offset - sums.begin, end = g.offset + g.numel();
  if (from < 0 || from % CHUNK !== 0 || end > sums.end || (g.numel() % CHUNK !== 0 && end !== sums.end)) return null;
  return { buffer: sums.memory.buffer, offset: from / CHUNK };
}
