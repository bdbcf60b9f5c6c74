// Dataset: rows of an Arrow table (in a cache file or in memory), optionally seen through an indices
// mapping (select / shuffle / filter), with datasets' transforms. Transforms that compute new values
// write a fingerprinted cache file next to the source's and reuse it on the next run.
import * as arrow from "apache-arrow";
import fs from "node:fs";
import path from "node:path";
import { inspect } from "node:util";
import { file_sink, memory_sink, read_arrow_file, type TableSink } from "./arrow_file.js";
import { build_column, column_values, infer_feature, to_js } from "./columns.js";
import { ClassLabel, Features, Sequence, Value, type FeatureType } from "./features.js";
import { hash_value, update_fingerprint } from "./fingerprint.js";
import { format_column, format_value, make_format, PYTHON_FORMAT, visible_columns, type Format } from "./formatting.js";
import { DatasetDict } from "./dataset_dict.js";
import { dataset_to_json, dataset_to_parquet, save_dataset } from "./disk.js";
import { permutation } from "./random.js";

export type Row = Record<string, any>;
export type Batch = Record<string, any[]>;

export interface DatasetInit {
  features?: Features;
  fingerprint?: string;
  indices?: Int32Array | null;
  /** the folder of the cache files this dataset comes from; transforms write theirs there */
  cache_dir?: string | null;
  format?: Format;
  split?: string | null;
}

export interface MapOptions {
  batched?: boolean;
  batch_size?: number | null;
  with_indices?: boolean;
  input_columns?: string | string[] | null;
  drop_last_batch?: boolean;
  remove_columns?: string | string[] | null;
  keep_in_memory?: boolean;
  load_from_cache_file?: boolean;
  cache_file_name?: string | null;
  writer_batch_size?: number;
  features?: Features | null;
  fn_kwargs?: Record<string, unknown> | null;
  new_fingerprint?: string | null;
  desc?: string;
  num_proc?: number | null;
}

export interface FilterOptions {
  batched?: boolean;
  batch_size?: number | null;
  with_indices?: boolean;
  input_columns?: string | string[] | null;
  fn_kwargs?: Record<string, unknown> | null;
}

export interface SplitOptions {
  test_size?: number | null;
  train_size?: number | null;
  shuffle?: boolean;
  seed?: number | null;
}

type MapFn = (input: any, ...rest: any[]) => Row | Batch | null | undefined | void;
type FilterFn = (input: any, ...rest: any[]) => unknown;

export class Dataset {
  /** @internal */ readonly _data: arrow.Table;
  /** @internal */ readonly _indices: Int32Array | null;
  /** @internal */ readonly _fingerprint: string;
  /** @internal */ readonly _cache_dir: string | null;
  private _features: Features;
  private _format: Format;
  readonly split: string | null;

  constructor(table: arrow.Table, init: DatasetInit = {}) {
    this._data = table;
    this._features = init.features ?? Features.from_arrow_schema(table.schema);
    this._indices = init.indices ?? null;
    this._fingerprint = init.fingerprint ?? hash_value("in-memory", Math.random(), Date.now());
    this._cache_dir = init.cache_dir ?? null;
    this._format = init.format ?? PYTHON_FORMAT;
    this.split = init.split ?? null;
  }

  static from_dict(mapping: Record<string, unknown[]>, options: { features?: Features } = {}): Dataset {
    const names = Object.keys(mapping);
    const lengths = new Set(names.map((n) => mapping[n]!.length));
    if (lengths.size > 1) throw new Error(`from_dict: columns have different lengths (${[...lengths].join(", ")})`);
    const features = new Features(Object.fromEntries(names.map((n) => [n, options.features?.[n] ?? infer_feature(mapping[n]!, n)])));
    const table = new arrow.Table(Object.fromEntries(names.map((n) => [n, build_column(mapping[n]!, features[n]!, n)])));
    return new Dataset(table, { features, fingerprint: hash_value("from_dict", mapping) });
  }

  static from_list(rows: Row[], options: { features?: Features } = {}): Dataset {
    const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    return Dataset.from_dict(Object.fromEntries(names.map((n) => [n, rows.map((r) => r[n] ?? null)])), options);
  }

