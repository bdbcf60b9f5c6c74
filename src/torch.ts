// The `torch` namespace: PyTorch's names for the engine's pieces.
import "./tensor/tensor.js";
import { Tensor } from "./tensor/tensor.js";
import * as dtypes from "./tensor/dtype.js";
import { Device } from "./tensor/device.js";
import * as creation from "./tensor/creation.js";
import * as ops from "./ops/index.js";
import { no_grad, enable_grad, is_grad_enabled, set_grad_enabled } from "./autograd/grad_mode.js";
import { native } from "./backend/native.js";
import { backends, cuda } from "./backend/cuda.js";
import * as nn from "./nn/index.js";
import { AdamW, SGD, Optimizer, LambdaLR } from "./optim/index.js";
import * as amp from "./amp/index.js";
import * as distributed from "./distributed/process_group.js";

function max(t: Tensor): Tensor;
function max(t: Tensor, dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
function max(t: Tensor, dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
  return dim === undefined ? t.max() : t.max(dim, keepdim);
}

export const torch = {
  Tensor,
  Generator: ops.Generator,
  float32: dtypes.float32,
  float: dtypes.float32,
  float16: dtypes.float16,
  half: dtypes.float16,
  bfloat16: dtypes.bfloat16,
  int64: dtypes.int64,
  long: dtypes.int64,
  int32: dtypes.int32,
  int: dtypes.int32,
  bool: dtypes.bool,
  device: (spec: string | Device, index?: number) => new Device(spec, index),
  cuda,
  backends,
  distributed,
  nn,
  optim: { AdamW, SGD, Optimizer, lr_scheduler: { LambdaLR } },

  tensor: creation.tensor,
  as_tensor: creation.tensor,
  zeros: creation.zeros,
  ones: creation.ones,
  full: creation.full,
  empty: creation.empty,
  arange: creation.arange,
  zeros_like: creation.zeros_like,
  ones_like: creation.ones_like,
  full_like: creation.full_like,
  empty_like: creation.empty_like,
  rand: ops.rand,
  randn: ops.randn,
  randint: ops.randint,
  randperm: ops.randperm,
  manual_seed: ops.manual_seed,
  initial_seed: ops.initial_seed,
  default_generator: ops.default_generator,

  no_grad,
  enable_grad,
  is_grad_enabled,
  set_grad_enabled,
  amp: { autocast: amp.autocast, GradScaler: amp.GradScaler },
  autocast: amp.autocast,
  is_autocast_enabled: amp.is_autocast_enabled,
  is_autocast_cache_enabled: amp.is_autocast_cache_enabled,
  get_autocast_dtype: amp.get_autocast_dtype,

  matmul: ops.matmul,
  mm: ops.mm,
  bmm: ops.bmm,
  add: ops.add,
  sub: ops.sub,
  mul: ops.mul,
  div: ops.div,
  pow: ops.pow,
  neg: ops.neg,
  exp: ops.exp,
  log: ops.log,
  sqrt: ops.sqrt,
  tanh: ops.tanh,
  sigmoid: ops.sigmoid,
  relu: ops.relu,
  abs: ops.abs,
  maximum: ops.maximum,
  minimum: ops.minimum,
  clamp: ops.clamp,
  softmax: ops.softmax,
  log_softmax: ops.log_softmax,
  where: ops.where,
  masked_fill: ops.masked_fill,
  eq: ops.eq,
  ne: ops.ne,
  lt: ops.lt,
  le: ops.le,
  gt: ops.gt,
  ge: ops.ge,
  sum: (t: Tensor, dim?: number | number[] | null, keepdim = false) => ops.sum(t, dim ?? null, keepdim),
  mean: (t: Tensor, dim?: number | number[] | null, keepdim = false) => ops.mean(t, dim ?? null, keepdim),
  max,
  argmax: (t: Tensor, dim?: number | null, keepdim = false) => ops.argmax(t, dim ?? null, keepdim),
  argmin: (t: Tensor, dim?: number | null, keepdim = false) => ops.argmin(t, dim ?? null, keepdim),
  cat: ops.cat,
  concat: ops.cat,
  stack: ops.stack,
  flatten: ops.flatten,
  reshape: ops.reshape,
  transpose: ops.transpose,
  permute: ops.permute,
  unsqueeze: ops.unsqueeze,
  squeeze: (t: Tensor, dim?: number) => ops.squeeze(t, dim),
  allclose: (a: Tensor, b: Tensor, rtol = 1e-5, atol = 1e-8) => {
    const x = a.data();
    const y = b.data();
    return x.length === y.length && Array.from(x as Float32Array).every((v, i) => Math.abs(v - Number(y[i])) <= atol + rtol * Math.abs(Number(y[i])));
  },
  get_num_threads: () => native.getNumThreads(),
  set_num_threads: (n: number) => native.setNumThreads(n),
  is_tensor: (v: unknown): v is Tensor => v instanceof Tensor,
  numel: (t: Tensor) => t.numel(),
};

export type { Tensor };
