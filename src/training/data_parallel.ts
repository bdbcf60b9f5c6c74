// The Trainer over several processes (finetune launch), as transformers' Trainer under accelerate launch: each
// process trains on its share of every epoch's batches (accelerate's sharding, accelerate/data_loader.ts), the
// gradients are averaged before clipping (distributed/gradients.ts), logged losses are the processes' mean, and
// evaluation gathers every process's predictions, each sample once.
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import { full, tensor } from "../tensor/creation.js";
import type { Generator as TorchGenerator } from "../ops/random.js";
import type { DataLoader } from "../data/dataloader.js";
import { shardBatches, type Shard } from "../accelerate/data_loader.js";
import { gatherAcross } from "../accelerate/operations.js";
import { all_reduce, broadcast_object_list } from "../distributed/process_group.js";

/** Batches a process runs an epoch of `batches` shared by `num_processes`. */
export function shardLength(batches: number, drop_last: boolean, num_processes: number): number {
  return drop_last ? Math.floor(batches / num_processes) : Math.ceil(batches / num_processes);
}

/**
 * This process's index batches of one epoch: the whole order drawn from `generator` as process 0 draws it (its
 * state sent to the others first), then this process's share.
 */
export function epochBatches(loader: DataLoader<unknown>, generator: TorchGenerator, shard: Shard): IterableIterator<number[]> {
  const state = [generator.get_state()];
  broadcast_object_list(state, 0);
  generator.set_state(state[0] as { seed: number; offset: number });
  return shardBatches([...loader.index_batches()], loader.batch_size!, loader.drop_last, shard).values();
}

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
  const parts = [logits, labels, losses].map((t) => {
    if (t === null) return null;
    const gathered = gatherAcross(t);
    t.dispose();
    if (!last || remainder <= 0 || gathered.shape[0]! <= remainder) return gathered;
    const kept = gathered.narrow(0, 0, remainder).clone();
    gathered.dispose();
    return kept;
  });
  const samples = parts.find((p) => p !== null)?.shape[0] ?? 0;
  return { logits: parts[0]!, labels: parts[1]!, losses: parts[2]!, samples };
}
