// Reductions (sum, mean, max, argmax, ...) over dims, and sumToShape, the adjoint of broadcasting.
import { Tensor } from "../tensor/tensor.js";
import { DType, float32, int64 } from "../tensor/dtype.js";
import { CompareOp, ReduceOp } from "../backend/native.js";
import { backendFor } from "../backend/kernels.js";
import { contiguousStrides, normDim, numelOf, sameShape } from "../tensor/shape.js";
import { arange, convertContiguous } from "../tensor/creation.js";
import { record } from "./record.js";
import { readFlat } from "./convert.js";
import { compareTensors, div, mul, sqrt, sub } from "./elementwise.js";

function reduceDims(t: Tensor, dim: number | readonly number[] | null): number[] {
  if (dim === null) return t.shape.map((_, i) => i);
  const dims = (typeof dim === "number" ? [dim] : [...dim]).map((d) => normDim(d, t.ndim));
  return [...new Set(dims)].sort((a, b) => a - b);
}

function keptShape(shape: readonly number[], dims: readonly number[]): number[] {
  return shape.map((s, i) => (dims.includes(i) ? 1 : s));
}

function outShape(shape: readonly number[], dims: readonly number[], keepdim: boolean): number[] {
  return keepdim ? keptShape(shape, dims) : shape.filter((_, i) => !dims.includes(i));
}

/** Reduces float32 data over `dims` (ascending), keeping them as size-1 dims. */
function rawReduce(op: ReduceOp, t: Tensor, dims: readonly number[]): Tensor {
  let cur = convertContiguous(t, float32);
  let shape = [...t.shape];
  for (let k = dims.length - 1; k >= 0; k--) {
    const d = dims[k];
    const outer = numelOf(shape.slice(0, d));
    const n = shape[d];
    const inner = numelOf(shape.slice(d + 1));
    if (n === 0 && op !== ReduceOp.Sum) {
      cur.dispose();
      throw new Error(`max(): Expected reduction dim ${d} to have non-zero size.`);
    }
    shape[d] = 1;
    const next = Tensor.empty(shape, float32, t.device);
    backendFor(cur).reduce(op, outer, n, inner, cur.buffer, 0, next.buffer, 0);
    cur.dispose();
    cur = next;
  }
  return cur;
}

/** Takes over a contiguous float32 result, giving it its final shape and dtype. */
function finish(t: Tensor, shape: readonly number[], dtype: DType): Tensor {
  const reshaped = t._view(shape, contiguousStrides(shape), 0);
  t.dispose();
  if (dtype === float32) return reshaped;
  const converted = convertContiguous(reshaped, dtype);
  reshaped.dispose();
  return converted;
}

export function sum(t: Tensor, dim: number | readonly number[] | null = null, keepdim = false, dtype?: DType): Tensor {
  t.checkAlive();
  const dims = reduceDims(t, dim);
  const resultType = dtype ?? (t.dtype.is_floating_point ? t.dtype : int64);
  const shape = outShape(t.shape, dims, keepdim);
  const out = finish(rawReduce(ReduceOp.Sum, t, dims), shape, resultType);
  const inputShape = [...t.shape];
  return record(out, "Sum", [t], (g) => [expandGrad(g, inputShape, dims, keepdim)]);
}

/** The gradient of a reduction: g broadcast back over the reduced dims. */
function expandGrad(g: Tensor, inputShape: readonly number[], dims: readonly number[], keepdim: boolean): Tensor {
  const kept = keepdim ? g : g.reshape(keptShape(inputShape, dims));
  return kept.expand([...inputShape]).contiguous();
}

export function mean(t: Tensor, dim: number | readonly number[] | null = null, keepdim = false): Tensor {
  if (!t.dtype.is_floating_point) {
    throw new Error(`mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: ${t.dtype.name[0].toUpperCase()}${t.dtype.name.slice(1)}`);
  }
  const dims = reduceDims(t, dim);
  const count = dims.reduce((a, d) => a * t.shape[d], 1);
  const s = sum(t, dims, keepdim);
  return mul(s, 1 / count);
}

export function amax(t: Tensor, dim: number | readonly number[] | null, keepdim: boolean): Tensor {
  return extreme(t, dim, keepdim, ReduceOp.Max, "Amax");
}

export function amin(t: Tensor, dim: number | readonly number[] | null, keepdim: boolean): Tensor {
  return extreme(t, dim, keepdim, ReduceOp.Min, "Amin");
}

