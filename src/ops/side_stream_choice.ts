// Whether a linear layer's backward runs its two GEMMs side by side, the weight gradient's on the side stream
// (native/cuda/side_stream.cc). Where one of them leaves most SMs idle the pair can take the time of the longer
// one; where each fills the GPU alone they only contend. So by default ("auto") a pair of shapes is timed both ways
// at its first run outside a CUDA graph capture (CUDA events around a few runs each way, twice) and goes side by
// side where that was at least 5% faster. A pair first met in a capture, where nothing runs, takes the choice timed
// for the same layer shape at the nearest token count, or none. native.cuda.sideStreamGemms("on" / "off") or
// FINETUNE_CUDA_SIDE_STREAM=1 / 0 decide for every pair instead.
import { native } from "../backend/native.js";
import { Event } from "../backend/cuda_streams.js";

/** Runs of each way per timing, and timings each way (the fastest counts). */
const RUNS = 8;
const ROUNDS = 2;
/** How much faster side by side must be. */
const MARGIN = 0.95;

/** A timed choice: whether side by side paid, and each way's best milliseconds a pair. */
export interface SideStreamChoice {
  side_by_side: boolean;
  in_turn_ms: number;
  side_by_side_ms: number;
}

/** Per layer shape, per token-count class (log2 of the rows, rounded): the timed choice. */
const choices = new Map<string, Map<number, SideStreamChoice>>();

/**
 * Whether the pair of GEMMs of layer shape `shape` over `rows` rows runs side by side; `trial(sideBySide)` runs the
 * pair once, into outputs nothing reads, for timing.
 */
export function sideBySide(shape: string, rows: number, trial: (sideBySide: boolean) => void): boolean {
  const mode = native.cuda.sideStreamGemms();
  if (mode !== "auto") return mode === "on";
  const tokenClass = Math.round(Math.log2(Math.max(rows, 1)));
  let byClass = choices.get(shape);
  if (byClass === undefined) choices.set(shape, (byClass = new Map()));
  const known = byClass.get(tokenClass);
  if (known !== undefined) return known.side_by_side;
  if (native.cuda.isCurrentStreamCapturing()) return nearest(byClass, tokenClass);
  // the first run of each way loads kernels and plans the GEMMs
  trial(false);
  trial(true);
  let inTurn = Infinity, together = Infinity;
  for (let round = 0; round < ROUNDS; round++) {
    inTurn = Math.min(inTurn, milliseconds(() => trial(false)));
    together = Math.min(together, milliseconds(() => trial(true)));
  }
  const side_by_side = together < MARGIN * inTurn;
  byClass.set(tokenClass, { side_by_side, in_turn_ms: inTurn / RUNS, side_by_side_ms: together / RUNS });
  return side_by_side;
}

/** The choices timed so far, "shape @ class": for tests and benchmarks. */
export function sideStreamChoices(): Map<string, SideStreamChoice> {
  const all = new Map<string, SideStreamChoice>();
  for (const [shape, byClass] of choices) for (const [tokenClass, c] of byClass) all.set(`${shape} @ ${tokenClass}`, c);
  return all;
}

/** The choice timed at the token class nearest `tokenClass` (the smaller one on a tie), or false for none. */
function nearest(byClass: Map<number, SideStreamChoice>, tokenClass: number): boolean {
  let best: number | null = null;
  for (const c of byClass.keys()) {
    const d = Math.abs(c - tokenClass), bd = best === null ? Infinity : Math.abs(best - tokenClass);
    if (d < bd || (d === bd && c < best!)) best = c;
  }
  return best === null ? false : byClass.get(best)!.side_by_side;
}

/** The GPU's milliseconds for RUNS calls of `run`, waiting for them. */
function milliseconds(run: () => void): number {
  const start = new Event({ enable_timing: true }), end = new Event({ enable_timing: true });
  start.record();
  for (let i = 0; i < RUNS; i++) run();
  end.record();
  end.synchronize();
  return start.elapsed_time(end);
}
