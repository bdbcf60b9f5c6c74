// JS values ↔ Arrow vectors for each feature type, and the types datasets infers for new columns.
import * as arrow from "apache-arrow";
import { ClassLabel, Sequence, Value, type FeatureType } from "./features.js";

/** Builds the Arrow vector of a column; int and list-of-int columns skip the generic builder. */
export function build_column(values: readonly unknown[], feature: FeatureType, column: string): arrow.Vector {
  try {
    return build(values, feature);
  } catch (err) {
    throw new Error(`Column '${column}' does not fit its type ${describe(feature)}: ${(err as Error).message}`);
  }
}

function build(values: readonly unknown[], feature: FeatureType): arrow.Vector {
  const type = feature.arrow_type();
  const has_null = values.some((v) => v === null || v === undefined);
  if (!has_null) {
    const flat = flat_typed(values, type);
    if (flat) return arrow.makeVector(flat as never);
    if (feature instanceof Sequence && arrow.DataType.isList(type)) {
      const offsets = new Int32Array(values.length + 1);
      const rows = values as readonly unknown[][];
      for (let i = 0; i < rows.length; i++) {
        if (!Array.isArray(rows[i]) && !ArrayBuffer.isView(rows[i])) throw new Error(`row ${i} is not a list`);
        offsets[i + 1] = offsets[i]! + rows[i]!.length;
      }
      const child = build(rows.flatMap((r) => Array.from(r as ArrayLike<unknown>)), feature.feature);
      const data = arrow.makeData({ type: type as arrow.List, length: rows.length, nullCount: 0, valueOffsets: offsets, child: child.data[0]! });
      if (child.data.length !== 1) return arrow.vectorFromArray(values as never, type);
      return arrow.makeVector(data);
    }
  }
  if (feature instanceof ClassLabel) {
    return arrow.vectorFromArray(values.map((v) => (v === null || v === undefined ? null : BigInt(v as number))) as never, type);
  }
  if (arrow.DataType.isInt(type) && type.bitWidth === 64) {
    return arrow.vectorFromArray(values.map((v) => (v === null || v === undefined ? null : BigInt(v as number))) as never, type);
  }
  return arrow.vectorFromArray(values as never, type);
}

/** A typed array holding a whole int / float / bool-free column, or undefined when that does not apply. */
function flat_typed(values: readonly unknown[], type: arrow.DataType): ArrayBufferView | undefined {
  if (!arrow.DataType.isInt(type) && !arrow.DataType.isFloat(type)) return undefined;
  if (arrow.DataType.isFloat(type) && type.precision === 0) return undefined;
  const ctor = (type as arrow.Int | arrow.Float).ArrayType as unknown as { new (n: number): ArrayLike<unknown> & Record<number, unknown> };
  const out = new ctor(values.length);
  const big = arrow.DataType.isInt(type) && type.bitWidth === 64;
  const int = arrow.DataType.isInt(type);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v === "bigint") out[i] = big ? v : Number(v);
    else if (typeof v === "number") {
      if (int && !Number.isInteger(v)) throw new Error(`value ${v} is not an integer`);
      out[i] = big ? BigInt(v) : v;
    } else if (typeof v === "boolean") out[i] = big ? BigInt(+v) : +v;
    else throw new Error(`value ${JSON.stringify(v)} is not a number`);
  }
  return out as unknown as ArrayBufferView;
}

/** One value of an Arrow vector as Python's datasets returns it: numbers (not bigints), strings, arrays. */
export function to_js(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return Number(value);
  if (value instanceof arrow.Vector) {
    const arr = value.toArray() as ArrayLike<unknown>;
    if (arr instanceof BigInt64Array || arr instanceof BigUint64Array) return Array.from(arr, Number);
    if (ArrayBuffer.isView(arr)) return Array.from(arr as ArrayLike<number>);
    return Array.from(arr, to_js);
  }
  if (value instanceof Uint8Array) return value;
  if (typeof value === "object" && value !== null && "toJSON" in value) return (value as { toJSON(): unknown }).toJSON();
  return value;
}

