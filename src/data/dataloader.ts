// torch.utils.data.DataLoader (single process): batches of indices from a sampler, the rows fetched from the
// dataset (a datasets Dataset reads just those rows from its Arrow columns), then collate_fn.
import { Tensor } from "../tensor/tensor.js";
import { tensor as toTensor } from "../tensor/creation.js";
import { stack } from "../ops/join.js";
import type { Generator as TorchGenerator } from "../ops/random.js";
import { BatchSampler, RandomSampler, SequentialSampler, sizeOf, type Sized } from "./samplers.js";
import type { Example } from "./features.js";

/** A Dataset-like source: `select(indices)` + `slice()` for column stores, or `at(i)`, or a plain array. */
export type DataSource =
  | (Sized & { select(indices: Iterable<number>): { slice(): Record<string, unknown[]> }; column_names: string[] })
  | (Sized & { at(i: number): unknown })
  | readonly unknown[];

export type IndexSource = Iterable<number> & { readonly length: number };
export type BatchIndexSource = Iterable<number[]> & { readonly length: number };

export interface DataLoaderOptions<B> {
  batch_size?: number | null;
  shuffle?: boolean;
  sampler?: IndexSource | null;
  batch_sampler?: BatchIndexSource | null;
  num_workers?: number;
  collate_fn?: ((examples: any) => B) | null;
  pin_memory?: boolean;
  drop_last?: boolean;
  generator?: TorchGenerator | null;
}

function hasColumns(source: DataSource): source is Extract<DataSource, { select: unknown }> {
  return typeof (source as { select?: unknown }).select === "function" && typeof (source as { slice?: unknown }).slice === "function";
}

/** The examples at `indices`, as a list of row objects. */
export function fetchRows(source: DataSource, indices: number[]): unknown[] {
  if (hasColumns(source)) {
    const columns = source.select(indices).slice();
    const names = Object.keys(columns);
    return indices.map((_, k) => Object.fromEntries(names.map((name) => [name, pickRow(columns[name], k)])));
  }
  if (Array.isArray(source)) return indices.map((i) => source[i]);
  return indices.map((i) => (source as { at(i: number): unknown }).at(i));
}

function pickRow(column: unknown, k: number): unknown {
  // A torch-formatted column of equal-length rows arrives as one tensor: take its k-th row
  return column instanceof Tensor ? column.select(0, k).clone() : (column as unknown[])[k];
}

/** torch's default_collate for the common cases: tensors stacked, numbers tensorised, objects collated per key. */
export function default_collate(batch: unknown[]): any {
  const first = batch[0];
  if (first instanceof Tensor) return stack(batch as Tensor[]);
  if (typeof first === "number" || typeof first === "boolean") return toTensor(batch as never);
  if (typeof first === "string" || first === null || first === undefined) return batch;
  if (Array.isArray(first) || ArrayBuffer.isView(first)) {
    const plain = batch.map((v) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>, Number) : v));
    try {
      return toTensor(plain as never);
    } catch (err) {
      throw new Error(`default_collate: ${(err as Error).message}; pad the examples with a collate_fn such as DataCollatorWithPadding`);
    }
  }
  if (typeof first === "object") {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(first as Example)) out[key] = default_collate(batch.map((ex) => (ex as Example)[key]));
    return out;
  }
  throw new TypeError(`default_collate: batch must contain tensors, numbers, strings, arrays or objects; found ${typeof first}`);
}

export class DataLoader<B = any> implements Iterable<B> {
  readonly dataset: DataSource;
  readonly batch_size: number | null;
  readonly drop_last: boolean;
  readonly sampler: IndexSource;
  readonly batch_sampler: BatchIndexSource | null;
  readonly collate_fn: (examples: any) => B;
  readonly generator: TorchGenerator | null;

  constructor(dataset: DataSource, options: DataLoaderOptions<B> = {}) {
    this.dataset = dataset;
    const shuffle = options.shuffle ?? false;
    let batch_size = options.batch_size === undefined ? 1 : options.batch_size;
    let drop_last = options.drop_last ?? false;
    this.generator = options.generator ?? null;
    if ((options.num_workers ?? 0) !== 0) {
      throw new Error("DataLoader: num_workers > 0 is not supported (batches are read in the main thread); use num_workers: 0");
    }
    if (options.sampler && shuffle) throw new Error("sampler option is mutually exclusive with shuffle");
    if (options.batch_sampler) {
      if (batch_size !== 1 || shuffle || options.sampler || drop_last) {
        throw new Error("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last");
      }
      batch_size = null;
      drop_last = false;
    } else if (batch_size === null && drop_last) {
      throw new Error("batch_size=null option disables auto-batching and is mutually exclusive with drop_last");
    }
    this.sampler = options.sampler ?? (shuffle ? new RandomSampler(dataset as Sized, { generator: this.generator }) : new SequentialSampler(dataset as Sized));
    this.batch_size = batch_size;
    this.drop_last = drop_last;
    this.batch_sampler = options.batch_sampler ?? (batch_size === null ? null : new BatchSampler(this.sampler, batch_size, drop_last));
    this.collate_fn = options.collate_fn ?? (default_collate as (examples: any) => B);
    sizeOf(dataset as Sized);
  }

  /** len(dataloader): the number of batches. */
  get length(): number {
    return this.batch_sampler ? this.batch_sampler.length : this.sampler.length;
  }

  /** The index lists of one pass (a fresh shuffle for a random sampler); the Trainer uses it to skip batches cheaply. */
  *index_batches(): Generator<number[]> {
    if (this.batch_sampler) yield* this.batch_sampler;
    else for (const i of this.sampler) yield [i];
  }

  /** The batch for a list of indices. */
  fetch(indices: number[]): B {
    const rows = fetchRows(this.dataset, indices);
    return this.batch_sampler ? this.collate_fn(rows) : this.collate_fn(rows[0]);
  }

  *[Symbol.iterator](): Iterator<B> {
    for (const indices of this.index_batches()) yield this.fetch(indices);
  }
}
