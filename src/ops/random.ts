// Random numbers: a Generator is a seed plus a counter; every draw takes the next block of counter values, and
// the native kernels turn (seed, counter) into numbers, so results do not depend on threads or machines.
import { Tensor } from "../tensor/tensor.js";
import { float32, int64 } from "../tensor/dtype.js";
import { backendFor } from "../backend/kernels.js";
import { empty, type FactoryOptions, fromFlat } from "../tensor/creation.js";
import { copy_ } from "./convert.js";
import { toDType } from "../tensor/dtype.js";

/** PyTorch's default seed of the default generator. */
const DEFAULT_SEED = 67280421310721;

export class Generator {
  private seed = DEFAULT_SEED;
  private offset = 0;

  manual_seed(seed: number): this {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`manual_seed: seed must be an integer, got ${seed}`);
    this.seed = seed < 0 ? seed + 2 ** 53 : seed;
    this.offset = 0;
    return this;
  }

  initial_seed(): number {
    return this.seed;
  }

  get_state(): { seed: number; offset: number } {
    return { seed: this.seed, offset: this.offset };
  }

  set_state(state: { seed: number; offset: number }): this {
    this.seed = state.seed;
    this.offset = state.offset;
    return this;
  }

  /** Reserves `n` counter values and returns the first. */
  draw(n: number): { seed: number; offset: number } {
    const at = { seed: this.seed, offset: this.offset };
    this.offset += n;
    return at;
  }
}

export const default_generator = new Generator();

export function manual_seed(seed: number): Generator {
  return default_generator.manual_seed(seed);
}

export function initial_seed(): number {
  return default_generator.initial_seed();
}

/** Fills a float tensor in place from a float32 draw. */
function fillFrom(t: Tensor, draw: (n: number, out: Tensor) => void): Tensor {
  const n = t.numel();
  const tmp = Tensor.empty(t.shape, float32, t.device);
  draw(n, tmp);
  copy_(t, tmp);
  tmp.dispose();
  return t;
}

export function normal_<T extends Tensor>(t: T, mean = 0, std = 1, generator = default_generator): T {
  fillFrom(t, (n, out) => {
    const { seed, offset } = generator.draw(n);
    backendFor(out).normal(n, seed, offset, mean, std, out.buffer, 0);
  });
  return t;
}

export function uniform_<T extends Tensor>(t: T, from = 0, to = 1, generator = default_generator): T {
  fillFrom(t, (n, out) => {
    const { seed, offset } = generator.draw(n);
    backendFor(out).uniform(n, seed, offset, from, to, out.buffer, 0);
  });
  return t;
}

export interface RandomOptions extends FactoryOptions {
  generator?: Generator;
}

export function rand(shape: readonly number[], options: RandomOptions = {}): Tensor {
  const t = empty(shape, { ...options, requires_grad: false });
  uniform_(t, 0, 1, options.generator);
  return options.requires_grad ? t.requires_grad_(true) : t;
}

export function randn(shape: readonly number[], options: RandomOptions = {}): Tensor {
  const t = empty(shape, { ...options, requires_grad: false });
  normal_(t, 0, 1, options.generator);
  return options.requires_grad ? t.requires_grad_(true) : t;
}

/** Integers uniformly in [low, high). */
export function randint(low: number, high: number, shape: readonly number[], options: RandomOptions = {}): Tensor {
  if (!(high > low)) throw new RangeError(`randint: expected low < high, got low=${low}, high=${high}`);
  const u = rand(shape, { generator: options.generator, device: options.device });
  const values = Array.from(u.data() as Float32Array, (v) => Math.min(high - 1, low + Math.floor(v * (high - low))));
  u.dispose();
  return fromFlat(values, shape, toDType(options.dtype ?? int64), options);
}

/** A random permutation of 0..n-1 (Fisher–Yates on the generator's numbers). */
export function randperm(n: number, options: RandomOptions = {}): Tensor {
  return fromFlat(permutation(n, options.generator ?? default_generator), [n], toDType(options.dtype ?? int64), options);
}

/** The permutation randperm draws, as a JS array (for samplers). */
export function permutation(n: number, generator: Generator = default_generator): number[] {
  const u = Tensor.empty([Math.max(n, 1)], float32);
  const { seed, offset } = generator.draw(n);
  backendFor(u).uniform(n, seed, offset, 0, 1, u.buffer, 0);
  const r = new Float32Array(u.buffer, 0, n).slice();
  u.dispose();
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(r[i] * (i + 1)));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return perm;
}

