// Choices between two ways of running the same GPU work where which is faster depends on the GPU (how many SMs,
// how much memory bandwidth) and on the work's size, so that no default fits every GPU: each kind of work is timed
// both ways at its first run outside a CUDA graph capture (CUDA events around a few runs each way, twice; the
// fastest counts) and takes the new way where that was faster by a margin, once per size class (log2 of the size,
// rounded). Work first met in a capture, where nothing runs, or inside withoutTiming takes the choice timed for the
// same kind at the nearest size class, or the old way.
import { native } from "../backend/native.js";
import { Event } from "../backend/cuda_streams.js";

/** Runs of each way per timing, and timings each way. */
const RUNS = 8;
const ROUNDS = 2;

/** A timed choice: whether the new way was taken, and each way's best milliseconds a run. */
export interface TimedChoice {
  taken: boolean;
  old_ms: number;
  new_ms: number;
}

/** Since the process started, over every kind: the choices timed and the host seconds their trials took. */
const totals = { timed: 0, seconds: 0 };

/** False inside withoutTiming. */
let timing = true;

/**
 * Runs `fn` timing no choice: work it meets takes the nearest size class's choice, as in a capture. For work that
 * runs once (an epoch's last, smaller batch), where the trials would cost more than the faster way could save.
 */
export function withoutTiming<T>(fn: () => T): T {
  const before = timing;
  timing = false;
  try {
    return fn();
  } finally {
    timing = before;
  }
}

/** The choices timed since the process started and the host seconds that took (waiting for the GPU included). */
export function timedChoiceStats(): { choices_timed: number; choice_s: number } {
  return { choices_timed: totals.timed, choice_s: totals.seconds };
}

export class TimedChoices {
  /** Per kind of work, per size class: the timed choice. */
  readonly #choices = new Map<string, Map<number, TimedChoice>>();

  /** `margin`: the new way is taken where its time is below `margin` times the old way's. */
  constructor(private readonly margin: number) {}

  /**
   * Whether work of kind `kind` and size `size` takes the new way; `trial(newWay)` runs it once either way, into
   * outputs nothing reads or that the real run then writes again.
   */
  choose(kind: string, size: number, trial: (newWay: boolean) => void): boolean {
    const sizeClass = Math.round(Math.log2(Math.max(size, 1)));
    let byClass = this.#choices.get(kind);
    if (byClass === undefined) this.#choices.set(kind, (byClass = new Map()));
    const known = byClass.get(sizeClass);
    if (known !== undefined) return known.taken;
    if (!timing || native.cuda.isCurrentStreamCapturing()) return nearest(byClass, sizeClass);
    const start = performance.now();
    // the first run of each way loads kernels and plans GEMMs
    trial(false);
    trial(true);
    let oldMs = Infinity, newMs = Infinity;
    for (let round = 0; round < ROUNDS; round++) {
      oldMs = Math.min(oldMs, milliseconds(() => trial(false)));
      newMs = Math.min(newMs, milliseconds(() => trial(true)));
    }
    const taken = newMs < this.margin * oldMs;
    byClass.set(sizeClass, { taken, old_ms: oldMs / RUNS, new_ms: newMs / RUNS });
    totals.timed++;
    totals.seconds += (performance.now() - start) / 1000;
    return taken;
  }

  /** The choices timed so far, "kind @ size class": for tests and benchmarks. */
  entries(): Map<string, TimedChoice> {
    const all = new Map<string, TimedChoice>();
    for (const [kind, byClass] of this.#choices) for (const [sizeClass, c] of byClass) all.set(`${kind} @ ${sizeClass}`, c);
    return all;
  }
}

/** The choice timed at the size class nearest `sizeClass` (the smaller one on a tie), or false for none. */
function nearest(byClass: Map<number, TimedChoice>, sizeClass: number): boolean {
  let best: number | null = null;
  for (const c of byClass.keys()) {
    const d = Math.abs(c - sizeClass), bd = best === null ? Infinity : Math.abs(best - sizeClass);
    if (d < bd || (d === bd && c < best!)) best = c;
  }
  return best === null ? false : byClass.get(best)!.taken;
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