  private derive(changes: Partial<DatasetInit> & { table?: arrow.Table }): Dataset {
    return new Dataset(changes.table ?? this._data, {
      features: changes.features ?? this._features,
      fingerprint: changes.fingerprint ?? this._fingerprint,
      indices: changes.indices !== undefined ? changes.indices : this._indices,
      cache_dir: changes.cache_dir !== undefined ? changes.cache_dir : this._cache_dir,
      format: changes.format ?? this._format,
      split: this.split,
    });
  }

  get num_rows(): number {
    return this._indices ? this._indices.length : this._data.numRows;
  }

  get column_names(): string[] {
    return Object.keys(this._features);
  }

  get features(): Features {
    return this._features;
  }

  get shape(): [number, number] {
    return [this.num_rows, this.column_names.length];
  }

  get format(): { type: string | null; format_kwargs: object; columns: string[]; output_all_columns: boolean } {
    return {
      type: this._format.type, format_kwargs: {}, columns: this._format.columns ?? this.column_names,
      output_all_columns: this._format.output_all_columns,
    };
  }

  get cache_files(): { filename: string }[] {
    return this._cache_dir ? fs.readdirSync(this._cache_dir).filter((f) => f.endsWith(".arrow")).map((f) => ({ filename: path.join(this._cache_dir!, f) })) : [];
  }

  get length(): number {
    return this.num_rows;
  }

  private physical(i: number): number {
    const n = this.num_rows;
    const k = i < 0 ? i + n : i;
    if (!Number.isInteger(k) || k < 0 || k >= n) throw new RangeError(`Index ${i} is out of range for a dataset of ${n} rows`);
    return this._indices ? this._indices[k]! : k;
  }

  private vector(name: string): arrow.Vector {
    const v = this._data.getChild(name);
    if (!v) throw new Error(`internal: column '${name}' missing from the Arrow table`);
    return v;
  }

  /** ds[i] in Python: one row. */
  at(i: number): Row {
    const row_index = this.physical(i);
    const row: Row = {};
    for (const name of visible_columns(this._format, this.column_names)) {
      row[name] = format_value(this._format, name, this._features[name]!, to_js(this.vector(name).get(row_index)));
    }
    return row;
  }

  /** Plain values of rows [start, end) of the given columns (no formatting). */
  private raw_batch(names: string[], start: number, end: number): Batch {
    const batch: Batch = {};
    for (const name of names) {
      const vec = this.vector(name);
      if (!this._indices) batch[name] = column_values(vec, start, end);
      else {
        const out = new Array(end - start);
        for (let i = start; i < end; i++) out[i - start] = to_js(vec.get(this._indices[i]!));
        batch[name] = out;
      }
    }
    return batch;
  }

  private formatted_batch(start: number, end: number): Batch {
    const names = visible_columns(this._format, this.column_names);
    const raw = this.raw_batch(names, start, end);
    return Object.fromEntries(names.map((n) => [n, format_column(this._format, n, this._features[n]!, raw[n]!) as any[]]));
  }

  /** ds["column"] in Python: every value of one column. */
  column(name: string): any {
    this.check_columns([name]);
    return format_column(this._format, name, this._features[name]!, this.raw_batch([name], 0, this.num_rows)[name]!);
  }

  /** ds[start:end] in Python: a batch, i.e. an object of columns. */
  slice(start = 0, end = this.num_rows): Batch {
    const n = this.num_rows;
    const s = Math.max(0, Math.min(n, start < 0 ? start + n : start));
    const e = Math.max(s, Math.min(n, end < 0 ? end + n : end));
    return this.formatted_batch(s, e);
  }

  *[Symbol.iterator](): Iterator<Row> {
    for (let i = 0; i < this.num_rows; i++) yield this.at(i);
  }

  *iter(batch_size: number, drop_last_batch = false): Generator<Batch> {
    for (let s = 0; s < this.num_rows; s += batch_size) {
      if (drop_last_batch && s + batch_size > this.num_rows) break;
      yield this.slice(s, s + batch_size);
    }
  }

