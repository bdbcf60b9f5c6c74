// torch.autocast: inside an autocast region, matrix products (matmul, linear, attention) read their float32
// operands in a 16-bit dtype — tensor cores on the GPU — and accumulate in float32. Everything else (softmax,
// layer_norm, losses, reductions, the optimizer) runs in float32, and the parameters stay float32 (the master
// weights). Unlike PyTorch, the products also write float32 rather than 16-bit results: the ops after them have
// float32 kernels only, and the round trip through 16 bits would cost a cast kernel per product for no gain.
import { DType, bfloat16, float16, float32, toDType } from "../tensor/dtype.js";
import type { Tensor } from "../tensor/tensor.js";

export type AutocastDevice = "cpu" | "cuda";

export interface AutocastOptions {
  /** the 16-bit dtype: float16 (the CUDA default) or bfloat16 (the CPU default) */
  dtype?: DType | string;
  enabled?: boolean;
  /**
   * whether a GPU parameter's cast is kept as its 16-bit copy (amp/autocast_weight.ts; default: the enclosing
   * region's, else true); false casts the weights at every product, keeping no copy between steps
   */
  cache_enabled?: boolean;
}

const DEFAULT_DTYPE: Record<AutocastDevice, DType> = { cpu: bfloat16, cuda: float16 };

// The active dtype per device type, null outside autocast (or inside an `enabled: false` region).
const active: Record<AutocastDevice, DType | null> = { cpu: null, cuda: null };
let cacheEnabled = true;

function deviceTypeOf(device_type: string): AutocastDevice {
  if (device_type !== "cpu" && device_type !== "cuda") {
    throw new Error(`autocast: device_type must be "cpu" or "cuda", got ${JSON.stringify(device_type)}`);
  }
  return device_type;
}

function autocastDtypeOption(device: AutocastDevice, dtype: DType | string | undefined): DType {
  const d = dtype === undefined ? DEFAULT_DTYPE[device] : toDType(dtype);
  if (d !== bfloat16 && d !== float16) {
    throw new Error(`autocast: dtype must be torch.bfloat16 or torch.float16, got ${d}: autocast only lowers float32 matrix products to 16 bits`);
  }
  return d;
}

/**
 * `with torch.autocast("cuda", dtype=torch.bfloat16): ...` is `torch.autocast("cuda", { dtype: torch.bfloat16 }, () => ...)`.
 * The region is synchronous (the autocast state is global to the thread), like torch.no_grad's.
 */
export function autocast<T>(device_type: string, fn: () => T): T;
export function autocast<T>(device_type: string, options: AutocastOptions, fn: () => T): T;
export function autocast<T>(device_type: string, optionsOrFn: AutocastOptions | (() => T), maybeFn?: () => T): T {
  const device = deviceTypeOf(device_type);
  const options = typeof optionsOrFn === "function" ? {} : optionsOrFn;
  const fn = typeof optionsOrFn === "function" ? optionsOrFn : maybeFn;
  if (typeof fn !== "function") throw new TypeError("autocast(device_type, options, fn): fn must be a function");
  const dtype = autocastDtypeOption(device, options.dtype);
  const previous = active[device];
  const previousCache = cacheEnabled;
  active[device] = options.enabled === false ? null : dtype;
  cacheEnabled = options.cache_enabled ?? cacheEnabled;
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new TypeError("torch.autocast(device_type, options, fn): fn must be synchronous (the autocast state is global to the thread)");
    }
    return result;
  } finally {
    active[device] = previous;
    cacheEnabled = previousCache;
  }
}

/** torch.is_autocast_cache_enabled(): whether autocast keeps the GPU parameters' casts (AutocastOptions.cache_enabled). */
export function is_autocast_cache_enabled(): boolean {
  return cacheEnabled;
}

export function is_autocast_enabled(device_type: string = "cuda"): boolean {
  return active[deviceTypeOf(device_type)] !== null;
}

/** The dtype autocast uses on a device type: the active region's, else the default. */
export function get_autocast_dtype(device_type: string): DType {
  const device = deviceTypeOf(device_type);
  return active[device] ?? DEFAULT_DTYPE[device];
}

/**
 * The 16-bit dtype the operands of a matrix product are read in, or null: outside autocast, or when an operand
 * is not floating point or already has another 16-bit dtype (the product then runs as without autocast).
 */
export function autocastOperandDtype(...operands: Tensor[]): DType | null {
  const dtype = active[operands[0]!.device.type as AutocastDevice];
  if (!dtype) return null;
  return operands.every((t) => t.dtype === float32 || t.dtype === dtype) ? dtype : null;
}
