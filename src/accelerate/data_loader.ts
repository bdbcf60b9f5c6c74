// accelerate's prepared DataLoader: batches on the accelerator's device and, with several processes, each process
// its share of the batches. As accelerate's BatchSamplerShard (split_batches false, even_batches true): batch i
// goes to process i % num_processes; where the last round is short, it is completed from the epoch's first samples,
// so that every process runs the same number of full batches, and gather_for_metrics drops those repeats again
// (the state's remainder). A shuffling sampler draws the same order on every process: its generator's state is
// process 0's at the start of each epoch, as accelerate synchronises it.
import { Device } from "../tensor/device.js";
import { DataLoader } from "../data/dataloader.js";
import { RandomSampler } from "../data/samplers.js";
import { default_generator } from "../ops/random.js";
import { broadcast_object_list } from "../distributed/process_group.js";
import { mapTensors } from "./operations.js";

/** accelerate's GradientState: whether this step syncs gradients, and what gathering for metrics needs. */
export interface GradientState {
  /** false on the steps accumulate() accumulates over: the optimizer and a prepared scheduler wait, and the
   * gradients stay this process's own */
  sync_gradients: boolean;
  /** whether the batch a dataloader yielded last was its last one */
  end_of_dataloader: boolean;
  /** samples of that last round over all processes that are not repeats (0: no repeats) */
  remainder: number;
}

/** A GradientState before any step: syncing, no dataloader seen. */
export function newGradientState(): GradientState {
  return { sync_gradients: true, end_of_dataloader: false, remainder: -1 };
}

/** This process's place among the processes that share a dataloader's batches. */
export interface Shard {
  num_processes: number;
  process_index: number;
}

/** `data` with every tensor (in arrays and plain objects too) moved to `device`; the host copies are released. */
export function send_to_device<T>(data: T, device: Device): T {
  return mapTensors(data, (t) => {
    if (t.device.equals(device)) return t;
    const moved = t.to(device);
    t.dispose();
    return moved;
  });
}

/** Batches a process runs an epoch of `batches` shared by `num_processes` (DataLoaderShard's length). */
export function shardLength(batches: number, drop_last: boolean, num_processes: number): number {
  return drop_last ? Math.floor(batches / num_processes) : Math.ceil(batches / num_processes);
}

/**
 * Process `shard.process_index`'s index batches of one epoch of `loader`: a shuffling sampler's order drawn as
 * process 0 draws it (its generator's state sent to the others first, as accelerate synchronises it), then this
 * process's share (shardBatches).
 */
export function processBatches(loader: DataLoader<unknown>, shard: Shard): number[][] {
  if (shard.num_processes === 1) return [...loader.index_batches()];
  if (loader.sampler instanceof RandomSampler) {
    const generator = loader.sampler.generator ?? default_generator;
    const state = [generator.get_state()];
    broadcast_object_list(state, 0);
    generator.set_state(state[0] as { seed: number; offset: number });
  }
  return shardBatches([...loader.index_batches()], loader.batch_size!, loader.drop_last, shard);
}

/** The samples of `loader`'s last round over `num_processes` that are not repeats (0: the rounds are whole). */
export function lastRoundRemainder(loader: DataLoader<unknown>, num_processes: number): number {
  return loader.sampler.length % ((loader.batch_size ?? 1) * num_processes);
}

/**
 * Process `shard.process_index`'s batches of an epoch whose batches are `all` (each `batch_size` long but maybe the
 * last): every num_processes-th full batch, then, unless `drop_last`, the last round completed from the epoch's
 * first samples so that each process has as many full batches.
 */
export function shardBatches(all: number[][], batch_size: number, drop_last: boolean, shard: Shard): number[][] {
  const { num_processes: n, process_index: rank } = shard;
  const mine: number[][] = [];
  // the rounds of full batches: a short last batch ends a round that is completed below
  let fullRounds = Math.floor(all.length / n);
  if (fullRounds * n === all.length && all.length > 0 && all.at(-1)!.length < batch_size) fullRounds--;
  for (let r = 0; r < fullRounds; r++) mine.push(all[r * n + rank]!);
  if (drop_last || fullRounds * n === all.length) return mine;
  // the last round: its full batches as they are, the short one and the missing ones from the first samples
  let first = all.slice(0, n).flat();
  while (first.length < n * batch_size) first = first.concat(first);
  let taken = 0;
  for (let idx = fullRounds * n; idx < (fullRounds + 1) * n; idx++) {
    const batch = idx < all.length ? all[idx]! : [];
    const completed = batch.length === batch_size ? batch : batch.concat(first.slice(taken, (taken += batch_size - batch.length)));
    if (idx % n === rank) mine.push(completed);
  }
  return mine;
}

/** A DataLoader whose batches arrive on the accelerator's device: with several processes, this process's share. */
export class DataLoaderShard<B = any> implements Iterable<B> {
  constructor(
    readonly base_dataloader: DataLoader<B>,
    readonly device: Device | null,
    private readonly shard: Shard = { num_processes: 1, process_index: 0 },
    private readonly state: GradientState = newGradientState(),
  ) {
    if (shard.num_processes > 1 && base_dataloader.batch_size === null) {
      throw new Error("Accelerator.prepare: a DataLoader without batch_size cannot be shared between processes; give it a batch_size");
    }
  }

  /** Batches this process runs an epoch. */
  get length(): number {
    return shardLength(this.base_dataloader.length, this.base_dataloader.drop_last, this.shard.num_processes);
  }

  get batch_size(): number | null {
    return this.base_dataloader.batch_size;
  }

  /** The batch size over all processes. */
  get total_batch_size(): number {
    return (this.base_dataloader.batch_size ?? 1) * this.shard.num_processes;
  }

  get total_dataset_length(): number {
    return this.base_dataloader.sampler.length;
  }

  get dataset(): DataLoader<B>["dataset"] {
    return this.base_dataloader.dataset;
  }

  *[Symbol.iterator](): Iterator<B> {
    const batches = processBatches(this.base_dataloader, this.shard);
    this.state.end_of_dataloader = false;
    this.state.remainder = lastRoundRemainder(this.base_dataloader, this.shard.num_processes);
    for (let i = 0; i < batches.length; i++) {
      const batch = this.base_dataloader.fetch(batches[i]!);
      this.state.end_of_dataloader = i === batches.length - 1;
      yield this.device ? send_to_device(batch, this.device) : batch;
    }
  }
}
