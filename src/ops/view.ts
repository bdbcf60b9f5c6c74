// View ops: new shapes and strides over the same memory. Gradients flow back through the inverse view. A view of
// a tensor with a 16-bit copy (amp/lowp_copy.ts) gets the same view of the copy, so that a copy its producer wrote
// reaches the next matrix product through the reshapes between them (BERT's heads merged back into [B, S, hidden]).
import { Tensor } from "../tensor/tensor.js";
import { contiguousStrides, formatShape, normDim, numelOf, broadcastStrides } from "../tensor/shape.js";
import { zeros } from "../tensor/creation.js";
import { record } from "./record.js";
import { contiguous, copy_ } from "./convert.js";
import { no_grad } from "../autograd/grad_mode.js";
import { sumToShape } from "./reduce.js";
import { attachLowpCopy, lowpCopyOf } from "../amp/lowp_copy.js";

/** One item of Python's indexing syntax: i, a:b:c as [a, b, c] (null for omitted), None as null, "..." or ":". */
export type IndexSpec = number | null | "..." | ":" | [number | null, (number | null)?, (number | null)?];

function inferShape(shape: readonly number[], numel: number): number[] {
  const out = [...shape];
  const unknown = out.indexOf(-1);
  if (out.lastIndexOf(-1) !== unknown) throw new Error("only one dimension can be inferred");
  const known = out.reduce((a, s) => (s === -1 ? a : a * s), 1);
  if (unknown >= 0) {
    if (known === 0 || numel % known !== 0) throw new Error(`shape '${formatShape(shape)}' is invalid for input of size ${numel}`);
    out[unknown] = numel / known;
  }
  for (const s of out) if (!Number.isInteger(s) || s < 0) throw new Error(`invalid shape dimension ${s}`);
  if (numelOf(out) !== numel) throw new Error(`shape '${formatShape(shape)}' is invalid for input of size ${numel}`);
  return out;
}

/** Strides for viewing (shape, strides) as newShape without copying, or null when impossible (PyTorch's rule). */
function viewStrides(shape: readonly number[], strides: readonly number[], newShape: readonly number[]): number[] | null {
  if (numelOf(shape) === 0 || shape.length === 0) return contiguousStrides(newShape);
  const newStrides = new Array<number>(newShape.length);
  let viewD = newShape.length - 1;
  let chunkBase = strides[strides.length - 1] ?? 1;
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    tensorNumel *= shape[d];
    if (d === 0 || (shape[d - 1] !== 1 && strides[d - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        newStrides[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD];
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) {
        chunkBase = strides[d - 1];
        tensorNumel = 1;
        viewNumel = 1;
      }
    }
  }
  if (viewD !== -1) return null;
  return newStrides;
}

/** `t`'s view (shape, strides, offset), carrying the same view of t's 16-bit copy where the copy is laid out as t is. */
function viewOf(t: Tensor, shape: readonly number[], strides: readonly number[], offset: number): Tensor {
  const out = t._view(shape, strides, offset);
  const copy = t._lowp && lowpCopyOf(t, t._lowp.copy.dtype);
  if (copy && copy.offset === t.offset && copy.strides.every((s, i) => s === t.strides[i])) {
    attachLowpCopy(out, copy._view(shape, strides, offset));
  }
  return out;
}

/** A view of `t` made by `makeView`, whose gradient is scattered back into a zero tensor of t's shape. */
function differentiableView(t: Tensor, opName: string, makeView: (base: Tensor) => Tensor): Tensor {
  const out = makeView(t);
  return record(out, opName, [t], (g) => {
    const grad = zeros(t.shape, { dtype: g.dtype, device: g.device });
    no_grad(() => {
      const target = makeView(grad);
      copy_(target, g);
      target.dispose();
    });
    return [grad];
  });
}

