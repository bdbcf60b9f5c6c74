// Column types of a dataset (datasets' Features): Value, ClassLabel, Sequence, their JSON form (the
// `huggingface` key of Arrow/parquet schema metadata) and the Arrow type that stores each.
import * as arrow from "apache-arrow";
import { inspect } from "node:util";

type Json = Record<string, any>;

const ARROW_TYPES: Record<string, () => arrow.DataType> = {
  bool: () => new arrow.Bool(),
  int8: () => new arrow.Int8(), int16: () => new arrow.Int16(), int32: () => new arrow.Int32(), int64: () => new arrow.Int64(),
  uint8: () => new arrow.Uint8(), uint16: () => new arrow.Uint16(), uint32: () => new arrow.Uint32(), uint64: () => new arrow.Uint64(),
  float16: () => new arrow.Float16(), float32: () => new arrow.Float32(), float64: () => new arrow.Float64(),
  string: () => new arrow.Utf8(), large_string: () => new arrow.LargeUtf8(),
  binary: () => new arrow.Binary(), large_binary: () => new arrow.LargeBinary(),
};
const DTYPE_ALIASES: Record<string, string> = { float: "float32", double: "float64", int: "int64", boolean: "bool", utf8: "string" };

export class Value {
  readonly _type = "Value";
  readonly dtype: string;

  constructor(dtype: string) {
    const name = DTYPE_ALIASES[dtype] ?? dtype;
    if (!ARROW_TYPES[name]) throw new Error(`Value('${dtype}'): unknown dtype; use one of ${Object.keys(ARROW_TYPES).join(", ")}`);
    this.dtype = name;
  }

  arrow_type(): arrow.DataType {
    return ARROW_TYPES[this.dtype]!();
  }

  to_json(): Json {
    return { dtype: this.dtype, _type: "Value" };
  }

  [inspect.custom](): string {
    return `Value('${this.dtype}')`;
  }
}

export class ClassLabel {
  readonly _type = "ClassLabel";
  readonly names: string[];
  private readonly index: Map<string, number>;

  constructor(options: { names?: string[]; num_classes?: number; names_file?: string }) {
    this.names = options.names ?? Array.from({ length: options.num_classes ?? 0 }, (_, i) => String(i));
    this.index = new Map(this.names.map((n, i) => [n, i]));
  }

  get num_classes(): number {
    return this.names.length;
  }

  str2int(values: string): number;
  str2int(values: string[]): number[];
  str2int(values: string | string[]): number | number[] {
    const one = (v: string) => {
      const i = this.index.get(v) ?? (/^\d+$/.test(v) && Number(v) < this.num_classes ? Number(v) : undefined);
      if (i === undefined) throw new Error(`Invalid string class label '${v}'; the labels are ${inspect(this.names)}`);
      return i;
    };
    return Array.isArray(values) ? values.map(one) : one(values);
  }

  int2str(values: number): string;
  int2str(values: number[]): string[];
  int2str(values: number | number[]): string | string[] {
    const one = (v: number) => {
      if (!Number.isInteger(v) || v < 0 || v >= this.num_classes) {
        throw new Error(`Invalid integer class label ${v}; it must be in 0..${this.num_classes - 1}`);
      }
      return this.names[v]!;
    };
    return Array.isArray(values) ? values.map(one) : one(values);
  }

  arrow_type(): arrow.DataType {
    return new arrow.Int64();
  }

  to_json(): Json {
    return { names: this.names, _type: "ClassLabel" };
  }

  [inspect.custom](): string {
    return `ClassLabel({ names: [${this.names.map((n) => inspect(n)).join(", ")}] })`;
  }
}

export class Sequence {
  readonly _type = "Sequence";
  readonly feature: FeatureType;
  readonly length: number;

  constructor(feature: FeatureType, options: { length?: number } = {}) {
    this.feature = feature;
    this.length = options.length ?? -1;
  }

  arrow_type(): arrow.DataType {
    return new arrow.List(new arrow.Field("item", this.feature.arrow_type(), true));
  }

