// Split strings as load_dataset takes them: "train", "train[:100]", "train[10%:20%]", "train+test".
import * as arrow from "apache-arrow";
import type { Dataset } from "./dataset.js";
import type { DatasetDict } from "./dataset_dict.js";

export function select_split(dict: DatasetDict, spec: string): Dataset {
  const parts = spec.split("+").map((s) => s.trim()).map((part) => {
    const m = /^([\w.-]+)(?:\[(-?\d+%?)?:(-?\d+%?)?\])?$/.exec(part);
    if (!m) throw new Error(`Bad split '${part}': use NAME, NAME[start:end] or NAME[start%:end%], joined with '+'`);
    const ds = dict[m[1]!];
    if (!ds) throw new Error(`Unknown split '${m[1]}'. Should be one of ${JSON.stringify(dict.keys())}.`);
    if (m[2] === undefined && m[3] === undefined) return ds;
    const bound = (b: string | undefined, fallback: number) => {
      if (b === undefined) return fallback;
      const v = b.endsWith("%") ? Math.round((Number(b.slice(0, -1)) / 100) * ds.num_rows) : Number(b);
      return Math.max(0, Math.min(ds.num_rows, v < 0 ? v + ds.num_rows : v));
    };
    const [s, e] = [bound(m[2], 0), bound(m[3], ds.num_rows)];
    return ds.select(Array.from({ length: Math.max(0, e - s) }, (_, k) => s + k));
  });
  if (parts.length === 1) return parts[0]!;
  const flat = parts.map((p) => p.flatten_indices());
  const table = flat.slice(1).reduce((acc: arrow.Table, p) => acc.concat(p._data), flat[0]!._data);
  const Ctor = flat[0]!.constructor as new (t: arrow.Table, init: object) => Dataset;
  return new Ctor(table, { features: flat[0]!.features });
}