function extreme(t: Tensor, dim: number | readonly number[] | null, keepdim: boolean, op: ReduceOp, name: string): Tensor {
  t.checkAlive();
  const dims = reduceDims(t, dim);
  const kept = rawReduce(op, t, dims);
  const shape = outShape(t.shape, dims, keepdim);
  const keptShapeValues = [...kept.shape];
  const out = finish(kept, shape, t.dtype);
  return record(out, name, [t], (g) => {
    // The gradient is shared evenly among the positions that hold the extreme value, as torch.amax does.
    const x = t.detach();
    const best = out.detach().reshape(keptShapeValues);
    const hits = compareTensors(CompareOp.Eq, x, best).to(g.dtype);
    const count = sum(hits, dims, true);
    const gk = keepdim ? g : g.reshape(keptShapeValues);
    return [div(mul(hits, gk), count)];
  }, [t, out]);
}

function indexOfExtreme(t: Tensor, dim: number | null, keepdim: boolean, negate: boolean): Tensor {
  t.checkAlive();
  const flat = dim === null ? t.reshape([-1]) : t;
  const d = dim === null ? 0 : normDim(dim, t.ndim);
  const src = convertContiguous(flat, float32);
  const scored = negate ? mul(src, -1) : src;
  const outer = numelOf(flat.shape.slice(0, d));
  const n = flat.shape[d];
  if (n === 0) throw new Error("argmax(): Expected reduction dim to be specified for input.numel() == 0.");
  const inner = numelOf(flat.shape.slice(d + 1));
  const shape = dim === null ? (keepdim ? t.shape.map(() => 1) : []) : outShape(t.shape, [d], keepdim);
  const out = Tensor.empty(shape, int64, t.device);
  backendFor(out).argmax(outer, n, inner, scored.buffer, 0, out.buffer, 0);
  if (scored !== src) scored.dispose();
  src.dispose();
  return out;
}

export function argmax(t: Tensor, dim: number | null, keepdim: boolean): Tensor {
  return indexOfExtreme(t, dim, keepdim, false);
}

export function argmin(t: Tensor, dim: number | null, keepdim: boolean): Tensor {
  return indexOfExtreme(t, dim, keepdim, true);
}

function extremeWithIndices(t: Tensor, dim: number, keepdim: boolean, op: ReduceOp, name: string) {
  const d = normDim(dim, t.ndim);
  const indices = indexOfExtreme(t, d, keepdim, op === ReduceOp.Min);
  const values = finish(rawReduce(op, t, [d]), outShape(t.shape, [d], keepdim), t.dtype);
  record(values, name, [t], (g) => {
    const idx = keepdim ? indices : indices.unsqueeze(d);
    const positions = arange(t.shape[d], undefined, 1, { device: t.device }).reshape(t.shape.map((s, i) => (i === d ? s : 1)));
    const onehot = compareTensors(CompareOp.Eq, positions, idx).to(g.dtype);
    return [mul(onehot, keepdim ? g : g.unsqueeze(d))];
  }, [indices]);
  return { values, indices };
}

export function maxDim(t: Tensor, dim: number, keepdim: boolean) {
  return extremeWithIndices(t, dim, keepdim, ReduceOp.Max, "Max");
}

export function minDim(t: Tensor, dim: number, keepdim: boolean) {
  return extremeWithIndices(t, dim, keepdim, ReduceOp.Min, "Min");
}

/** Sums g over the dims that broadcasting added or expanded, so it has `shape` again. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  const reduced = sum(g, dims, true);
  return reduced.reshape([...shape]);
}

export function norm(t: Tensor, p: number): Tensor {
  if (p !== 2) throw new Error(`norm(p=${p}): only the 2-norm is supported`);
  return sqrt(sum(mul(t, t)));
}

export function variance(t: Tensor, dim: number | readonly number[] | null, unbiased: boolean, keepdim: boolean): Tensor {
  const dims = reduceDims(t, dim);
  const count = dims.reduce((a, d) => a * t.shape[d], 1);
  const centered = sub(t, mean(t, dims, true));
  return mul(sum(mul(centered, centered), dims, keepdim), 1 / Math.max(count - (unbiased ? 1 : 0), 0));
}

export function all(t: Tensor): boolean {
  return readFlat(t).every((v) => Boolean(v));
}

export function any(t: Tensor): boolean {
  return readFlat(t).some((v) => Boolean(v));
}