  to_json(): Json {
    return { feature: this.feature.to_json(), ...(this.length >= 0 ? { length: this.length } : {}), _type: "Sequence" };
  }

  [inspect.custom](): string {
    return `Sequence(${inspect(this.feature)})`;
  }
}

export type FeatureType = Value | ClassLabel | Sequence;

/** The features of a dataset: column name → type, printed and ordered as the columns are. */
export class Features {
  [column: string]: FeatureType;

  constructor(columns: Record<string, FeatureType> = {}) {
    Object.assign(this, columns);
  }

  [inspect.custom](_depth: number, options: object): string {
    return inspect({ ...this }, { ...options, breakLength: Infinity });
  }

  static from_json(json: Json): Features {
    return new Features(Object.fromEntries(Object.entries(json).map(([k, v]) => [k, feature_from_json(v)])));
  }

  /** From an Arrow schema: its `huggingface` metadata when present, else the Arrow types. */
  static from_arrow_schema(schema: arrow.Schema): Features {
    const meta = schema.metadata.get("huggingface");
    const declared: Json = meta ? JSON.parse(meta)?.info?.features ?? {} : {};
    return new Features(Object.fromEntries(schema.fields.map((f) => [
      f.name, declared[f.name] ? feature_from_json(declared[f.name]) : feature_from_arrow(f.type, f.name),
    ])));
  }
}

// Methods live outside the class so that no column name can shadow them.
export function features_to_json(features: Features): Json {
  return Object.fromEntries(Object.entries(features).map(([k, v]) => [k, v.to_json()]));
}

export function arrow_schema(features: Features): arrow.Schema {
  const metadata = new Map([["huggingface", JSON.stringify({ info: { features: features_to_json(features) } })]]);
  return new arrow.Schema(Object.entries(features).map(([k, v]) => new arrow.Field(k, v.arrow_type(), true)), metadata);
}

export function feature_from_json(json: Json | Json[] | string): FeatureType {
  if (typeof json === "string") return new Value(json);
  if (Array.isArray(json)) return new Sequence(feature_from_json(json[0]!));
  switch (json._type) {
    case "Value": return new Value(json.dtype);
    case "ClassLabel": return new ClassLabel({ names: json.names, num_classes: json.num_classes });
    case "Sequence":
    case "List":
    case "LargeList":
      return new Sequence(feature_from_json(json.feature), { length: json.length });
    default:
      if (json.dtype) return feature_from_json(json.dtype);
      if (json.class_label) return new ClassLabel({ names: Object.values(json.class_label.names ?? {}) as string[] });
      if (json.list || json.sequence) return new Sequence(feature_from_json(json.list ?? json.sequence));
      throw new Error(`Unsupported feature type in dataset metadata: ${JSON.stringify(json).slice(0, 200)}`);
  }
}

/** The dataset card's `dataset_info.features` list ([{ name, dtype }]) as Features. */
export function features_from_card(list: Json[]): Features {
  return new Features(Object.fromEntries(list.map((f) => [f.name, feature_from_json(f)])));
}

function feature_from_arrow(type: arrow.DataType, column: string): FeatureType {
  if (arrow.DataType.isList(type) || arrow.DataType.isFixedSizeList(type)) {
    return new Sequence(feature_from_arrow(type.children[0]!.type, column));
  }
  const name = arrow_dtype_name(type);
  if (!name) throw new Error(`Column '${column}' has Arrow type ${type}, which has no datasets feature yet`);
  return new Value(name);
}

function arrow_dtype_name(type: arrow.DataType): string | undefined {
  if (arrow.DataType.isBool(type)) return "bool";
  if (arrow.DataType.isInt(type)) return `${type.isSigned ? "" : "u"}int${type.bitWidth}`;
  if (arrow.DataType.isFloat(type)) return ["float16", "float32", "float64"][type.precision];
  if (arrow.DataType.isUtf8(type)) return "string";
  if (arrow.DataType.isLargeUtf8(type)) return "large_string";
  if (arrow.DataType.isBinary(type)) return "binary";
  if (arrow.DataType.isLargeBinary(type)) return "large_binary";
  return undefined;
}
