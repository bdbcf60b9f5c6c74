// Element types, named as PyTorch names them (torch.float32, torch.int64, ...).
import { DTypeCode } from "../backend/native.js";

export type DTypeName = "float32" | "float16" | "bfloat16" | "int64" | "int32" | "bool";

export class DType {
  constructor(
    readonly name: DTypeName,
    readonly code: DTypeCode,
    readonly itemsize: number,
    readonly is_floating_point: boolean,
    /** the safetensors name of this dtype */
    readonly safetensors: string,
  ) {}

  toString(): string {
    return `torch.${this.name}`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

export const float32 = new DType("float32", DTypeCode.F32, 4, true, "F32");
export const float16 = new DType("float16", DTypeCode.F16, 2, true, "F16");
export const bfloat16 = new DType("bfloat16", DTypeCode.BF16, 2, true, "BF16");
export const int64 = new DType("int64", DTypeCode.I64, 8, false, "I64");
export const int32 = new DType("int32", DTypeCode.I32, 4, false, "I32");
export const bool = new DType("bool", DTypeCode.Bool, 1, false, "BOOL");

export const ALL_DTYPES: readonly DType[] = [float32, float16, bfloat16, int64, int32, bool];

const byName = new Map<string, DType>([
  ...ALL_DTYPES.map((d) => [d.name, d] as const),
  ["float", float32], ["half", float16], ["long", int64], ["int", int32],
]);

/** Accepts a DType or its name ("float32", "torch.int64", "long", ...). */
export function toDType(d: DType | string): DType {
  if (d instanceof DType) return d;
  const found = byName.get(d.startsWith("torch.") ? d.slice(6) : d);
  if (!found) throw new TypeError(`unknown dtype '${d}': expected one of ${ALL_DTYPES.map(String).join(", ")}`);
  return found;
}

export function fromSafetensorsName(name: string): DType | undefined {
  return ALL_DTYPES.find((d) => d.safetensors === name);
}

/** PyTorch's type promotion for the dtypes we have: float beats int beats bool; float32 beats half types. */
export function promoteTypes(a: DType, b: DType): DType {
  if (a === b) return a;
  if (a.is_floating_point && b.is_floating_point) return float32;
  if (a.is_floating_point) return a;
  if (b.is_floating_point) return b;
  if (a === bool) return b;
  if (b === bool) return a;
  return int64;
}
