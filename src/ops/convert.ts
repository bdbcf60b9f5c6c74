// Moving values between dtypes, devices, layouts and JS.
import { Tensor } from "../tensor/tensor.js";
import { DType, bool, float32, int64, toDType } from "../tensor/dtype.js";
import { Device, toDevice } from "../tensor/device.js";
import { DTypeCode } from "../backend/native.js";
import { backendFor } from "../backend/kernels.js";
import { native } from "../backend/native.js";
import { cudaInfo, cudaUnavailableReason } from "../backend/cuda.js";
import { broadcastStrides, sameShape, formatShape } from "../tensor/shape.js";
import { convertContiguous, transferContiguous, transferInto } from "../tensor/creation.js";
import { is_grad_enabled } from "../autograd/grad_mode.js";
import { record } from "./record.js";

type ToTarget = Device | string | DType | { dtype?: DType | string; device?: Device | string };

function parseTarget(target: ToTarget): { dtype?: DType; device?: Device } {
  if (target instanceof DType) return { dtype: target };
  if (target instanceof Device) return { device: target };
  if (typeof target === "string") {
    if (/^(cpu|cuda)(:\d+)?$/.test(target)) return { device: toDevice(target) };
    return { dtype: toDType(target) };
  }
  return {
    dtype: target.dtype === undefined ? undefined : toDType(target.dtype),
    device: target.device === undefined ? undefined : toDevice(target.device),
  };
}

export function to(t: Tensor, target: ToTarget): Tensor {
  const { dtype, device } = parseTarget(target);
  if (device && !device.equals(t.device)) {
    if (device.type === "cuda" && !cudaInfo().available) {
      throw new Error(
        `cannot move a tensor to ${device}: CUDA is not available (torch.cuda.is_available() is false): ${cudaUnavailableReason()}`,
      );
    }
    t.checkAlive();
    // The dtype changes on the CPU side: before an upload, after a download (host casts need no kernel launch).
    const castFirst = dtype && dtype !== t.dtype && t.device.type === "cpu";
    const source = castFirst ? to(t, dtype) : t;
    const moved = record(transferContiguous(source, device), "ToCopy", [source], (g) => [transferContiguous(g, source.device)]);
    if (source !== t && !source.requires_grad) source.dispose();
    if (!dtype || dtype === moved.dtype) return moved;
    const cast = to(moved, dtype);
    if (!moved.requires_grad) moved.dispose();
    return cast;
  }
  if (!dtype || dtype === t.dtype) return t;
  t.checkAlive();
  const out = convertContiguous(t, dtype);
  const from = t.dtype;
  if (dtype.is_floating_point && from.is_floating_point) {
    return record(out, "ToCopy", [t], (g) => [convertContiguous(g, from)]);
  }
  return out;
}

export function contiguous(t: Tensor): Tensor {
  return t.is_contiguous() ? t : clone(t);
}

export function clone(t: Tensor): Tensor {
  t.checkAlive();
  return record(convertContiguous(t, t.dtype), "Clone", [t], (g) => [g]);
}

/** Writes `src` (broadcast to dst's shape, cast to its dtype) into dst's memory; `src` may be on another device. */
export function copy_<T extends Tensor>(dst: T, src: Tensor): T {
  checkInplace(dst);
  src.checkAlive();
  if (!src.device.equals(dst.device)) {
    // Loading weights onto the GPU: one copy straight into dst when nothing needs broadcasting or casting.
    if (src.dtype === dst.dtype && sameShape(src.shape, dst.shape) && dst.is_contiguous()) {
      transferInto(src, dst);
      return dst;
    }
    const moved = transferContiguous(src, dst.device);
    try {
      return copy_(dst, moved);
    } finally {
      moved.dispose();
    }
  }
  const strides = broadcastStrides(src.shape, src.strides, dst.shape);
  backendFor(dst).copy([...dst.shape], src.buffer, src.dtype.code, src.offset, strides, dst.buffer, dst.dtype.code, dst.offset, [...dst.strides]);
  return dst;
}

export function fill_<T extends Tensor>(dst: T, value: number): T {
  checkInplace(dst);
  backendFor(dst).fill([...dst.shape], dst.buffer, dst.dtype.code, dst.offset, [...dst.strides], value);
  return dst;
}

