// save_to_disk / load_from_disk in datasets' folder layout (data-NNNNN-of-NNNNN.arrow, dataset_info.json,
// state.json; dataset_dict.json for a DatasetDict), plus to_json and to_parquet exports.
import fs from "node:fs";
import path from "node:path";
import { read_arrow_file, write_table } from "./arrow_file.js";
import { Dataset } from "./dataset.js";
import { DatasetDict } from "./dataset_dict.js";
import { Features, features_to_json } from "./features.js";
import { hash_value } from "./fingerprint.js";
import { parquet_bytes } from "./formats_io.js";

export function save_dataset(ds: Dataset, dataset_path: string): void {
  const flat = ds.flatten_indices();
  const tmp = `${dataset_path}.incomplete-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const data_file = "data-00000-of-00001.arrow";
  write_table(path.join(tmp, data_file), flat._data, flat.features);
  fs.writeFileSync(path.join(tmp, "dataset_info.json"), JSON.stringify({ features: features_to_json(flat.features) }, null, 2));
  const format = ds.format;
  fs.writeFileSync(path.join(tmp, "state.json"), JSON.stringify({
    _data_files: [{ filename: data_file }], _fingerprint: ds._fingerprint, _format_columns: format.type ? format.columns : null,
    _format_kwargs: {}, _format_type: format.type, _output_all_columns: format.output_all_columns, _split: ds.split,
  }, null, 2));
  fs.rmSync(dataset_path, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(path.resolve(dataset_path)), { recursive: true });
  fs.renameSync(tmp, dataset_path);
}

export function save_dataset_dict(dd: DatasetDict, dataset_dict_path: string): void {
  fs.mkdirSync(dataset_dict_path, { recursive: true });
  for (const [split, ds] of dd.items()) save_dataset(ds, path.join(dataset_dict_path, split));
  fs.writeFileSync(path.join(dataset_dict_path, "dataset_dict.json"), JSON.stringify({ splits: dd.keys() }));
}

/** Reads back what save_to_disk wrote: a Dataset, or a DatasetDict when the folder has dataset_dict.json. */
export function load_from_disk(dataset_path: string): Dataset | DatasetDict {
  const dict_file = path.join(dataset_path, "dataset_dict.json");
  if (fs.existsSync(dict_file)) {
    const { splits } = JSON.parse(fs.readFileSync(dict_file, "utf8")) as { splits: string[] };
    return new DatasetDict(Object.fromEntries(splits.map((s) => [s, load_one(path.join(dataset_path, s))])));
  }
  return load_one(dataset_path);
}

function load_one(dir: string): Dataset {
  const state_file = path.join(dir, "state.json");
  if (!fs.existsSync(state_file)) {
    throw new Error(`${dir} is neither a Dataset nor a DatasetDict folder (no state.json or dataset_dict.json); was it written by save_to_disk?`);
  }
  const state = JSON.parse(fs.readFileSync(state_file, "utf8"));
  const info = JSON.parse(fs.readFileSync(path.join(dir, "dataset_info.json"), "utf8"));
  const tables = (state._data_files as { filename: string }[]).map((f) => read_arrow_file(path.join(dir, f.filename)));
  const table = tables.slice(1).reduce((a, b) => a.concat(b), tables[0]!);
  const features = info.features ? Features.from_json(info.features) : undefined;
  const ds = new Dataset(table, { features, fingerprint: state._fingerprint ?? hash_value("disk", dir), cache_dir: dir, split: state._split ?? null });
  if (state._format_type) ds.set_format(state._format_type, state._format_columns, state._output_all_columns);
  return ds;
}

/** JSON lines (one object per row), as datasets' to_json writes by default. */
export function dataset_to_json(ds: Dataset, path_or_buf: string, options: { lines?: boolean } = {}): number {
  const lines = options.lines ?? true;
  const plain = ds.with_format(null);
  const rows: string[] = [];
  for (let s = 0; s < plain.num_rows; s += 1000) {
    const batch = plain.slice(s, s + 1000);
    const names = Object.keys(batch);
    const n = names.length ? batch[names[0]!]!.length : 0;
    for (let i = 0; i < n; i++) rows.push(JSON.stringify(Object.fromEntries(names.map((c) => [c, batch[c]![i]]))));
  }
  const text = lines ? rows.join("\n") + (rows.length ? "\n" : "") : `[${rows.join(",")}]`;
  fs.writeFileSync(path_or_buf, text);
  return Buffer.byteLength(text);
}

export function dataset_to_parquet(ds: Dataset, path_or_buf: string): number {
  const plain = ds.with_format(null);
  const bytes = Buffer.from(parquet_bytes(plain.features, plain.slice(0, plain.num_rows)));
  fs.writeFileSync(path_or_buf, bytes);
  return bytes.length;
}
