// The side stream's fork and join (native/cuda/side_stream.cc), and which tensors side work may still be writing.
// A linear layer's backward puts its weight gradient's GEMM on the side stream and defers the join: the GEMM then
// also runs beside what the main stream does next (the attention's backward, a layer norm's), until the next fork
// makes the main stream wait for it. Meanwhile the memory of what the side's work uses is held when given back, not
// reused (the addon's allocator), so nothing the side still reads is overwritten; and main-stream work that reads
// what the side wrote must wait for it first: the autograd engine asks (awaitSideWrites) before it reads a gradient
// other than by making it a leaf's .grad, and joins at the end of each backward. FINETUNE_CUDA_DEFER_SIDE_JOIN=0
// (or deferSideJoins(false)) joins right after each pair instead.
import { native } from "./native.js";
import type { Storage } from "./storage.js";

/** What side work wrote since the last join, where that join was deferred. */
const written = new Set<Storage>();

let deferring = !["0", "false"].includes(process.env["FINETUNE_CUDA_DEFER_SIDE_JOIN"] ?? "");

/** Whether joins of side work that wrote a tensor are deferred; `enabled` sets it from now on. */
export function deferSideJoins(enabled?: boolean): boolean {
  if (enabled !== undefined) deferring = enabled;
  return deferring;
}

/**
 * The side stream waits for the main stream's work (a deferred join is made first) and takes the work queued next.
 * `uses`: every tensor the side's work will read or write, whose memory is then held when given back before the
 * join (the rest is reused at once); without it all memory given back is held.
 */
export function forkSideStream(uses?: readonly { buffer: ArrayBuffer }[]): void {
  native.cuda.sideStreamFork(uses?.map((t) => t.buffer));
  written.clear();
}

/** The main stream takes the work queued next; the side stream's runs on beside it. */
export function toMainStream(): void {
  native.cuda.sideStreamMain();
}

/**
 * Ends a fork: the main stream waits for the side's work now, or, given `output` (the one tensor the side's work
 * wrote for the main stream to read) and with deferral on, when the next fork comes or something reads `output`.
 */
export function joinSideStream(output: { storage: Storage } | null = null): void {
  if (output === null || !deferring) return native.cuda.sideStreamJoin();
  native.cuda.sideStreamJoin(true);
  written.add(output.storage);
}

/** Makes the main stream wait for the side's work if that work wrote `t` and is not joined yet. */
export function awaitSideWrites(t: { storage: Storage }): void {
  if (written.has(t.storage)) joinDeferredSideWork();
}

/** Makes a deferred join, if any (a capture's end made one already). */
export function joinDeferredSideWork(): void {
  if (written.size === 0) return;
  written.clear();
  if (native.cuda.sideStreamJoinDeferred()) native.cuda.sideStreamJoin();
}
