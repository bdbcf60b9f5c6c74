// load_dataset: a Hub dataset (parquet and the other packaged formats, configs from the card) or local
// files through a packaged builder, prepared once into Arrow files in the datasets cache and reused
// from there without touching the network.
import * as arrow from "apache-arrow";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { list_repo_tree, repo_info } from "../hub/api.js";
import { RepoCache } from "../hub/cache.js";
import { hf_datasets_cache, hf_hub_offline } from "../hub/constants.js";
import { hf_hub_download } from "../hub/download.js";
import { EntryNotFoundError, HubConnectionError } from "../hub/errors.js";
import { read_arrow_file, write_table } from "./arrow_file.js";
import { Dataset, py_list } from "./dataset.js";
import { DatasetDict } from "./dataset_dict.js";
import {
  builder_for, card_metadata, configs_from_card, infer_configs, match_files, normalize_data_files, type ConfigSpec, type DataFilesArg,
} from "./data_files.js";
import { Features, features_to_json } from "./features.js";
import { hash_value } from "./fingerprint.js";
import { columns_to_table, infer_features, read_arrow, read_csv, read_json, read_parquet, read_text, type Columns } from "./formats_io.js";
import { select_split } from "./split_spec.js";

export interface LoadDatasetOptions {
  split?: string | null;
  data_files?: DataFilesArg | null;
  data_dir?: string | null;
  cache_dir?: string | null;
  revision?: string | null;
  token?: string | boolean | null;
  features?: Features | null;
  download_mode?: "reuse_dataset_if_exists" | "reuse_cache_if_exists" | "force_redownload" | null;
  /** options of the packaged builders: sep / delimiter / column_names (csv), field (json), keep_linebreaks / sample_by (text) */
  [builder_option: string]: unknown;
}

const PACKAGED = new Set(["csv", "json", "parquet", "arrow", "text"]);
const OPTION_KEYS = new Set(["split", "data_files", "data_dir", "cache_dir", "revision", "token", "features", "download_mode", "name"]);

// With a split the result is that split's Dataset; without one, the DatasetDict of every split.
export function load_dataset(path_or_name: string, name: string | null | undefined, options: LoadDatasetOptions & { split: string }): Promise<Dataset>;
export function load_dataset(path_or_name: string, options: LoadDatasetOptions & { split: string }): Promise<Dataset>;
export function load_dataset(path_or_name: string, name?: string | null | (LoadDatasetOptions & { split?: undefined }), options?: LoadDatasetOptions & { split?: undefined }): Promise<DatasetDict>;
export function load_dataset(path_or_name: string, name?: string | null | LoadDatasetOptions, options?: LoadDatasetOptions): Promise<DatasetDict | Dataset>;
export async function load_dataset(path_or_name: string, name?: string | null | LoadDatasetOptions, options: LoadDatasetOptions = {}): Promise<DatasetDict | Dataset> {
  if (name !== null && typeof name === "object") return load_dataset(path_or_name, null, name);
  const builder_options = Object.fromEntries(Object.entries(options).filter(([k]) => !OPTION_KEYS.has(k)));
  const cache_root = options.cache_dir ?? hf_datasets_cache();
  let prepared: Prepared;
  if (PACKAGED.has(path_or_name)) {
    if (!options.data_files) throw new Error(`load_dataset('${path_or_name}') needs data_files (a path, a list, or { split: path })`);
    prepared = await prepare_local(path_or_name, normalize_data_files(options.data_files), process.cwd(), builder_options, options, cache_root);
  } else if (fs.existsSync(path_or_name) && fs.statSync(path_or_name).isDirectory()) {
    prepared = await prepare_local_folder(path_or_name, name ?? null, builder_options, options, cache_root);
  } else {
    prepared = await prepare_hub(path_or_name, name ?? null, builder_options, options, cache_root);
  }
  const dict = open_prepared(prepared);
  return options.split ? select_split(dict, options.split) : dict;
}

interface Prepared {
  dir: string;
  /** file prefix of the split files: <name>-<split>.arrow */
  name: string;
}

