// Whether a linear layer's backward runs its two GEMMs side by side, the weight gradient's on the side stream
// (native/cuda/side_stream.cc). Where one of them leaves most SMs idle the pair can take the time of the longer
// one; where each fills the GPU alone they only contend. So by default ("auto") a pair of shapes is timed both ways
// (ops/timed_choice.ts, per layer shape and token-count class) and goes side by side where that was at least 5%
// faster. native.cuda.sideStreamGemms("on" / "off") or FINETUNE_CUDA_SIDE_STREAM=1 / 0 decide for every pair instead.
import { native } from "../backend/native.js";
import { TimedChoices, type TimedChoice } from "./timed_choice.js";

const choices = new TimedChoices(0.95);

/**
 * Whether the pair of GEMMs of layer shape `shape` over `rows` rows runs side by side; `trial(sideBySide)` runs the
 * pair once, into outputs nothing reads, for timing.
 */
export function sideBySide(shape: string, rows: number, trial: (sideBySide: boolean) => void): boolean {
  const mode = native.cuda.sideStreamGemms();
  if (mode !== "auto") return mode === "on";
  return choices.choose(shape, rows, trial);
}

/** The choices timed so far, "shape @ token class" (taken: side by side): for tests and benchmarks. */
export function sideStreamChoices(): Map<string, TimedChoice> {
  return choices.entries();
}
