// The Trainer over several processes (finetune launch), as transformers' Trainer under accelerate launch: each
// process trains on its share of every epoch's batches (accelerate's sharding, accelerate/data_loader.ts), the
// gradients are averaged before clipping (distributed/gradients.ts), logged losses are the processes' mean (here),
// and evaluation gathers every process's predictions, each sample once (here).
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import { full, tensor } from "../tensor/creation.js";
import { gatherForMetrics } from "../accelerate/operations.js";
import { all_reduce } from "../distributed/process_group.js";

/** The mean over the processes of a number each holds. */
export function meanAcross(value: number, num_processes: number): number {
  const t = tensor([value], { dtype: float32 });
  all_reduce(t);
  const mean = t.item() / num_processes;
  t.dispose();
  return mean;
}

/** What one evaluation batch gives the metrics, over every process. */
export interface GatheredBatch {
  logits: Tensor | null;
  labels: Tensor | null;
  /** each sample's loss (its batch's mean), or null without labels */
  losses: Tensor | null;
  samples: number;
}

/**
 * Every process's logits, labels and per-sample losses of its current batch, in process order; at the epoch's
 * last round less the samples repeated to fill it (`remainder`: the samples of that round that are not repeats).
 * Takes ownership of the inputs.
 */
export function gatherEvalBatch(logits: Tensor | null, labels: Tensor | null, loss: number | null, batch_size: number, last: boolean, remainder: number): GatheredBatch {
  const losses = loss === null ? null : full([batch_size], loss, { dtype: float32, device: logits?.device ?? labels?.device });
  const local = [logits, labels, losses];
  const parts = gatherForMetrics(local, last, remainder);
  for (const t of local) t?.dispose();
  const samples = parts.find((p) => p !== null)?.shape[0] ?? 0;
  return { logits: parts[0]!, labels: parts[1]!, losses: parts[2]!, samples };
}
