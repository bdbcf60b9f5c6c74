// transformers.trainer_utils: what the Trainer returns (TrainOutput, PredictionOutput, EvalPrediction), its
// timing metrics, seeding, and finding checkpoints.
import fs from "node:fs";
import path from "node:path";
import type { Tensor } from "../tensor/tensor.js";
import { manual_seed } from "../ops/random.js";

export const PREFIX_CHECKPOINT_DIR = "checkpoint";
const CHECKPOINT_RE = new RegExp(`^${PREFIX_CHECKPOINT_DIR}-(\\d+)$`);

/**
 * What compute_metrics receives. Destructures like Python's tuple (`const [logits, labels] = eval_preds`)
 * and indexes like it too (`eval_preds[0]`).
 */
export class EvalPrediction implements Iterable<Tensor> {
  constructor(
    readonly predictions: Tensor,
    readonly label_ids: Tensor,
    readonly inputs: Tensor | null = null,
  ) {}

  get 0(): Tensor {
    return this.predictions;
  }

  get 1(): Tensor {
    return this.label_ids;
  }

  get length(): number {
    return this.inputs === null ? 2 : 3;
  }

  *[Symbol.iterator](): Iterator<Tensor> {
    yield this.predictions;
    yield this.label_ids;
    if (this.inputs !== null) yield this.inputs;
  }
}

export type Metrics = Record<string, number>;

export interface TrainOutput {
  global_step: number;
  training_loss: number;
  metrics: Metrics;
}

export interface PredictionOutput {
  predictions: Tensor;
  /** Where Python gives None (a dataset without labels) this is an empty [0] tensor, so the type stays a Tensor. */
  label_ids: Tensor;
  metrics: Metrics;
}

export interface EvalLoopOutput {
  predictions: Tensor | null;
  label_ids: Tensor | null;
  metrics: Metrics;
  num_samples: number;
}

/** Python's round(x, digits) for the metrics (half to even on the decimal value is close enough here). */
export function pyRound(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** `{split}_runtime`, `{split}_samples_per_second`, `{split}_steps_per_second`, from a start time in ms. */
export function speed_metrics(split: string, start_time_ms: number, num_samples?: number | null, num_steps?: number | null): Metrics {
  const runtime = (performance.now() - start_time_ms) / 1000;
  const result: Metrics = { [`${split}_runtime`]: pyRound(runtime, 4) };
  if (runtime === 0) return result;
  if (num_samples != null) result[`${split}_samples_per_second`] = pyRound(num_samples / runtime, 3);
  if (num_steps != null) result[`${split}_steps_per_second`] = pyRound(num_steps / runtime, 3);
  return result;
}

/** transformers.set_seed: seeds the global generator that model initialisation and dropout draw from. */
export function set_seed(seed: number): void {
  manual_seed(seed);
}

/** The checkpoint-N folder with the largest N in `folder`, or null. */
export function get_last_checkpoint(folder: string): string | null {
  const found = sortedCheckpointDirs(folder);
  return found.length === 0 ? null : found[found.length - 1]!;
}

/** checkpoint-N folders of `folder`, by increasing N. */
export function sortedCheckpointDirs(folder: string): string[] {
  if (!fs.existsSync(folder)) return [];
  return fs
    .readdirSync(folder, { withFileTypes: true })
    .filter((e) => e.isDirectory() && CHECKPOINT_RE.test(e.name))
    .map((e) => [Number(CHECKPOINT_RE.exec(e.name)![1]), path.join(folder, e.name)] as const)
    .sort((a, b) => a[0] - b[0])
    .map(([, p]) => p);
}