export function view(t: Tensor, shape: readonly number[]): Tensor {
  const target = inferShape(shape, t.numel());
  const strides = viewStrides(t.shape, t.strides, target);
  if (!strides) {
    throw new Error(
      "view size is not compatible with input tensor's size and stride (at least one dimension spans across two " +
        "contiguous subspaces). Use .reshape(...) instead.",
    );
  }
  const inputShape = [...t.shape];
  return record(viewOf(t, target, strides, t.offset), "View", [t], (g) => [reshape(g, inputShape)]);
}

export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  const target = inferShape(shape, t.numel());
  if (viewStrides(t.shape, t.strides, target)) return view(t, target);
  const c = contiguous(t);
  const out = view(c, target);
  return out;
}

export function flatten(t: Tensor, startDim = 0, endDim = -1): Tensor {
  if (t.ndim === 0) return reshape(t, [1]);
  const s = normDim(startDim, t.ndim);
  const e = normDim(endDim, t.ndim);
  if (s > e) throw new Error("flatten() has invalid args: start_dim cannot come after end_dim");
  const shape = [...t.shape.slice(0, s), numelOf(t.shape.slice(s, e + 1)), ...t.shape.slice(e + 1)];
  return reshape(t, shape);
}

export function permute(t: Tensor, dims: readonly number[]): Tensor {
  if (dims.length !== t.ndim) {
    throw new Error(`permute(sparse_coo): number of dimensions in the tensor input does not match the length of the desired ordering of dimensions i.e. input.dim() = ${t.ndim} is not equal to len(dims) = ${dims.length}`);
  }
  const d = dims.map((x) => normDim(x, t.ndim));
  if (new Set(d).size !== d.length) throw new Error("permute(): duplicate dims are not allowed.");
  const inverse = new Array<number>(d.length);
  d.forEach((x, i) => (inverse[x] = i));
  const out = viewOf(t, d.map((x) => t.shape[x]), d.map((x) => t.strides[x]), t.offset);
  return record(out, "Permute", [t], (g) => [permute(g, inverse)]);
}

export function transpose(t: Tensor, dim0: number, dim1: number): Tensor {
  const dims = t.shape.map((_, i) => i);
  const a = normDim(dim0, t.ndim);
  const b = normDim(dim1, t.ndim);
  [dims[a], dims[b]] = [dims[b], dims[a]];
  return permute(t, dims);
}

export function unsqueeze(t: Tensor, dim: number): Tensor {
  const d = normDim(dim, t.ndim + 1);
  const shape = [...t.shape];
  const strides = [...t.strides];
  shape.splice(d, 0, 1);
  strides.splice(d, 0, d < t.ndim ? t.strides[d] * t.shape[d] : 1);
  const inputShape = [...t.shape];
  return record(viewOf(t, shape, strides, t.offset), "Unsqueeze", [t], (g) => [reshape(g, inputShape)]);
}

export function squeeze(t: Tensor, dim?: number): Tensor {
  const dims = dim === undefined ? t.shape.map((s, i) => (s === 1 ? i : -1)).filter((i) => i >= 0) : [normDim(dim, t.ndim)];
  const keep = t.shape.map((_, i) => !(dims.includes(i) && t.shape[i] === 1));
  const inputShape = [...t.shape];
  const out = viewOf(t, t.shape.filter((_, i) => keep[i]), t.strides.filter((_, i) => keep[i]), t.offset);
  return record(out, "Squeeze", [t], (g) => [reshape(g, inputShape)]);
}

export function expand(t: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - t.ndim;
  if (lead < 0) throw new Error(`expand: the number of sizes provided (${shape.length}) must be greater or equal to the number of dimensions in the tensor (${t.ndim})`);
  const target = shape.map((s, i) => (s === -1 ? t.shape[i - lead] : s));
  const strides = broadcastStrides(t.shape, t.strides, target);
  const inputShape = [...t.shape];
  return record(viewOf(t, target, strides, t.offset), "Expand", [t], (g) => [sumToShape(g, inputShape)]);
}

