// Reading and writing the file formats of the packaged builders: parquet, arrow, csv, json / json lines, text.
import * as arrow from "apache-arrow";
import fs from "node:fs";
import { parquetMetadata, parquetRead, parquetSchema, type FileMetaData, type SchemaTree } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { parquetWriteBuffer } from "hyparquet-writer";
import { build_column, infer_feature } from "./columns.js";
import { ClassLabel, Features, Sequence, Value, features_to_json, type FeatureType } from "./features.js";

export interface Columns {
  names: string[];
  values: Record<string, unknown[]>;
  /** features declared by the file itself (parquet/arrow `huggingface` metadata or types) */
  features?: Features;
}

export function columns_to_table(cols: Columns, features: Features): arrow.Table {
  return new arrow.Table(Object.fromEntries(Object.keys(features).map((n) => {
    if (!(n in cols.values)) throw new Error(`missing column '${n}'`);
    return [n, build_column(cols.values[n]!, features[n]!, n)];
  })));
}

export function infer_features(cols: Columns): Features {
  return cols.features ?? new Features(Object.fromEntries(cols.names.map((n) => [n, infer_feature(cols.values[n]!, n)])));
}

// ---- parquet

export async function read_parquet(file: string): Promise<Columns> {
  const buf = fs.readFileSync(file);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
  let metadata: FileMetaData;
  try {
    metadata = parquetMetadata(ab);
  } catch (err) {
    throw new Error(`${file} is not a valid parquet file (${(err as Error).message})`);
  }
  const tree = parquetSchema(metadata);
  const names = tree.children.map((c) => c.element.name);
  const rows = Number(metadata.num_rows);
  const values: Record<string, unknown[]> = Object.fromEntries(names.map((n) => [n, new Array(rows)]));
  try {
    await parquetRead({
      file: ab, metadata, compressors,
      onChunk: ({ columnName, columnData, rowStart }) => {
        const target = values[columnName];
        if (!target) return;
        for (let i = 0; i < columnData.length; i++) target[rowStart + i] = columnData[i];
      },
    });
  } catch (err) {
    throw new Error(`${file} is not a valid parquet file (${(err as Error).message})`);
  }
  const hf = metadata.key_value_metadata?.find((kv) => kv.key === "huggingface")?.value;
  const declared = hf ? Features.from_json(JSON.parse(hf)?.info?.features ?? {}) : undefined;
  const features = new Features(Object.fromEntries(tree.children.map((c) => [
    c.element.name, declared?.[c.element.name] ?? feature_of_parquet(c, file),
  ])));
  return { names, values, features };
}

function feature_of_parquet(node: SchemaTree, file: string): FeatureType {
  const el = node.element;
  if (el.converted_type === "LIST" || el.logical_type?.type === "LIST") {
    const item = node.children[0]?.children[0] ?? node.children[0]!;
    return new Sequence(feature_of_parquet(item, file));
  }
  if (node.children.length) throw new Error(`${file}: column '${el.name}' is a struct, which is not supported yet`);
  switch (el.type) {
    case "BOOLEAN": return new Value("bool");
    case "INT32": return new Value({ INT_8: "int8", INT_16: "int16", UINT_8: "uint8", UINT_16: "uint16", UINT_32: "uint32" }[el.converted_type as string] ?? "int32");
    case "INT64": return new Value(el.converted_type === "UINT_64" ? "uint64" : "int64");
    case "FLOAT": return new Value("float32");
    case "DOUBLE": return new Value("float64");
    case "BYTE_ARRAY": return new Value(el.converted_type === "UTF8" || el.logical_type?.type === "STRING" ? "string" : "binary");
    default: throw new Error(`${file}: column '${el.name}' has parquet type ${el.type}, which is not supported yet`);
  }
}

export function parquet_bytes(features: Features, batch: Record<string, unknown[]>): ArrayBuffer {
  const columnData = Object.entries(features).map(([name, f]) => {
    const type = parquet_type(f);
    const data = type === "INT64" ? batch[name]!.map((v) => (v === null ? null : BigInt(v as number))) : batch[name]!;
    return { name, data, type };
  });
  return parquetWriteBuffer({
    columnData: columnData as never,
    kvMetadata: [{ key: "huggingface", value: JSON.stringify({ info: { features: features_to_json(features) } }) }],
  });
}

function parquet_type(f: FeatureType): string | undefined {
  if (f instanceof ClassLabel) return "INT64";
  if (f instanceof Value) {
    return ({ string: "STRING", large_string: "STRING", bool: "BOOLEAN", int32: "INT32", int64: "INT64", float32: "FLOAT", float64: "DOUBLE" } as Record<string, string>)[f.dtype];
  }
  return undefined; // lists: let the writer infer
}

