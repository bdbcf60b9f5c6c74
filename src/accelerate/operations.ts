// accelerate's operations across processes on nested data: gather (every process's tensors concatenated along
// their first dim, in process order) and pad_across_processes, over the default process group.
import { Tensor } from "../tensor/tensor.js";
import { cat } from "../ops/join.js";
import { full } from "../tensor/creation.js";
import * as dist from "../distributed/process_group.js";

/** `data` with `fn` applied to every tensor in it (arrays and plain objects too). */
export function mapTensors<T>(data: T, fn: (t: Tensor) => Tensor): T {
  if (data instanceof Tensor) return fn(data) as T;
  if (Array.isArray(data)) return data.map((v) => mapTensors(v, fn)) as T;
  if (data !== null && typeof data === "object" && Object.getPrototypeOf(data) === Object.prototype) {
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, mapTensors(v, fn)])) as T;
  }
  return data;
}

/** Every process's shape of its tensor. */
function shapesAcross(t: Tensor): number[][] {
  const shapes: unknown[] = new Array(dist.get_world_size()).fill(null);
  dist.all_gather_object(shapes, t.shape);
  return shapes as number[][];
}

/** t padded with `value` along `dim` to `size` (t itself where it has that size). */
function padTo(t: Tensor, dim: number, size: number, value: number, first: boolean): Tensor {
  if (t.shape[dim] === size) return t;
  const shape = [...t.shape];
  shape[dim] = size - t.shape[dim]!;
  const pad = full(shape, value, { dtype: t.dtype, device: t.device });
  const padded = cat(first ? [pad, t] : [t, pad], dim);
  pad.dispose();
  return padded;
}

function gatherTensor(t: Tensor): Tensor {
  const input = t.ndim === 0 ? t.reshape([1]) : t;
  const shapes = shapesAcross(input);
  const rest = JSON.stringify(input.shape.slice(1));
  const differing = shapes.findIndex((s) => JSON.stringify(s.slice(1)) !== rest);
  if (differing >= 0) {
    throw new Error(
      `gather: this process's tensor is [${input.shape}], process ${differing}'s [${shapes[differing]}]: tensors may differ ` +
        "in their first dim only; pad the others with pad_across_processes",
    );
  }
  const rows = shapes.map((s) => s[0]!);
  const longest = Math.max(...rows);
  const padded = padTo(input, 0, longest, 0, false);
  const all = Tensor.empty([rows.length * longest, ...input.shape.slice(1)], input.dtype, input.device);
  dist.all_gather_into_tensor(all, padded);
  if (padded !== input) padded.dispose();
  if (input !== t) input.dispose();
  let gathered = all;
  if (rows.some((r) => r !== longest)) {
    const parts = rows.map((r, i) => all.narrow(0, i * longest, r));
    gathered = cat(parts, 0);
    parts.forEach((p) => p.dispose());
    all.dispose();
  }
  return gathered;
}

/** accelerate's gather: each tensor in `data` as every process's, concatenated along the first dim. */
export function gatherAcross<T>(data: T): T {
  return mapTensors(data, gatherTensor);
}

/**
 * accelerate's gather_for_metrics: gatherAcross, less, where `last` (the dataloader's last batch), the samples its
 * last round repeated to give every process a full batch (`remainder`: those that are not repeats; 0: none).
 */
export function gatherForMetrics<T>(data: T, last: boolean, remainder: number): T {
  const gathered = gatherAcross(data);
  if (!last || remainder <= 0) return gathered;
  return mapTensors(gathered, (t) => {
    if (t.shape[0]! <= remainder) return t;
    const kept = t.narrow(0, 0, remainder).clone();
    t.dispose();
    return kept;
  });
}

/** accelerate's pad_across_processes for one tensor: padded along `dim` to the largest size of any process. */
export function padAcross(t: Tensor, dim: number, pad_index: number, pad_first: boolean): Tensor {
  const d = dim < 0 ? dim + t.ndim : dim;
  if (d < 0 || d >= t.ndim) throw new RangeError(`pad_across_processes: dim ${dim} is out of range for a ${t.ndim}-dim tensor`);
  const longest = Math.max(...shapesAcross(t).map((s) => s[d] ?? 0));
  return padTo(t, d, longest, pad_index, pad_first);
}