/** Stores an out-of-place result into `dst` (the in-place method forms), then releases the result. */
export function inplace<T extends Tensor>(dst: T, result: Tensor): T {
  if (!sameShape(result.shape, dst.shape)) {
    result.dispose();
    throw new Error(`output with shape ${formatShape(dst.shape)} doesn't match the broadcast shape ${formatShape(result.shape)}`);
  }
  copy_(dst, result);
  result.dispose();
  return dst;
}

function checkInplace(dst: Tensor): void {
  dst.checkAlive();
  if (is_grad_enabled() && dst.requires_grad) {
    throw new Error(
      dst.is_leaf
        ? "a leaf Variable that requires grad is being used in an in-place operation."
        : "in-place operations on tensors that are part of an autograd graph are not supported; use the out-of-place form",
    );
  }
  dst.storage.version++;
}

/** Reads one value. */
export function item(t: Tensor): number {
  if (t.numel() !== 1) {
    throw new Error(`a Tensor with ${t.numel()} elements cannot be converted to Scalar`);
  }
  return Number(readFlat(t)[0]);
}

/** A contiguous copy of the values: Float32Array for float dtypes, the matching integer array otherwise. */
export function toTypedArray(t: Tensor): Float32Array | BigInt64Array | Int32Array | Uint8Array {
  t.checkAlive();
  const n = t.numel();
  const dtype = t.dtype.is_floating_point ? float32 : t.dtype;
  const out = new Tensor(t.storage.retain(), t.shape, t.strides, t.offset, t.dtype);
  try {
    const flat = dtype === t.dtype && t.is_contiguous() ? out : convertContiguous(out, dtype);
    let buffer = flat.buffer;
    let byteOffset = flat.offset * dtype.itemsize;
    if (flat.device.type !== "cpu") {
      buffer = new ArrayBuffer(n * dtype.itemsize);
      native.cuda.copyDeviceToHost(flat.buffer, byteOffset, buffer, 0, buffer.byteLength);
      byteOffset = 0;
    }
    let result: Float32Array | BigInt64Array | Int32Array | Uint8Array;
    switch (dtype.code) {
      case DTypeCode.F32: result = new Float32Array(buffer, byteOffset, n).slice(); break;
      case DTypeCode.I64: result = new BigInt64Array(buffer, byteOffset, n).slice(); break;
      case DTypeCode.I32: result = new Int32Array(buffer, byteOffset, n).slice(); break;
      default: result = new Uint8Array(buffer, byteOffset, n).slice(); break;
    }
    if (flat !== out) flat.dispose();
    return result;
  } finally {
    out.dispose();
  }
}

/** The raw bytes of the values, row-major, in host memory (a copy), whatever the device and dtype. */
export function toHostBytes(t: Tensor): Uint8Array {
  t.checkAlive();
  const flat = t.is_contiguous() ? t : convertContiguous(t, t.dtype);
  try {
    const nbytes = t.numel() * t.dtype.itemsize;
    const byteOffset = flat.offset * t.dtype.itemsize;
    if (flat.device.type === "cpu") return new Uint8Array(flat.buffer, byteOffset, nbytes).slice();
    const out = new Uint8Array(nbytes);
    native.cuda.copyDeviceToHost(flat.buffer, byteOffset, out.buffer, 0, nbytes);
    return out;
  } finally {
    if (flat !== t) flat.dispose();
  }
}

/** The values as JS numbers (or booleans for bool tensors), row-major. */
export function readFlat(t: Tensor): (number | boolean)[] {
  const data = toTypedArray(t);
  if (t.dtype === bool) return Array.from(data as Uint8Array, (v) => v !== 0);
  if (t.dtype === int64) return Array.from(data as BigInt64Array, Number);
  return Array.from(data as Float32Array | Int32Array);
}

export function tolist(t: Tensor): unknown {
  const flat = readFlat(t);
  if (t.ndim === 0) return flat[0];
  const build = (dim: number, start: number): unknown[] => {
    const size = t.shape[dim];
    const inner = t.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
    const out = new Array<unknown>(size);
    for (let i = 0; i < size; i++) out[i] = dim === t.ndim - 1 ? flat[start + i] : build(dim + 1, start + i * inner);
    return out;
  };
  return build(0, 0);
}

