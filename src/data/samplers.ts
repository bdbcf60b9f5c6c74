// torch.utils.data samplers: which dataset indices a DataLoader visits, and in what order.
import { Generator, default_generator, permutation, randint } from "../ops/random.js";

/** Anything with a size: a Dataset (num_rows / length), an array, another sampler. */
export type Sized = { readonly length: number } | { readonly num_rows: number };

export function sizeOf(source: Sized): number {
  const n = "num_rows" in source ? source.num_rows : source.length;
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`expected a sized data source (length or num_rows), got ${n}`);
  return n;
}

export abstract class Sampler implements Iterable<number> {
  abstract [Symbol.iterator](): Iterator<number>;
  abstract get length(): number;
}

export class SequentialSampler extends Sampler {
  constructor(readonly data_source: Sized) {
    super();
  }

  *[Symbol.iterator](): Iterator<number> {
    const n = sizeOf(this.data_source);
    for (let i = 0; i < n; i++) yield i;
  }

  get length(): number {
    return sizeOf(this.data_source);
  }
}

export interface RandomSamplerOptions {
  replacement?: boolean;
  num_samples?: number | null;
  generator?: Generator | null;
}

/** A fresh permutation at every iteration, drawn from `generator` (the default generator when none). */
export class RandomSampler extends Sampler {
  readonly replacement: boolean;
  readonly generator: Generator | null;
  private readonly _num_samples: number | null;

  constructor(readonly data_source: Sized, options: RandomSamplerOptions = {}) {
    super();
    this.replacement = options.replacement ?? false;
    this.generator = options.generator ?? null;
    this._num_samples = options.num_samples ?? null;
    if (this._num_samples !== null && (!Number.isInteger(this._num_samples) || this._num_samples <= 0)) {
      throw new RangeError(`num_samples should be a positive integer value, but got num_samples=${this._num_samples}`);
    }
  }

  get num_samples(): number {
    return this._num_samples ?? sizeOf(this.data_source);
  }

  *[Symbol.iterator](): Iterator<number> {
    const n = sizeOf(this.data_source);
    const generator = this.generator ?? default_generator;
    if (this.replacement) {
      // Draws in blocks of 32, as torch does, so long runs do not hold one huge draw
      for (let left = this.num_samples; left > 0; left -= 32) {
        const draw = randint(0, n, [Math.min(32, left)], { generator });
        const values = Array.from(draw.data() as BigInt64Array, Number);
        draw.dispose();
        yield* values;
      }
      return;
    }
    // Whole permutations, then the head of one more, when num_samples exceeds the dataset
    for (let left = this.num_samples; left > 0; left -= n) {
      const perm = permutation(n, generator);
      yield* perm.slice(0, Math.min(n, left));
    }
  }

  get length(): number {
    return this.num_samples;
  }
}

/** Groups another sampler's indices into lists of batch_size (the last one shorter unless drop_last). */
export class BatchSampler implements Iterable<number[]> {
  constructor(
    readonly sampler: Iterable<number> & { readonly length: number },
    readonly batch_size: number,
    readonly drop_last = false,
  ) {
    if (!Number.isInteger(batch_size) || batch_size <= 0) {
      throw new RangeError(`batch_size should be a positive integer value, but got batch_size=${batch_size}`);
    }
  }

  *[Symbol.iterator](): Iterator<number[]> {
    let batch: number[] = [];
    for (const i of this.sampler) {
      batch.push(i);
      if (batch.length === this.batch_size) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0 && !this.drop_last) yield batch;
  }

  get length(): number {
    const n = this.sampler.length;
    return this.drop_last ? Math.floor(n / this.batch_size) : Math.ceil(n / this.batch_size);
  }
}
