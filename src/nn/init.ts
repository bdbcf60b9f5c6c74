// torch.nn.init: in-place initialisers (no autograd), drawing from the default generator.
import type { Tensor } from "../tensor/tensor.js";
import { no_grad } from "../autograd/grad_mode.js";
import { normal_ as drawNormal, uniform_ as drawUniform } from "../ops/random.js";

let skipping = 0;

/**
 * transformers' no_init_weights: runs fn with every initialiser here a no-op, for models whose weights are
 * about to be loaded from a checkpoint (drawing 110M random numbers first would be wasted).
 */
export function no_init_weights<T>(fn: () => T): T {
  skipping++;
  try {
    return fn();
  } finally {
    skipping--;
  }
}

function initialise<T extends Tensor>(t: T, fill: (t: T) => void): T {
  if (skipping === 0) no_grad(() => fill(t));
  return t;
}

export function normal_<T extends Tensor>(t: T, mean = 0, std = 1): T {
  return initialise(t, (x) => drawNormal(x, mean, std));
}

export function uniform_<T extends Tensor>(t: T, a = 0, b = 1): T {
  return initialise(t, (x) => drawUniform(x, a, b));
}

export function zeros_<T extends Tensor>(t: T): T {
  return initialise(t, (x) => x.zero_());
}

export function ones_<T extends Tensor>(t: T): T {
  return initialise(t, (x) => x.fill_(1));
}

export function constant_<T extends Tensor>(t: T, value: number): T {
  return initialise(t, (x) => x.fill_(value));
}

function fans(t: Tensor): [number, number] {
  if (t.ndim < 2) throw new Error("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions");
  const receptive = t.shape.slice(2).reduce((a, b) => a * b, 1);
  return [t.shape[1] * receptive, t.shape[0] * receptive];
}

/** kaiming_uniform_ with leaky_relu gain, as nn.Linear uses with a = sqrt(5). */
export function kaiming_uniform_<T extends Tensor>(t: T, a = 0): T {
  const [fanIn] = fans(t);
  const gain = Math.sqrt(2 / (1 + a * a));
  const bound = gain * Math.sqrt(3 / fanIn);
  return uniform_(t, -bound, bound);
}

export function xavier_uniform_<T extends Tensor>(t: T, gain = 1): T {
  const [fanIn, fanOut] = fans(t);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(t, -bound, bound);
}

export function _calculate_fan_in_and_fan_out(t: Tensor): [number, number] {
  return fans(t);
}