  private check_columns(columns: string[]): void {
    const missing = columns.filter((c) => !this.column_names.includes(c));
    if (missing.length) {
      throw new Error(
        `Column name ${JSON.stringify(missing)} not in the dataset. Current columns in the dataset: ${JSON.stringify(this.column_names)}`,
      );
    }
  }

  map(fn: MapFn | null = null, options: MapOptions = {}): Dataset {
    const batched = options.batched ?? false;
    const batch_size = batched ? (options.batch_size == null || options.batch_size <= 0 ? this.num_rows || 1 : options.batch_size) : 1;
    const remove = as_list(options.remove_columns);
    const input_columns = options.input_columns == null ? null : as_list(options.input_columns);
    this.check_columns([...remove, ...(input_columns ?? [])]);
    const fingerprint = options.new_fingerprint ?? update_fingerprint(this._fingerprint, "map", {
      fn, batched, batch_size, with_indices: options.with_indices ?? false, input_columns, drop_last_batch: options.drop_last_batch ?? false,
      remove, features: options.features ? Object.keys(options.features) : null, fn_kwargs: options.fn_kwargs ?? null,
    });
    const cache_file = options.cache_file_name ?? (this._cache_dir && !options.keep_in_memory ? path.join(this._cache_dir, `cache-${fingerprint}.arrow`) : null);
    if (cache_file && (options.load_from_cache_file ?? true) && fs.existsSync(cache_file)) {
      return this.from_cache_file(cache_file, fingerprint);
    }
    const apply = (batch: Batch, indices: number[]): Batch => {
      const args = input_columns ? input_columns.map((c) => batch[c]) : [batch];
      const extra = options.fn_kwargs ? [options.fn_kwargs] : [];
      if (batched) return normalize_batch(fn ? fn(...[...args, ...(options.with_indices ? [indices] : []), ...extra] as [any]) : {}, indices.length);
      const rows: Row[] = [];
      for (let k = 0; k < indices.length; k++) {
        const example = input_columns ? input_columns.map((c) => batch[c]![k]) : [Object.fromEntries(Object.entries(batch).map(([c, v]) => [c, v[k]]))];
        const out = fn ? fn(...[...example, ...(options.with_indices ? [indices[k]] : []), ...extra] as [any]) : {};
        rows.push((out ?? {}) as Row);
      }
      return rows_to_batch(rows);
    };
    return this.transform_rows(apply, { remove, features: options.features ?? null, drop_last_batch: options.drop_last_batch ?? false, batch_size, cache_file, fingerprint });
  }

  private from_cache_file(file: string, fingerprint: string): Dataset {
    const table = read_arrow_file(file);
    return new Dataset(table, { fingerprint, cache_dir: path.dirname(file), format: this.rebased_format(Features.from_arrow_schema(table.schema)), split: this.split });
  }

  private rebased_format(features: Features): Format {
    const columns = this._format.columns?.filter((c) => c in features) ?? null;
    return { ...this._format, columns };
  }

