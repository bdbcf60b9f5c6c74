// Output formats of set_format / with_format: plain JS values ("python") or engine tensors ("torch").
import { ClassLabel, Sequence, Value, type FeatureType } from "./features.js";
import { to_tensor, type TensorDType } from "./tensor_bridge.js";

export interface Format {
  type: "python" | "torch" | null;
  columns: string[] | null;
  output_all_columns: boolean;
}

export const PYTHON_FORMAT: Format = { type: null, columns: null, output_all_columns: false };

export function make_format(type: string | null | undefined, columns: string[] | null | undefined, output_all_columns: boolean, available: string[]): Format {
  const kind = type === undefined || type === null || type === "python" ? null : type;
  if (kind !== null && kind !== "torch" && kind !== "pt") {
    throw new Error(`Format type '${type}' is not supported; use 'torch' (or null / 'python' for plain values)`);
  }
  const missing = (columns ?? []).filter((c) => !available.includes(c));
  if (missing.length) {
    throw new Error(`Columns ${JSON.stringify(missing)} not in the dataset. Current columns in the dataset: ${JSON.stringify(available)}`);
  }
  return { type: kind === null ? null : "torch", columns: columns ?? null, output_all_columns };
}

function tensor_dtype(feature: FeatureType): TensorDType | undefined {
  if (feature instanceof ClassLabel) return "int64";
  if (feature instanceof Sequence) return tensor_dtype(feature.feature);
  if (feature instanceof Value) {
    if (feature.dtype === "bool") return "bool";
    if (/int/.test(feature.dtype)) return "int64";
    if (/float/.test(feature.dtype)) return "float32";
  }
  return undefined; // strings and binaries stay as they are, as datasets' torch formatter leaves them
}

/** Which columns a formatted row or batch shows. */
export function visible_columns(format: Format, all: string[]): string[] {
  return format.columns === null || format.output_all_columns ? all : all.filter((c) => format.columns!.includes(c));
}

function formats(format: Format, column: string): boolean {
  return format.type === "torch" && (format.columns === null || format.columns.includes(column));
}

export function format_value(format: Format, column: string, feature: FeatureType, value: unknown): unknown {
  const dtype = formats(format, column) ? tensor_dtype(feature) : undefined;
  if (!dtype || value === null) return value;
  return to_tensor(value as never, dtype);
}

/** A column of a batch: one tensor when the rows stack, else a list of tensors (as datasets does). */
export function format_column(format: Format, column: string, feature: FeatureType, values: unknown[]): unknown {
  const dtype = formats(format, column) ? tensor_dtype(feature) : undefined;
  if (!dtype || values.some((v) => v === null)) return values;
  if (values.length > 0 && Array.isArray(values[0])) {
    const n = (values[0] as unknown[]).length;
    if (values.some((v) => (v as unknown[]).length !== n)) return values.map((v) => to_tensor(v as never, dtype));
  }
  return to_tensor(values as never, dtype);
}
