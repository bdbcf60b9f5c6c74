// Tensor factories: torch.tensor, zeros, ones, full, arange, empty and the *_like variants.
import { Tensor } from "./tensor.js";
import { DType, bool, float32, int32, int64, toDType } from "./dtype.js";
import { Device, toDevice } from "./device.js";
import { native } from "../backend/native.js";
import { backendFor } from "../backend/kernels.js";
import { contiguousStrides, numelOf } from "./shape.js";

export interface FactoryOptions {
  dtype?: DType | string;
  device?: Device | string;
  requires_grad?: boolean;
}

type Nested = number | boolean | Nested[];
export type TensorData = Nested | Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Tensor;

function resolveDevice(options: FactoryOptions): Device {
  return toDevice(options.device ?? "cpu");
}

function finish(t: Tensor, options: FactoryOptions): Tensor {
  if (options.requires_grad) t.requires_grad_(true);
  return t;
}

/** torch.empty: the values are unspecified (here: whatever the memory held). */
export function empty(shape: readonly number[], options: FactoryOptions = {}): Tensor {
  checkShape(shape);
  return finish(Tensor.empty(shape, toDType(options.dtype ?? float32), resolveDevice(options)), options);
}

function filled(shape: readonly number[], value: number, dtype: DType, options: FactoryOptions): Tensor {
  const t = Tensor.empty(checkShape(shape), dtype, resolveDevice(options), value === 0);
  if (value !== 0) backendFor(t).fill([...t.shape], t.buffer, dtype.code, 0, [...t.strides], value);
  return finish(t, options);
}

/** torch.full: the dtype follows the fill value (bool, int64 for integers, else float32) unless given. */
export function full(shape: readonly number[], value: number | boolean, options: FactoryOptions = {}): Tensor {
  const inferred = typeof value === "boolean" ? bool : Number.isInteger(value) ? int64 : float32;
  return filled(shape, Number(value), toDType(options.dtype ?? inferred), options);
}

export function zeros(shape: readonly number[], options: FactoryOptions = {}): Tensor {
  return filled(shape, 0, toDType(options.dtype ?? float32), options);
}

export function ones(shape: readonly number[], options: FactoryOptions = {}): Tensor {
  return filled(shape, 1, toDType(options.dtype ?? float32), options);
}

function likeOptions(t: Tensor, options: FactoryOptions): FactoryOptions {
  return { dtype: options.dtype ?? t.dtype, device: options.device ?? t.device, requires_grad: options.requires_grad };
}

export function zeros_like(t: Tensor, options: FactoryOptions = {}): Tensor {
  return zeros(t.shape, likeOptions(t, options));
}

export function ones_like(t: Tensor, options: FactoryOptions = {}): Tensor {
  return ones(t.shape, likeOptions(t, options));
}

export function full_like(t: Tensor, value: number, options: FactoryOptions = {}): Tensor {
  return filled(t.shape, value, toDType(options.dtype ?? t.dtype), likeOptions(t, options));
}

export function empty_like(t: Tensor, options: FactoryOptions = {}): Tensor {
  return empty(t.shape, likeOptions(t, options));
}

/** torch.arange(end) / arange(start, end, step): int64 when all arguments are integers, else float32. */
export function arange(startOrEnd: number, end?: number, step = 1, options: FactoryOptions = {}): Tensor {
  const start = end === undefined ? 0 : startOrEnd;
  const stop = end === undefined ? startOrEnd : end;
  if (step === 0) throw new RangeError("arange: step must be nonzero");
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const allInt = [start, stop, step].every(Number.isInteger);
  const values = new Array<number>(n);
  for (let i = 0; i < n; i++) values[i] = start + i * step;
  return fromFlat(values, [n], toDType(options.dtype ?? (allInt ? int64 : float32)), options);
}

export function tensor(data: TensorData, options: FactoryOptions = {}): Tensor {
  if (data instanceof Tensor) {
    const copy = data.detach().clone();
    return finish(options.dtype ? copy.to(toDType(options.dtype)) : copy, options);
  }
  if (ArrayBuffer.isView(data)) return fromTypedArray(data, options);
  const shape: number[] = [];
  let probe: Nested = data;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0] ?? 0;
  }
  const flat: (number | boolean)[] = [];
  flattenInto(data, shape, 0, flat);
  let inferred: DType = float32;
  if (flat.length > 0 && flat.every((v) => typeof v === "boolean")) inferred = bool;
  else if (flat.length > 0 && flat.every((v) => typeof v === "number" && Number.isInteger(v) && !Object.is(v, -0))) inferred = int64;
  return fromFlat(flat.map(Number), shape, toDType(options.dtype ?? inferred), options);
}

