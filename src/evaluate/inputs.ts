// Metric inputs arrive as plain arrays, typed arrays or tensors; the metrics work on number[].

/** Anything with Python's `.tolist()` — the engine's Tensor, for one. */
export interface TensorLike {
  tolist(): unknown;
}

export type MetricInput = ArrayLike<number | bigint | boolean> | TensorLike;

function isTensorLike(x: unknown): x is TensorLike {
  return typeof x === "object" && x !== null && typeof (x as TensorLike).tolist === "function";
}

function toNumber(v: unknown, name: string, index: number): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "boolean") return v ? 1 : 0;
  if (Array.isArray(v) && v.length === 1) return toNumber(v[0], name, index);
  if (Array.isArray(v)) {
    throw new TypeError(
      `${name}[${index}] is an array of ${v.length} values; expected one value per example ` +
        "(for logits, take the argmax over the last axis first)",
    );
  }
  throw new TypeError(`${name}[${index}] is ${JSON.stringify(v)}; expected a number`);
}

/** A flat number[] from one column of inputs; a column of shape [n, 1] is flattened as sklearn does. */
export function toNumbers(x: unknown, name: string): number[] {
  const list = isTensorLike(x) ? x.tolist() : x;
  if (typeof list === "number" || typeof list === "bigint" || typeof list === "boolean") return [toNumber(list, name, 0)];
  if (ArrayBuffer.isView(list) || Array.isArray(list)) {
    return Array.from(list as ArrayLike<unknown>, (v, i) => toNumber(v, name, i));
  }
  throw new TypeError(`${name} must be an array, a typed array or a tensor (anything with .tolist()), got ${typeof list}`);
}