  /** Runs `apply` over batches and writes kept input columns plus its outputs to a cache file or memory. */
  private transform_rows(
    apply: (batch: Batch, indices: number[]) => Batch,
    opts: { remove: string[]; features: Features | null; drop_last_batch: boolean; batch_size: number; cache_file: string | null; fingerprint: string },
  ): Dataset {
    let sink: TableSink | null = null;
    let features: Features | null = null;
    try {
      for (let start = 0; start < this.num_rows; start += opts.batch_size) {
        const end = Math.min(this.num_rows, start + opts.batch_size);
        if (opts.drop_last_batch && end - start < opts.batch_size) break;
        const input = this.raw_batch(this.column_names, start, end);
        const indices = Array.from({ length: end - start }, (_, k) => start + k);
        const output = apply(input, indices);
        const out_names = Object.keys(output);
        const out_len = out_names.length ? output[out_names[0]!]!.length : end - start;
        for (const name of out_names) {
          if (output[name]!.length !== out_len) {
            throw new Error(`map(): the function returned columns of different lengths (${name}: ${output[name]!.length}, ${out_names[0]}: ${out_len})`);
          }
        }
        const kept = this.column_names.filter((c) => !opts.remove.includes(c) && !(c in output));
        if (kept.length && out_len !== end - start) {
          throw new Error(
            `map(): the function returned ${out_len} rows for a batch of ${end - start}; to change the number of rows, ` +
              `remove the input columns with remove_columns (e.g. remove_columns: ${JSON.stringify(this.column_names)})`,
          );
        }
        const merged: Batch = { ...Object.fromEntries(kept.map((c) => [c, input[c]!])), ...output };
        if (!features) {
          features = new Features(Object.fromEntries(Object.keys(merged).map((c) => [
            c, opts.features?.[c] ?? (c in output ? infer_feature(merged[c]!, c) : this._features[c]!),
          ])));
          sink = opts.cache_file ? file_sink(opts.cache_file, features) : memory_sink(features);
        }
        const vectors: Record<string, arrow.Vector> = {};
        for (const c of Object.keys(features)) {
          if (!(c in merged)) throw new Error(`map(): the function stopped returning column '${c}' after the first batch`);
          vectors[c] = build_column(merged[c]!, features[c]!, c);
        }
        sink!.write(vectors);
      }
      if (!features) {
        features = new Features(Object.fromEntries(this.column_names.filter((c) => !opts.remove.includes(c)).map((c) => [c, this._features[c]!])));
        sink = opts.cache_file ? file_sink(opts.cache_file, features) : memory_sink(features);
      }
      const table = sink!.finish();
      return new Dataset(table, {
        features, fingerprint: opts.fingerprint, cache_dir: opts.cache_file ? path.dirname(opts.cache_file) : this._cache_dir,
        format: this.rebased_format(features), split: this.split,
      });
    } catch (err) {
      sink?.abort();
      throw err;
    }
  }

  filter(fn: FilterFn, options: FilterOptions = {}): Dataset {
    const batched = options.batched ?? false;
    const batch_size = options.batch_size == null || options.batch_size <= 0 ? this.num_rows || 1 : options.batch_size;
    const input_columns = options.input_columns == null ? null : as_list(options.input_columns);
    this.check_columns(input_columns ?? []);
    const keep: number[] = [];
    for (let start = 0; start < this.num_rows; start += batched ? batch_size : 1000) {
      const end = Math.min(this.num_rows, start + (batched ? batch_size : 1000));
      const batch = this.raw_batch(input_columns ?? this.column_names, start, end);
      const indices = Array.from({ length: end - start }, (_, k) => start + k);
      const extra = options.fn_kwargs ? [options.fn_kwargs] : [];
      let verdicts: unknown[];
      if (batched) {
        const args = input_columns ? input_columns.map((c) => batch[c]) : [batch];
        verdicts = to_plain_list(fn(...[...args, ...(options.with_indices ? [indices] : []), ...extra] as [any]));
      } else {
        verdicts = indices.map((idx, k) => {
          const example = input_columns ? input_columns.map((c) => batch[c]![k]) : [Object.fromEntries(Object.entries(batch).map(([c, v]) => [c, v[k]]))];
          return fn(...[...example, ...(options.with_indices ? [idx] : []), ...extra] as [any]);
        });
      }
      if (verdicts.length !== indices.length) throw new Error(`filter(): the function returned ${verdicts.length} booleans for ${indices.length} rows`);
      verdicts.forEach((v, k) => v && keep.push(indices[k]!));
    }
    return this.select(keep, update_fingerprint(this._fingerprint, "filter", { fn, batched, input_columns, with_indices: options.with_indices ?? false, fn_kwargs: options.fn_kwargs ?? null }));
  }

  select(indices: Iterable<number>, new_fingerprint?: string): Dataset {
    const wanted = Int32Array.from(indices, (i) => this.physical(i));
    return this.derive({ indices: wanted, fingerprint: new_fingerprint ?? update_fingerprint(this._fingerprint, "select", wanted) });
  }