interface DatasetInfoFile {
  dataset_name: string;
  config_name: string;
  features: Record<string, unknown>;
  splits: Record<string, { name: string; num_examples: number }>;
}

function open_prepared({ dir, name }: Prepared): DatasetDict {
  const info = JSON.parse(fs.readFileSync(path.join(dir, "dataset_info.json"), "utf8")) as DatasetInfoFile;
  const features = Features.from_json(info.features);
  const splits = Object.fromEntries(Object.keys(info.splits).map((split) => {
    const file = path.join(dir, `${name}-${split}.arrow`);
    const table = read_arrow_file(file);
    return [split, new Dataset(table, { features, fingerprint: hash_value("prepared", file), cache_dir: dir, split })];
  }));
  return new DatasetDict(splits);
}

function is_prepared(p: Prepared): boolean {
  return fs.existsSync(path.join(p.dir, "dataset_info.json"));
}

/**
 * Writes every split to a temporary folder and renames it into place, so a failure leaves nothing. Where another
 * process (a launch's) prepared the same folder meanwhile, its copy stays, since that process may be reading it;
 * `replace` (force_redownload) replaces it.
 */
function write_prepared(target: Prepared, info: Pick<DatasetInfoFile, "dataset_name" | "config_name">, tables: Record<string, arrow.Table>, features: Features, replace: boolean): void {
  const tmp = `${target.dir}.incomplete-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const splits: DatasetInfoFile["splits"] = {};
    for (const [split, table] of Object.entries(tables)) {
      write_table(path.join(tmp, `${target.name}-${split}.arrow`), table, features);
      splits[split] = { name: split, num_examples: table.numRows };
    }
    fs.writeFileSync(path.join(tmp, "dataset_info.json"), JSON.stringify({ ...info, features: features_to_json(features), splits }, null, 2));
    if (!replace && is_prepared(target)) {
      fs.rmSync(tmp, { recursive: true, force: true });
      return;
    }
    fs.rmSync(target.dir, { recursive: true, force: true });
    fs.renameSync(tmp, target.dir);
  } catch (err) {
    if (!replace && is_prepared(target)) {
      // renamed into place by another process between the check and the rename
      fs.rmSync(tmp, { recursive: true, force: true });
      return;
    }
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

// ---- reading split files

async function read_file(builder: string, file: string, options: Record<string, unknown>): Promise<Columns> {
  switch (builder) {
    case "parquet": return read_parquet(file);
    case "arrow": return read_arrow(file);
    case "csv": return read_csv(file, { sep: file.endsWith(".tsv") ? "\t" : undefined, ...options } as never);
    case "json": return read_json(file, options as never);
    case "text": return read_text(file, options as never);
    default: throw new Error(`Unknown builder '${builder}'; use one of ${[...PACKAGED].join(", ")}`);
  }
}

/** Reads each split's files into one Arrow table with one Features for all splits. */
async function build_tables(
  split_files: Record<string, { local: string; shown: string }[]>, builder: string | null, options: Record<string, unknown>,
  declared: Features | undefined,
): Promise<{ tables: Record<string, arrow.Table>; features: Features }> {
  let features = declared;
  const tables: Record<string, arrow.Table> = {};
  for (const [split, files] of Object.entries(split_files)) {
    const parts: arrow.Table[] = [];
    for (const { local, shown } of files) {
      const cols = await read_file(builder ?? builder_for(shown), local, options);
      const file_features = infer_features(cols);
      features ??= file_features;
      const missing = Object.keys(features).filter((c) => !cols.names.includes(c));
      const extra = cols.names.filter((c) => !(c in features!));
      if (missing.length || extra.length) {
        throw new Error(
          `${shown} (split '${split}') does not have the columns of the dataset: ` +
            `${missing.length ? `missing ${JSON.stringify(missing)}` : ""}${missing.length && extra.length ? ", " : ""}` +
            `${extra.length ? `unexpected ${JSON.stringify(extra)}` : ""}; expected ${JSON.stringify(Object.keys(features))}.`,
        );
      }
      try {
        parts.push(columns_to_table(cols, features));
      } catch (err) {
        throw new Error(`${shown} (split '${split}'): ${(err as Error).message}`);
      }
    }
    tables[split] = parts.length === 1 ? parts[0]! : parts.slice(1).reduce((a, b) => a.concat(b), parts[0]!);
  }
  return { tables, features: features ?? new Features() };
}

// ---- local files

async function prepare_local(
  builder: string, data_files: Record<string, string[]>, base: string, builder_options: Record<string, unknown>,
  options: LoadDatasetOptions, cache_root: string,
): Promise<Prepared> {
  const split_files: Record<string, { local: string; shown: string }[]> = {};
  for (const [split, patterns] of Object.entries(data_files)) {
    split_files[split] = patterns.flatMap((p) => expand_local(p, base)).map((f) => ({ local: f, shown: f }));
  }
  const stamp = Object.values(split_files).flat().map(({ local }) => {
    const st = fs.statSync(local);
    return [path.resolve(local), st.size, st.mtimeMs];
  });
  const key = hash_value(builder, data_files, stamp, builder_options, options.features ? features_to_json(options.features) : null);
  const target = { dir: path.join(cache_root, builder, `default-${key}`, "0.0.0", key), name: builder };
  if (is_prepared(target) && options.download_mode !== "force_redownload") return target;
  const { tables, features } = await build_tables(split_files, builder, builder_options, options.features ?? undefined);
  write_prepared(target, { dataset_name: builder, config_name: "default" }, tables, features, options.download_mode === "force_redownload");
  return target;
}

function expand_local(pattern: string, base: string): string[] {
  const abs = path.resolve(base, pattern);
  if (!/[*?]/.test(pattern)) {
    if (!fs.existsSync(abs)) throw new Error(`Data file ${abs} does not exist`);
    return [abs];
  }
  const root = abs.slice(0, abs.search(/[*?]/)).replace(/[^/]*$/, "");
  const files = walk(root).map((f) => path.relative(root, f).split(path.sep).join("/"));
  return match_files([path.relative(root, abs).split(path.sep).join("/")], files, root).map((f) => path.join(root, f));
}

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(path.join(dir, d.name)) : d.isFile() ? [path.join(dir, d.name)] : []);
}

async function prepare_local_folder(
  dir: string, name: string | null, builder_options: Record<string, unknown>, options: LoadDatasetOptions, cache_root: string,
): Promise<Prepared> {
  const files = walk(dir).map((f) => path.relative(dir, f).split(path.sep).join("/"));
  const readme = fs.existsSync(path.join(dir, "README.md")) ? fs.readFileSync(path.join(dir, "README.md"), "utf8") : "";
  const config = pick_config(dir, name, configs_for(readme, path.join(dir, "README.md"), files), options);
  const data_files = options.data_files ? normalize_data_files(options.data_files) : config.data_files;
  const resolved = Object.fromEntries(Object.entries(data_files).map(([split, patterns]) => [split, match_files(patterns, files, dir)]));
  const builder = builder_for(Object.values(resolved).flat()[0] ?? "");
  return prepare_local(builder, resolved, dir, { ...config.builder_kwargs, ...builder_options }, { ...options, features: options.features ?? config.features }, cache_root);
}

function configs_for(readme: string, where: string, files: string[]): ConfigSpec[] {
  const declared = configs_from_card(card_metadata(readme, where), where);
  return declared.length ? declared : infer_configs(files);
}

function pick_config(id: string, name: string | null, configs: ConfigSpec[], options: LoadDatasetOptions): ConfigSpec {
  if (options.data_files && !name) return { config_name: "default", data_files: {}, builder_kwargs: {} };
  if (configs.length === 0) throw new Error(`'${id}' has no data files (parquet, arrow, csv, json, jsonl or txt) and no 'configs' in its card.`);
  const names = configs.map((c) => c.config_name);
  if (name) {
    const found = configs.find((c) => c.config_name === name);
    if (!found) throw new Error(`BuilderConfig '${name}' not found for '${id}'. Available: ${py_list(names)}`);
    return found;
  }
  const chosen = configs.find((c) => c.default) ?? (configs.length === 1 ? configs[0] : undefined);
  if (!chosen) {
    throw new Error(
      `Config name is missing. Please pick one among the available configs: ${py_list(names)}\n` +
        `Example of usage:\n\tload_dataset('${id}', '${names[0]}')`,
    );
  }
  return chosen;
}

// ---- Hub

async function prepare_hub(
  id: string, name: string | null, builder_options: Record<string, unknown>, options: LoadDatasetOptions, cache_root: string,
): Promise<Prepared> {
  const revision = options.revision ?? "main";
  const token = options.token ?? undefined;
  const repo_cache = new RepoCache(id, "dataset");
  const folder = path.join(cache_root, id.split("/").join("___"));
  const key = name ?? "default";
  const reuse = options.download_mode !== "force_redownload";
  const known_commit = repo_cache.commit_for(revision);
  const cached = known_commit ? { dir: path.join(folder, key, "0.0.0", known_commit), name: id.split("/").pop()! } : undefined;
  // A dataset prepared from the commit this revision last resolved to is used without asking the Hub.
  if (cached && reuse && is_prepared(cached) && !options.data_files && !options.data_dir) return cached;
  if (hf_hub_offline()) {
    throw new HubConnectionError(
      `Cannot load dataset '${id}'${name ? ` (config '${name}')` : ""} offline: HF_HUB_OFFLINE=1 and no prepared copy at ` +
        `revision '${revision}' in ${folder}. Run it once with network access, or point HF_HOME / HF_DATASETS_CACHE at a cache that has it.`,
    );
  }
  const info = await repo_info(id, { repo_type: "dataset", revision, token });
  const target = { dir: path.join(folder, key, "0.0.0", info.sha), name: id.split("/").pop()! };
  if (reuse && is_prepared(target) && !options.data_files && !options.data_dir) {
    repo_cache.write_ref(revision, info.sha);
    return target;
  }
  const files = (await list_repo_tree(id, { repo_type: "dataset", revision: info.sha, token })).map((f) => f.path);
  const where = `of dataset '${id}'`;
  let readme = "";
  if (files.includes("README.md")) {
    readme = fs.readFileSync(await download(id, "README.md", info.sha, revision, options), "utf8");
  }
  const data_dir_prefix = options.data_dir ? `${options.data_dir.replace(/\/+$/, "")}/` : "";
  const config = pick_config(id, name, configs_for(readme, `README.md ${where}`, files), options);
  const data_files = options.data_files
    ? normalize_data_files(options.data_files, data_dir_prefix)
    : data_dir_prefix ? { train: [`${data_dir_prefix}**`] } : config.data_files;
  const split_files: Record<string, { local: string; shown: string }[]> = {};
  for (const [split, patterns] of Object.entries(data_files)) {
    const matched = match_files(patterns, files, `dataset '${id}' at revision '${revision}'`);
    split_files[split] = [];
    for (const file of matched) {
      split_files[split].push({ local: await download(id, file, info.sha, revision, options), shown: `${id}/${file}` });
    }
  }
  const { tables, features } = await build_tables(split_files, null, { ...config.builder_kwargs, ...builder_options }, options.features ?? config.features);
  if (options.data_files || options.data_dir) {
    const custom = hash_value(data_files);
    const alt = { dir: path.join(folder, `${key}-${custom}`, "0.0.0", info.sha), name: target.name };
    write_prepared(alt, { dataset_name: target.name, config_name: key }, tables, features, !reuse);
    return alt;
  }
  write_prepared(target, { dataset_name: target.name, config_name: config.config_name }, tables, features, !reuse);
  return target;
}

async function download(id: string, file: string, commit: string, revision: string, options: LoadDatasetOptions): Promise<string> {
  const local = await hf_hub_download(id, file, {
    repo_type: "dataset", revision: commit, token: options.token ?? undefined,
    force_download: options.download_mode === "force_redownload",
  }).catch((err) => {
    if (err instanceof EntryNotFoundError) throw new Error(`${file} of dataset '${id}' is listed but cannot be downloaded: ${err.message}`);
    throw err;
  });
  new RepoCache(id, "dataset").write_ref(revision, commit);
  return local;
}
