// DatasetDict: named splits, each a Dataset, reachable as dd["train"]; transforms apply to every split.
import { inspect } from "node:util";
import { Dataset, type FilterOptions, type MapOptions } from "./dataset.js";
import { save_dataset_dict } from "./disk.js";
import type { FeatureType } from "./features.js";

class DatasetDictBase {
  constructor(splits: Record<string, Dataset> = {}) {
    Object.assign(this, splits);
  }

  keys(): string[] {
    return Object.keys(this);
  }

  values(): Dataset[] {
    return Object.values(this) as Dataset[];
  }

  items(): [string, Dataset][] {
    return Object.entries(this) as [string, Dataset][];
  }

  private each(fn: (ds: Dataset, split: string) => Dataset): DatasetDict {
    return new DatasetDictBase(Object.fromEntries(this.items().map(([k, ds]) => [k, fn(ds, k)]))) as DatasetDict;
  }

  get num_rows(): Record<string, number> {
    return Object.fromEntries(this.items().map(([k, ds]) => [k, ds.num_rows]));
  }

  get column_names(): Record<string, string[]> {
    return Object.fromEntries(this.items().map(([k, ds]) => [k, ds.column_names]));
  }

  get shape(): Record<string, [number, number]> {
    return Object.fromEntries(this.items().map(([k, ds]) => [k, ds.shape]));
  }

  map(fn: Parameters<Dataset["map"]>[0] = null, options: MapOptions = {}): DatasetDict {
    if (options.cache_file_name) throw new Error("DatasetDict.map: use cache_file_names ({ split: file }) rather than cache_file_name");
    const names = (options as { cache_file_names?: Record<string, string> }).cache_file_names;
    return this.each((ds, split) => ds.map(fn, { ...options, cache_file_name: names?.[split] ?? null }));
  }

  filter(fn: Parameters<Dataset["filter"]>[0], options: FilterOptions = {}): DatasetDict {
    return this.each((ds) => ds.filter(fn, options));
  }

  remove_columns(column_names: string | string[]): DatasetDict {
    return this.each((ds) => ds.remove_columns(column_names));
  }

  select_columns(column_names: string | string[]): DatasetDict {
    return this.each((ds) => ds.select_columns(column_names));
  }

  rename_column(original_column_name: string, new_column_name: string): DatasetDict {
    return this.each((ds) => ds.rename_column(original_column_name, new_column_name));
  }

  rename_columns(column_mapping: Record<string, string>): DatasetDict {
    return this.each((ds) => ds.rename_columns(column_mapping));
  }

  cast_column(column: string, feature: FeatureType): DatasetDict {
    return this.each((ds) => ds.cast_column(column, feature));
  }

  shuffle(options: { seed?: number | null } = {}): DatasetDict {
    return this.each((ds) => ds.shuffle(options));
  }

  flatten_indices(): DatasetDict {
    return this.each((ds) => ds.flatten_indices());
  }

  set_format(type: string | null = null, columns: string[] | null = null, output_all_columns = false): void {
    for (const ds of this.values()) ds.set_format(type, columns, output_all_columns);
  }

  with_format(type: string | null = null, columns: string[] | null = null, output_all_columns = false): DatasetDict {
    return this.each((ds) => ds.with_format(type, columns, output_all_columns));
  }

  reset_format(): void {
    for (const ds of this.values()) ds.reset_format();
  }

  save_to_disk(dataset_dict_path: string): void {
    save_dataset_dict(this as unknown as DatasetDict, dataset_dict_path);
  }

  [inspect.custom](): string {
    const body = this.items().map(([k, ds]) => `    ${k}: ${inspect(ds).split("\n").join("\n    ")}`).join("\n");
    return `DatasetDict({\n${body}\n})`;
  }
}

/** Splits by name (dd["train"]) plus the methods above. */
export type DatasetDict = DatasetDictBase & { readonly [split: string]: Dataset };
export const DatasetDict = DatasetDictBase as unknown as {
  new (splits?: Record<string, Dataset>): DatasetDict;
  prototype: DatasetDictBase;
};
