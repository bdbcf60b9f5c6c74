// The one place where data code (datasets formatting, tokenizer outputs) makes engine tensors.
// Integer data goes through typed arrays: building from nested JS arrays costs more per element.
import { torch } from "../torch.js";
import type { Tensor } from "../tensor/tensor.js";

export type EngineTensor = Tensor;
export type TensorDType = "int64" | "float32" | "bool";

type Nested = number | boolean | Nested[];

export function to_tensor(data: Nested | ArrayLike<number>, dtype: TensorDType): EngineTensor {
  const shape = rectangular_shape(data);
  if (!shape || shape.length === 0 || dtype === "bool") return torch.tensor(data as never, { dtype: torch[dtype] });
  const flat = new Float64Array(count(shape));
  let k = 0;
  const fill = (v: unknown): void => {
    if (Array.isArray(v) || ArrayBuffer.isView(v)) {
      const arr = v as ArrayLike<unknown>;
      for (let i = 0; i < arr.length; i++) fill(arr[i]);
    } else flat[k++] = Number(v);
  };
  fill(data);
  const typed = dtype === "float32" ? Float32Array.from(flat)
    : flat.every((v) => v >= -2147483648 && v <= 2147483647) ? Int32Array.from(flat) : BigInt64Array.from(flat, (v) => BigInt(v));
  return torch.tensor(typed, { dtype: torch[dtype] }).reshape(shape);
}

export function is_tensor(value: unknown): value is EngineTensor {
  return value instanceof torch.Tensor;
}

/** The shape of nested arrays whose rows all have the same length, or undefined when ragged. */
function rectangular_shape(data: unknown): number[] | undefined {
  const shape: number[] = [];
  let probe = data;
  while (Array.isArray(probe) || (ArrayBuffer.isView(probe) && !(probe instanceof DataView))) {
    const len = (probe as ArrayLike<unknown>).length;
    shape.push(len);
    if (len === 0) break;
    probe = (probe as ArrayLike<unknown>)[0];
  }
  const check = (v: unknown, depth: number): boolean => {
    if (depth === shape.length) return !Array.isArray(v);
    const arr = v as ArrayLike<unknown>;
    if (!(Array.isArray(v) || ArrayBuffer.isView(v)) || arr.length !== shape[depth]) return false;
    for (let i = 0; i < arr.length; i++) if (!check(arr[i], depth + 1)) return false;
    return true;
  };
  return check(data, 0) ? shape : undefined;
}

function count(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