// ---- arrow

export function read_arrow(file: string): Columns {
  let table: arrow.Table;
  try {
    table = arrow.tableFromIPC(fs.readFileSync(file));
  } catch (err) {
    throw new Error(`${file} is not a valid Arrow IPC file (${(err as Error).message})`);
  }
  const features = Features.from_arrow_schema(table.schema);
  const names = table.schema.fields.map((f) => f.name);
  return { names, features, values: Object.fromEntries(names.map((n) => [n, Array.from(table.getChild(n)!, (v) => plain(v))])) };
}

function plain(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (v instanceof arrow.Vector) return Array.from(v, plain);
  return v;
}

// ---- text formats

export function read_text(file: string, options: { keep_linebreaks?: boolean; sample_by?: string } = {}): Columns {
  const content = fs.readFileSync(file, "utf8");
  let rows: string[];
  if (options.sample_by === "document") rows = [content];
  else if (options.sample_by === "paragraph") rows = content.split(/\n\s*\n/).filter((p) => p.trim() !== "");
  else {
    rows = options.keep_linebreaks ? content.split(/(?<=\n)/) : content.split(/\r?\n/);
    if (rows.length && rows[rows.length - 1] === "") rows.pop();
  }
  return { names: ["text"], values: { text: rows }, features: new Features({ text: new Value("string") }) };
}

export function read_json(file: string, options: { field?: string } = {}): Columns {
  const content = fs.readFileSync(file, "utf8");
  let records: Record<string, unknown>[];
  const trimmed = content.trimStart();
  try {
    if (options.field || trimmed.startsWith("[") || (trimmed.startsWith("{") && !content.trim().includes("\n"))) {
      let parsed = JSON.parse(content);
      if (options.field) parsed = parsed[options.field];
      if (Array.isArray(parsed)) records = parsed;
      else if (parsed && typeof parsed === "object" && Object.values(parsed).every(Array.isArray)) {
        return columns_from_dict(parsed as Record<string, unknown[]>);
      } else records = [parsed];
    } else {
      records = content.split(/\r?\n/).map((line, i) => {
        if (line.trim() === "") return null;
        try {
          return JSON.parse(line);
        } catch (err) {
          throw new Error(`line ${i + 1}: ${(err as Error).message}`);
        }
      }).filter((r) => r !== null);
    }
  } catch (err) {
    throw new Error(`${file} is not valid JSON or JSON lines: ${(err as Error).message}`);
  }
  const names = [...new Set(records.flatMap((r) => Object.keys(r)))];
  return { names, values: Object.fromEntries(names.map((n) => [n, records.map((r) => r[n] ?? null)])) };
}

function columns_from_dict(dict: Record<string, unknown[]>): Columns {
  return { names: Object.keys(dict), values: dict };
}

/** CSV (RFC 4180 quoting) with a header row; numbers become numbers when a whole column parses. */
export function read_csv(file: string, options: { sep?: string; delimiter?: string; column_names?: string[] } = {}): Columns {
  const sep = options.delimiter ?? options.sep ?? ",";
  const records = parse_csv(fs.readFileSync(file, "utf8"), sep);
  const header = options.column_names ?? records.shift() ?? [];
  const values: Record<string, unknown[]> = Object.fromEntries(header.map((h) => [h, []]));
  records.forEach((rec, i) => {
    if (rec.length !== header.length) {
      throw new Error(`${file}: row ${i + 2} has ${rec.length} fields but the header has ${header.length}`);
    }
    header.forEach((h, k) => values[h]!.push(rec[k]));
  });
  for (const h of header) values[h] = numeric(values[h] as string[]);
  return { names: header, values };
}

function numeric(column: string[]): unknown[] {
  const non_empty = column.filter((v) => v !== "");
  if (non_empty.length === 0) return column.map(() => null);
  if (non_empty.every((v) => /^[-+]?\d+$/.test(v))) return column.map((v) => (v === "" ? null : Number(v)));
  if (non_empty.every((v) => v.trim() !== "" && !Number.isNaN(Number(v)))) return column.map((v) => (v === "" ? null : Number(v)));
  if (non_empty.every((v) => v === "True" || v === "False")) return column.map((v) => (v === "" ? null : v === "True"));
  return column.map((v) => v);
}

function parse_csv(text: string, sep: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && field === "") quoted = true;
    else if (ch === sep) { row.push(field); field = ""; }
    else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      row.push(field); field = "";
      rows.push(row); row = [];
    } else field += ch;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows.filter((r) => !(r.length === 1 && r[0] === ""));
}
