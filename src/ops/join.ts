// cat and stack: inputs copied into slices of one new tensor; each input's gradient is its slice.
import { Tensor } from "../tensor/tensor.js";
import { float32, promoteTypes, type DType } from "../tensor/dtype.js";
import { native } from "../backend/native.js";
import { backendFor, checkSameDevice } from "../backend/kernels.js";
import { contiguousStrides, formatShape, normDim } from "../tensor/shape.js";
import { record } from "./record.js";
import { narrow, unsqueeze } from "./view.js";

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new Error("torch.cat(): expected a non-empty list of Tensors");
  checkSameDevice(...tensors);
  const ref = tensors.find((t) => !(t.ndim === 1 && t.shape[0] === 0)) ?? tensors[0];
  const d = normDim(dim, ref.ndim);
  const parts = tensors.filter((t) => !(t.ndim === 1 && t.shape[0] === 0 && ref.ndim !== 1));
  for (const t of parts) {
    t.checkAlive();
    if (t.ndim !== ref.ndim || t.shape.some((s, i) => i !== d && s !== ref.shape[i])) {
      throw new Error(`Sizes of tensors must match except in dimension ${d}. Expected ${formatShape(ref.shape)} but got ${formatShape(t.shape)}`);
    }
  }
  const out = catInto(parts, d, parts.map((t) => t.dtype).reduce(promoteTypes));
  const sizes = parts.map((t) => t.shape[d]);
  return record(out, "Cat", parts, (g) => {
    let at = 0;
    return parts.map((t, i) => {
      const slice = t.requires_grad ? narrow(g, d, at, sizes[i]).contiguous() : null;
      at += sizes[i];
      return slice;
    });
  });
}

/** The parts (checked: same device, shapes equal but in dim d) one after another along d, in a new tensor of `dtype`. */
function catInto(parts: readonly Tensor[], d: number, dtype: DType): Tensor {
  const shape = [...parts[0].shape];
  shape[d] = parts.reduce((a, t) => a + t.shape[d], 0);
  const out = Tensor.empty(shape, dtype, parts[0].device);
  const strides = contiguousStrides(shape);
  let start = 0;
  for (const t of parts) {
    backendFor(out).copy([...t.shape], t.buffer, t.dtype.code, t.offset, [...t.strides], out.buffer, dtype.code, start * strides[d], strides);
    start += t.shape[d];
  }
  return out;
}

/**
 * Matrices of equal widths stacked by rows into a new tensor of `dtype`, each cast on the way: cat(matrices) as
 * `dtype`, without autograd. (packed_linear stacks its weights so.)
 */
export function stackRowsAs(matrices: readonly Tensor[], dtype: DType): Tensor {
  return stackGroupsAs([{ parts: matrices, dtype }])[0]!;
}

/**
 * Several stackRowsAs at once: each group's parts (equal shapes but the first dimension) concatenated along it
 * into a new tensor of the group's dtype. On CUDA, contiguous float32 parts going to float32 or 16 bits take one
 * launch for all the groups (packed_linear: its weights and its biases); otherwise one copy per part.
 */
export function stackGroupsAs(groups: readonly { parts: readonly Tensor[]; dtype: DType }[]): Tensor[] {
  const all = groups.flatMap((g) => g.parts);
  checkSameDevice(...all);
  for (const { parts } of groups) {
    for (const m of parts) {
      m.checkAlive();
      if (m.ndim === 0 || formatShape(m.shape.slice(1)) !== formatShape(parts[0]!.shape.slice(1))) {
        throw new Error(`stackRowsAs: expected parts of shape [*, ${parts[0]!.shape.slice(1).join(", ")}], got ${formatShape(m.shape)}`);
      }
    }
  }
  const device = all[0]!.device;
  const oneLaunch = device.type === "cuda" && all.every((m) => m.dtype === float32 && m.is_contiguous()) &&
    groups.every((g) => g.dtype === float32 || g.dtype.itemsize === 2);
  if (!oneLaunch) return groups.map((g) => catInto(g.parts, 0, g.dtype));
  const outs = groups.map((g) => Tensor.empty([g.parts.reduce((n, m) => n + m.shape[0]!, 0), ...g.parts[0]!.shape.slice(1)], g.dtype, device));
  const dsts: ArrayBuffer[] = [], dstOffs: number[] = [], dtypes: number[] = [];
  groups.forEach((g, i) => {
    let at = 0;
    for (const m of g.parts) {
      dsts.push(outs[i]!.buffer);
      dstOffs.push(at);
      dtypes.push(g.dtype.code);
      at += m.numel();
    }
  });
  native.cuda.castMany(all.map((m) => m.buffer), all.map((m) => m.offset), all.map((m) => m.numel()), dsts, dstOffs, dtypes);
  return outs;
}

export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new Error("stack expects a non-empty TensorList");
  const first = tensors[0];
  for (const t of tensors) {
    if (formatShape(t.shape) !== formatShape(first.shape)) {
      throw new Error(`stack expects each tensor to be equal size, but got ${formatShape(first.shape)} at entry 0 and ${formatShape(t.shape)} at entry ${tensors.indexOf(t)}`);
    }
  }
  const d = normDim(dim, first.ndim + 1);
  return cat(tensors.map((t) => unsqueeze(t, d)), d);
}