function flattenInto(data: Nested, shape: number[], depth: number, out: (number | boolean)[]): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new TypeError("tensor(data): ragged nested sequence (every row must have the same length)");
    if (typeof data !== "number" && typeof data !== "boolean") throw new TypeError(`tensor(data): unsupported element ${String(data)}`);
    out.push(data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new TypeError(`tensor(data): expected a sequence of length ${shape[depth]} at dim ${depth} (ragged nested sequence)`);
  }
  for (const item of data) flattenInto(item, shape, depth + 1, out);
}

/** A tensor from a flat list of numbers in row-major order; JS values are written on the host, then moved. */
export function fromFlat(values: ArrayLike<number>, shape: readonly number[], dtype: DType, options: FactoryOptions = {}): Tensor {
  checkShape(shape);
  if (values.length !== numelOf(shape)) throw new RangeError(`fromFlat: ${values.length} values for shape [${shape}]`);
  const device = resolveDevice(options);
  if (device.type !== "cpu") return finish(moveOwned(fromFlat(values, shape, dtype), device), options);
  if (dtype === int64 || dtype === int32) {
    const t = Tensor.empty(shape, int64);
    const view = new BigInt64Array(t.buffer, 0, values.length);
    for (let i = 0; i < values.length; i++) view[i] = BigInt(Math.trunc(values[i]));
    return finish(dtype === int64 ? t : convertOwned(t, dtype), options);
  }
  const staging = Tensor.empty(shape, float32);
  new Float32Array(staging.buffer, 0, values.length).set(values);
  return finish(dtype === float32 ? staging : convertOwned(staging, dtype), options);
}

function fromTypedArray(data: ArrayBufferView, options: FactoryOptions): Tensor {
  let source: DType;
  if (data instanceof Float32Array || data instanceof Float64Array) source = float32;
  else if (data instanceof BigInt64Array) source = int64;
  else if (data instanceof Int32Array) source = int32;
  else if (data instanceof Uint8Array) source = bool;
  else throw new TypeError(`tensor(data): unsupported typed array ${data.constructor.name}`);
  const device = resolveDevice(options);
  if (device.type !== "cpu") return finish(moveOwned(fromTypedArray(data, { dtype: options.dtype }), device), options);
  const n = (data as Float32Array).length;
  const t = Tensor.empty([n], source);
  if (data instanceof Float64Array) new Float32Array(t.buffer, 0, n).set(data);
  else new Uint8Array(t.buffer, 0, n * source.itemsize).set(new Uint8Array(data.buffer, data.byteOffset, n * source.itemsize));
  const dtype = options.dtype ? toDType(options.dtype) : source;
  return finish(dtype === source ? t : convertOwned(t, dtype), options);
}

/** A contiguous copy of `t` in another dtype, on its device (no autograd). */
export function convertContiguous(t: Tensor, dtype: DType): Tensor {
  const out = Tensor.empty(t.shape, dtype, t.device);
  backendFor(t).copy([...t.shape], t.buffer, t.dtype.code, t.offset, [...t.strides], out.buffer, dtype.code, 0, contiguousStrides(t.shape));
  return out;
}

/**
 * A contiguous copy of `t` on another device, same dtype (no autograd): one host<->device copy of the contiguous
 * values; a strided `t` is first made contiguous on its own device.
 */
export function transferContiguous(t: Tensor, device: Device): Tensor {
  const out = Tensor.empty(t.shape, t.dtype, device);
  try {
    transferInto(t, out);
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}

/** Writes `src` into `dst`, a contiguous tensor of the same shape and dtype on another device. */
export function transferInto(src: Tensor, dst: Tensor): void {
  const flat = src.is_contiguous() ? src : convertContiguous(src, src.dtype);
  try {
    const size = src.dtype.itemsize;
    const [from, to, nbytes] = [flat.offset * size, dst.offset * size, src.numel() * size];
    if (dst.device.type === "cpu") native.cuda.copyDeviceToHost(flat.buffer, from, dst.buffer, to, nbytes);
    else if (flat.device.type === "cpu") native.cuda.copyHostToDevice(flat.buffer, from, dst.buffer, to, nbytes);
    else native.cuda.copyDeviceToDevice(flat.buffer, from, dst.buffer, to, nbytes);
  } finally {
    if (flat !== src) flat.dispose();
  }
}

/** Moves a temporary and releases it. */
function moveOwned(t: Tensor, device: Device): Tensor {
  try {
    return transferContiguous(t, device);
  } finally {
    t.dispose();
  }
}

/** Converts a temporary and releases it. */
function convertOwned(t: Tensor, dtype: DType): Tensor {
  const out = convertContiguous(t, dtype);
  t.dispose();
  return out;
}

function checkShape(shape: readonly number[]): readonly number[] {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new RangeError(`invalid size ${s} in shape [${shape}]: sizes must be non-negative integers`);
  }
  return shape;
}
