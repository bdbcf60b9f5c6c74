// The two shapes a collator receives: a list of examples, or one object of columns (ds.slice(a, b)).
import { Tensor } from "../tensor/tensor.js";

export type Example = Record<string, unknown>;
export type Features = Example[] | Record<string, unknown>;

/** How many rows a column holds: an array's length or a tensor's first dimension. */
function columnLength(value: unknown): number | undefined {
  if (value instanceof Tensor) return value.ndim === 0 ? undefined : value.shape[0];
  if (Array.isArray(value) || ArrayBuffer.isView(value)) return (value as ArrayLike<unknown>).length;
  return undefined;
}

function rowOf(value: unknown, i: number): unknown {
  if (value instanceof Tensor) return value.select(0, i);
  return (value as ArrayLike<unknown>)[i];
}

/** A list of examples, whichever shape came in. */
export function asExamples(features: Features): Example[] {
  if (Array.isArray(features)) return features;
  const entries = Object.entries(features);
  const lengths = new Set(entries.map(([, v]) => columnLength(v)));
  if (entries.length === 0) return [];
  if (lengths.size !== 1 || lengths.has(undefined)) {
    throw new TypeError(
      `a collator takes a list of examples or an object of columns of equal length; got columns ${entries
        .map(([k, v]) => `${k} (${columnLength(v) ?? "not a column"})`)
        .join(", ")}`,
    );
  }
  const n = columnLength(entries[0]![1])!;
  return Array.from({ length: n }, (_, i) => Object.fromEntries(entries.map(([k, v]) => [k, rowOf(v, i)])));
}