function selectView(t: Tensor, dim: number, index: number): Tensor {
  const d = normDim(dim, t.ndim);
  const size = t.shape[d];
  if (!Number.isInteger(index) || index < -size || index >= size) {
    throw new RangeError(`index ${index} is out of bounds for dimension ${d} with size ${size}`);
  }
  const i = index < 0 ? index + size : index;
  return viewOf(t, t.shape.filter((_, k) => k !== d), t.strides.filter((_, k) => k !== d), t.offset + i * t.strides[d]);
}

export function select(t: Tensor, dim: number, index: number): Tensor {
  return differentiableView(t, "Select", (base) => selectView(base, dim, index));
}

function sliceView(t: Tensor, dim: number, start: number, end: number, step: number): Tensor {
  const d = normDim(dim, t.ndim);
  const size = t.shape[d];
  if (!(step > 0) || !Number.isInteger(step)) throw new Error("slice step must be a positive integer");
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + size : v, 0), size);
  const s = clamp(start);
  const e = Math.max(clamp(end), s);
  const shape = [...t.shape];
  const strides = [...t.strides];
  shape[d] = Math.ceil((e - s) / step);
  strides[d] = t.strides[d] * step;
  return viewOf(t, shape, strides, t.offset + s * t.strides[d]);
}

export function narrow(t: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normDim(dim, t.ndim);
  if (start < 0 || length < 0 || start + length > t.shape[d]) {
    throw new RangeError(`start (${start}) + length (${length}) exceeds dimension size (${t.shape[d]}).`);
  }
  return differentiableView(t, "Slice", (base) => sliceView(base, d, start, start + length, 1));
}

export function slice(t: Tensor, dim: number, start: number | null, end: number | null, step = 1): Tensor {
  return differentiableView(t, "Slice", (base) => sliceView(base, dim, start ?? 0, end ?? Number.MAX_SAFE_INTEGER, step));
}

function applyIndex(t: Tensor, spec: readonly IndexSpec[]): Tensor {
  const consumed = spec.filter((s) => s !== null && s !== "...").length;
  if (consumed > t.ndim) throw new RangeError(`too many indices for tensor of dimension ${t.ndim}`);
  const expanded: IndexSpec[] = [];
  for (const s of spec) {
    if (s === "...") for (let i = 0; i < t.ndim - consumed; i++) expanded.push(":");
    else expanded.push(s);
  }
  let out = viewOf(t, t.shape, t.strides, t.offset);
  let dim = 0;
  for (const s of expanded) {
    let next: Tensor;
    if (s === null) {
      const shape = [...out.shape];
      const strides = [...out.strides];
      shape.splice(dim, 0, 1);
      strides.splice(dim, 0, 1);
      next = viewOf(out, shape, strides, out.offset);
      dim++;
    } else if (s === ":") {
      dim++;
      continue;
    } else if (typeof s === "number") {
      next = selectView(out, dim, s);
    } else {
      const [start, end, step] = s as Exclude<IndexSpec, number | null | string>;
      next = sliceView(out, dim, start ?? 0, end ?? Number.MAX_SAFE_INTEGER, step ?? 1);
      dim++;
    }
    out.dispose();
    out = next;
  }
  return out;
}

export function index(t: Tensor, spec: readonly IndexSpec[]): Tensor {
  return differentiableView(t, "Index", (base) => applyIndex(base, spec));
}

export function split(t: Tensor, splitSize: number | readonly number[], dim = 0): Tensor[] {
  const d = normDim(dim, t.ndim);
  const size = t.shape[d];
  const sizes: number[] = [];
  if (typeof splitSize === "number") {
    for (let s = 0; s < size; s += splitSize) sizes.push(Math.min(splitSize, size - s));
  } else {
    if (splitSize.reduce((a, b) => a + b, 0) !== size) throw new Error(`split_with_sizes expects split_sizes to sum exactly to ${size}`);
    sizes.push(...splitSize);
  }
  let start = 0;
  return sizes.map((len) => {
    const out = narrow(t, d, start, len);
    start += len;
    return out;
  });
}

export function chunk(t: Tensor, chunks: number, dim = 0): Tensor[] {
  const size = t.shape[normDim(dim, t.ndim)];
  return split(t, Math.ceil(size / chunks), dim);
}
