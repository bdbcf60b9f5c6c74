// Which files make which split: the dataset card's `configs:` block, the refs/convert/parquet layout
// ({config}/{split}/NNNN.parquet), or datasets' default split names in file and folder names.
import { parse as parse_yaml } from "yaml";
import { features_from_card, type Features } from "./features.js";

export interface ConfigSpec {
  config_name: string;
  /** split → glob patterns, relative to the repository root */
  data_files: Record<string, string[]>;
  default?: boolean;
  features?: Features;
  builder_kwargs: Record<string, unknown>;
}

type Json = Record<string, any>;

/** The YAML metadata block of a dataset card (README.md), or {} when it has none. */
export function card_metadata(readme: string, where: string): Json {
  const m = /^---\r?\n([\s\S]*?)\r?\n---\s*(\r?\n|$)/.exec(readme);
  if (!m) return {};
  let meta: unknown;
  try {
    meta = parse_yaml(m[1]!);
  } catch (err) {
    throw new Error(`The dataset card ${where} has malformed YAML metadata: ${(err as Error).message.split("\n")[0]}. Fix the block between the '---' lines.`);
  }
  if (meta !== null && (typeof meta !== "object" || Array.isArray(meta))) {
    throw new Error(`The dataset card ${where} has malformed YAML metadata: expected a mapping of keys, got ${Array.isArray(meta) ? "a list" : typeof meta}.`);
  }
  return (meta ?? {}) as Json;
}

const SPLIT_KEYS = new Set(["config_name", "data_files", "data_dir", "default", "features"]);

export function configs_from_card(meta: Json, where: string): ConfigSpec[] {
  if (meta.configs === undefined) return [];
  if (!Array.isArray(meta.configs)) throw new Error(`The dataset card ${where}: 'configs' must be a list of { config_name, data_files }.`);
  const infos: Json[] = Array.isArray(meta.dataset_info) ? meta.dataset_info : meta.dataset_info ? [meta.dataset_info] : [];
  return meta.configs.map((c: Json, i: number) => {
    if (!c || typeof c !== "object" || (c.data_files === undefined && c.data_dir === undefined)) {
      throw new Error(`The dataset card ${where}: configs[${i}] needs 'data_files' (a list of { split, path }).`);
    }
    const name = String(c.config_name ?? "default");
    const info = infos.find((d) => (d.config_name ?? "default") === name);
    let features: Features | undefined;
    try {
      features = info?.features ? features_from_card(info.features) : undefined;
    } catch (err) {
      throw new Error(`The dataset card ${where}: dataset_info.features of config '${name}' is malformed: ${(err as Error).message}`);
    }
    const prefix = c.data_dir ? `${String(c.data_dir).replace(/\/+$/, "")}/` : "";
    return {
      config_name: name,
      default: c.default === true,
      data_files: c.data_files === undefined ? { train: [`${prefix}**`] } : normalize_data_files(c.data_files, prefix, where),
      features,
      builder_kwargs: Object.fromEntries(Object.entries(c).filter(([k]) => !SPLIT_KEYS.has(k))),
    };
  });
}

export type DataFilesArg = string | string[] | Record<string, string | string[]>;

export function normalize_data_files(value: DataFilesArg | Json[], prefix = "", where = "data_files"): Record<string, string[]> {
  const withPrefix = (p: string) => prefix + p;
  if (typeof value === "string") return { train: [withPrefix(value)] };
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === "string")) return { train: (value as string[]).map(withPrefix) };
    const out: Record<string, string[]> = {};
    for (const entry of value as Json[]) {
      if (!entry || typeof entry.split !== "string" || entry.path === undefined) {
        throw new Error(`${where}: every data_files entry needs 'split' and 'path' (got ${JSON.stringify(entry)})`);
      }
      out[entry.split] = [...(out[entry.split] ?? []), ...[entry.path].flat().map(String).map(withPrefix)];
    }
    return out;
  }
  return Object.fromEntries(Object.entries(value).map(([split, p]) => [split, [p].flat().map(String).map(withPrefix)]));
}

export function glob_regex(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === "*" && pattern[i + 1] === "*") {
      re += pattern[i + 2] === "/" ? "(?:.*/)?" : ".*";
      i += pattern[i + 2] === "/" ? 2 : 1;
    } else if (ch === "*") re += "[^/]*";
    else if (ch === "?") re += "[^/]";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export function match_files(patterns: string[], files: string[], where: string): string[] {
  const out: string[] = [];
  for (const p of patterns) {
    const re = glob_regex(p.replace(/^\.\//, ""));
    const hits = files.filter((f) => re.test(f)).sort();
    if (hits.length === 0) throw new Error(`No data file matches '${p}' in ${where}.`);
    for (const h of hits) if (!out.includes(h)) out.push(h);
  }
  return out;
}

const DATA_EXT = /\.(parquet|arrow|csv|tsv|jsonl|json|txt)$/;
const SPLIT_WORDS: Record<string, string[]> = {
  train: ["train", "training"], validation: ["validation", "valid", "dev", "val"], test: ["test", "testing", "eval", "evaluation"],
};

/** Configs when the card declares none: the parquet-conversion layout, else split names in paths. */
export function infer_configs(files: string[]): ConfigSpec[] {
  const data = files.filter((f) => DATA_EXT.test(f) && !f.split("/").some((p) => p.startsWith(".")));
  if (data.length === 0) return [];
  const converted = data.every((f) => f.endsWith(".parquet") && f.split("/").length === 3);
  if (converted) {
    const configs = new Map<string, Record<string, string[]>>();
    for (const f of data) {
      const [config, split_dir] = f.split("/") as [string, string];
      const split = split_dir.replace(/^partial-/, "");
      const splits = configs.get(config) ?? {};
      splits[split] = [`${config}/${split_dir}/*.parquet`];
      configs.set(config, splits);
    }
    return [...configs].map(([config_name, data_files]) => ({ config_name, data_files, builder_kwargs: {} }));
  }
  const data_files: Record<string, string[]> = {};
  for (const f of data) {
    const parts = f.toLowerCase().split("/");
    const split = Object.keys(SPLIT_WORDS).find((s) => parts.some((p) =>
      SPLIT_WORDS[s]!.some((w) => p === w || new RegExp(`(^|[-_. ])${w}([-_. ]|$)`).test(p))));
    (data_files[split ?? "train"] ??= []).push(f);
  }
  return [{ config_name: "default", data_files, builder_kwargs: {} }];
}

export function builder_for(file: string): string {
  const ext = /\.([a-z]+)$/.exec(file)?.[1];
  switch (ext) {
    case "parquet": return "parquet";
    case "arrow": return "arrow";
    case "csv": case "tsv": return "csv";
    case "json": case "jsonl": return "json";
    case "txt": return "text";
    default: throw new Error(`Cannot tell how to read '${file}' (supported: .parquet, .arrow, .csv, .tsv, .json, .jsonl, .txt)`);
  }
}