/** Values of rows [start, end) of a column as JS values. */
export function column_values(vector: arrow.Vector, start: number, end: number): unknown[] {
  const part = vector.slice(start, end);
  const type = part.type;
  if (part.nullCount === 0 && (arrow.DataType.isInt(type) || arrow.DataType.isFloat(type))) {
    const arr = part.toArray() as ArrayLike<number | bigint>;
    return typeof arr[0] === "bigint" ? Array.from(arr, Number) : Array.from(arr as ArrayLike<number>);
  }
  if (part.nullCount === 0 && arrow.DataType.isList(type)) return list_values(part as arrow.Vector<arrow.List>);
  const out = new Array(end - start);
  for (let i = 0; i < out.length; i++) out[i] = to_js(part.get(i));
  return out;
}

/** A list<number> column read straight from its offsets and child values. */
function list_values(part: arrow.Vector<arrow.List>): unknown[] {
  const out: unknown[] = [];
  for (const data of part.data) {
    const child = data.children[0]!;
    const childType = child.type;
    if (!(arrow.DataType.isInt(childType) || arrow.DataType.isFloat(childType)) || child.nullCount > 0) {
      const v = arrow.makeVector(data);
      for (let i = 0; i < data.length; i++) out.push(to_js(v.get(i)));
      continue;
    }
    const values = child.values as ArrayLike<number | bigint>;
    const big = typeof values[0] === "bigint";
    const offsets = data.valueOffsets;
    for (let i = 0; i < data.length; i++) {
      const s = offsets[data.offset + i]! + child.offset;
      const e = offsets[data.offset + i + 1]! + child.offset;
      const row = new Array(e - s);
      for (let k = s; k < e; k++) row[k - s] = big ? Number(values[k]) : values[k];
      out.push(row);
    }
  }
  return out;
}

// datasets stores tokenizer outputs in small ints (OptimizedTypedSequence); everything else as inferred.
const OPTIMIZED: Record<string, string> = {
  input_ids: "int32", attention_mask: "int8", token_type_ids: "int8", special_tokens_mask: "int8",
};

/** The feature of a new column from its values, as datasets infers it (ints → int64, floats → float64, …). */
export function infer_feature(values: readonly unknown[], column: string): FeatureType {
  const sample = values.find((v) => v !== null && v !== undefined);
  if (sample === undefined) return new Value("string");
  if (Array.isArray(sample) || (ArrayBuffer.isView(sample) && !(sample instanceof Uint8Array))) {
    const inner = values.flatMap((v) => (v == null ? [] : Array.from(v as ArrayLike<unknown>)));
    const item = infer_feature(inner, column);
    return new Sequence(item instanceof Value && OPTIMIZED[column] && item.dtype === "int64" ? new Value(OPTIMIZED[column]!) : item);
  }
  if (typeof sample === "string") return new Value("string");
  if (typeof sample === "boolean") return new Value("bool");
  if (typeof sample === "bigint") return new Value("int64");
  if (typeof sample === "number") {
    const all_int = values.every((v) => v == null || (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint");
    if (!all_int) return new Value("float64");
    return new Value(OPTIMIZED[column] ?? "int64");
  }
  if (sample instanceof Uint8Array) return new Value("binary");
  if (typeof (sample as { tolist?: unknown }).tolist === "function") {
    return infer_feature(values.map((v) => (v as { tolist(): unknown }).tolist()), column);
  }
  throw new Error(`Column '${column}': cannot store values like ${JSON.stringify(sample).slice(0, 80)} (nested objects are not supported yet)`);
}

export function describe(feature: FeatureType): string {
  if (feature instanceof Value) return `Value('${feature.dtype}')`;
  if (feature instanceof ClassLabel) return `ClassLabel(${feature.names.length} names)`;
  return `Sequence(${describe(feature.feature)})`;
}