  shuffle(options: { seed?: number | null } = {}): Dataset {
    const order = permutation(this.num_rows, options.seed ?? undefined);
    return this.select(order, options.seed == null ? undefined : update_fingerprint(this._fingerprint, "shuffle", options.seed));
  }

  train_test_split(options: SplitOptions = {}): DatasetDict {
    const n = this.num_rows;
    let { test_size = null, train_size = null } = options;
    if (test_size === null && train_size === null) test_size = 0.25;
    const count = (size: number, round: (x: number) => number) => (Number.isInteger(size) && size >= 1 ? size : round(size * n));
    let n_test = test_size !== null ? count(test_size, Math.ceil) : 0;
    let n_train = train_size !== null ? count(train_size, Math.floor) : n - n_test;
    if (test_size === null) n_test = n - n_train;
    if (n_train + n_test > n || n_train <= 0 || n_test <= 0) {
      throw new Error(`train_test_split: train_size=${train_size} and test_size=${test_size} do not fit ${n} rows (train ${n_train}, test ${n_test})`);
    }
    const order = options.shuffle ?? true ? permutation(n, options.seed ?? undefined) : Int32Array.from({ length: n }, (_, i) => i);
    const [test_idx, train_idx] = options.shuffle ?? true
      ? [order.subarray(0, n_test), order.subarray(n_test, n_test + n_train)]
      : [order.subarray(n_train, n_train + n_test), order.subarray(0, n_train)];
    return new DatasetDict({ train: this.select(train_idx), test: this.select(test_idx) });
  }

  remove_columns(column_names: string | string[]): Dataset {
    const remove = as_list(column_names);
    this.check_columns(remove);
    return this.select_columns(this.column_names.filter((c) => !remove.includes(c)), update_fingerprint(this._fingerprint, "remove_columns", remove));
  }

  select_columns(column_names: string | string[], new_fingerprint?: string): Dataset {
    const names = as_list(column_names);
    this.check_columns(names);
    const features = new Features(Object.fromEntries(names.map((c) => [c, this._features[c]!])));
    return this.derive({
      table: this._data.select(names), features, format: this.rebased_format(features),
      fingerprint: new_fingerprint ?? update_fingerprint(this._fingerprint, "select_columns", names),
    });
  }

  rename_column(original_column_name: string, new_column_name: string): Dataset {
    return this.rename_columns({ [original_column_name]: new_column_name });
  }

  rename_columns(column_mapping: Record<string, string>): Dataset {
    this.check_columns(Object.keys(column_mapping));
    const renamed = (c: string) => column_mapping[c] ?? c;
    const names = this.column_names.map(renamed);
    const clash = names.find((c, i) => names.indexOf(c) !== i);
    if (clash) throw new Error(`rename_columns: column '${clash}' would appear twice; current columns: ${JSON.stringify(this.column_names)}`);
    const table = new arrow.Table(Object.fromEntries(this.column_names.map((c) => [renamed(c), this.vector(c)])));
    const features = new Features(Object.fromEntries(this.column_names.map((c) => [renamed(c), this._features[c]!])));
    const format: Format = { ...this._format, columns: this._format.columns?.map(renamed) ?? null };
    return this.derive({ table, features, format, fingerprint: update_fingerprint(this._fingerprint, "rename_columns", column_mapping) });
  }

  cast_column(column: string, feature: FeatureType): Dataset {
    this.check_columns([column]);
    const source = this._features[column]!;
    const values = this.raw_batch([column], 0, this.num_rows)[column]!.map((v) => cast_value(v, source, feature, column));
    const flat = this.flatten_indices();
    const vectors = Object.fromEntries(flat.column_names.map((c) => [c, c === column ? build_column(values, feature, c) : flat.vector(c)]));
    const features = new Features(Object.fromEntries(flat.column_names.map((c) => [c, c === column ? feature : flat._features[c]!])));
    return flat.derive({ table: new arrow.Table(vectors), features, fingerprint: update_fingerprint(this._fingerprint, "cast_column", [column, feature]) });
  }

  /** Materializes an indices mapping into a new table (in memory). */
  flatten_indices(): Dataset {
    if (!this._indices) return this;
    const batch = this.raw_batch(this.column_names, 0, this.num_rows);
    const table = new arrow.Table(Object.fromEntries(this.column_names.map((c) => [c, build_column(batch[c]!, this._features[c]!, c)])));
    return this.derive({ table, indices: null });
  }

  set_format(type: string | null = null, columns: string[] | null = null, output_all_columns = false): void {
    this._format = make_format(type, columns, output_all_columns, this.column_names);
  }

  with_format(type: string | null = null, columns: string[] | null = null, output_all_columns = false): Dataset {
    return this.derive({ format: make_format(type, columns, output_all_columns, this.column_names) });
  }

  reset_format(): void {
    this._format = PYTHON_FORMAT;
  }

  save_to_disk(dataset_path: string): void {
    save_dataset(this, dataset_path);
  }

  /** Writes JSON lines (or one JSON array with lines: false); returns the bytes written. */
  to_json(path_or_buf: string, options: { lines?: boolean } = {}): number {
    return dataset_to_json(this, path_or_buf, options);
  }

  to_parquet(path_or_buf: string): number {
    return dataset_to_parquet(this, path_or_buf);
  }

  set_transform(): never {
    throw new Error("set_transform is not supported yet; use map()");
  }

  [inspect.custom](): string {
    return `Dataset({\n    features: ${py_list(this.column_names)},\n    num_rows: ${this.num_rows}\n})`;
  }
}

export function py_list(items: string[]): string {
  return `[${items.map((s) => `'${s}'`).join(", ")}]`;
}

function as_list(value: string | string[] | null | undefined): string[] {
  return value == null ? [] : Array.isArray(value) ? value : [value];
}

function to_plain_list(value: unknown): unknown[] {
  if (value && typeof value === "object" && typeof (value as { tolist?: unknown }).tolist === "function") {
    return (value as { tolist(): unknown[] }).tolist();
  }
  if (Array.isArray(value) || ArrayBuffer.isView(value)) return Array.from(value as ArrayLike<unknown>);
  throw new Error("filter(batched: true): the function must return a list of booleans");
}

function normalize_batch(out: unknown, rows: number): Batch {
  if (out === null || out === undefined) return {};
  if (typeof out !== "object") throw new Error(`map(): the function must return an object of columns, got ${typeof out}`);
  const batch: Batch = {};
  for (const [k, v] of Object.entries(out)) {
    if (Array.isArray(v)) batch[k] = v;
    else if (v && typeof (v as { tolist?: unknown }).tolist === "function") batch[k] = (v as { tolist(): any[] }).tolist();
    else if (ArrayBuffer.isView(v)) batch[k] = Array.from(v as unknown as ArrayLike<number>);
    else throw new Error(`map(batched: true): column '${k}' must be a list with one value per row (batch of ${rows}), got ${inspect(v)}`);
  }
  return batch;
}

function rows_to_batch(rows: Row[]): Batch {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(names.map((n) => [n, rows.map((r) => {
    const v = r[n];
    return v && typeof v === "object" && typeof v.tolist === "function" ? v.tolist() : v ?? null;
  })]));
}

function cast_value(value: unknown, from: FeatureType, to: FeatureType, column: string): unknown {
  if (value === null) return null;
  if (to instanceof ClassLabel) {
    if (typeof value === "string") return to.str2int(value);
    if (typeof value === "number") return value;
  }
  if (to instanceof Value) {
    if (from instanceof ClassLabel && to.dtype === "string") return from.int2str(value as number);
    if (to.dtype === "string") return String(value);
    if (to.dtype === "bool") return Boolean(value);
    const n = Number(value);
    if (Number.isNaN(n)) throw new Error(`cast_column('${column}'): cannot cast ${inspect(value)} to ${to.dtype}`);
    return /int/.test(to.dtype) ? Math.trunc(n) : n;
  }
  if (to instanceof Sequence && Array.isArray(value)) {
    const inner = from instanceof Sequence ? from.feature : from;
    return value.map((v) => cast_value(v, inner, to.feature, column));
  }
  throw new Error(`cast_column('${column}'): cannot cast ${inspect(from)} to ${inspect(to)}`);
}
