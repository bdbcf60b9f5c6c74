// accelerate's config file: the YAML `accelerate config` writes (or the JSON of `accelerate config default`) in
// $HF_HOME/accelerate, read by `accelerate launch` for its defaults. Same location, names and values, so one file
// serves both tools.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { hf_home } from "../hub/constants.js";
import { MIXED_PRECISION, type MixedPrecision } from "./accelerator.js";

export interface AccelerateConfig {
  compute_environment: "LOCAL_MACHINE";
  debug: boolean;
  distributed_type: "NO" | "MULTI_CPU" | "MULTI_GPU";
  downcast_bf16: "no";
  enable_cpu_affinity: boolean;
  machine_rank: number;
  main_training_function: string;
  mixed_precision: MixedPrecision;
  num_machines: number;
  num_processes: number;
  rdzv_backend: "static";
  same_network: boolean;
  tpu_env: string[];
  tpu_use_cluster: boolean;
  tpu_use_sudo: boolean;
  use_cpu: boolean;
}

export function default_config(): AccelerateConfig {
  return {
    compute_environment: "LOCAL_MACHINE",
    debug: false,
    distributed_type: "NO",
    downcast_bf16: "no",
    enable_cpu_affinity: false,
    machine_rank: 0,
    main_training_function: "main",
    mixed_precision: "no",
    num_machines: 1,
    num_processes: 1,
    rdzv_backend: "static",
    same_network: true,
    tpu_env: [],
    tpu_use_cluster: false,
    tpu_use_sudo: false,
    use_cpu: false,
  };
}

export function config_dir(): string {
  return process.env.ACCELERATE_CONFIG_DIR ?? path.join(hf_home(), "accelerate");
}

/** accelerate's choice: default_config.json when `config default` wrote one, else default_config.yaml */
export function default_config_file(): string {
  const json = path.join(config_dir(), "default_config.json");
  return fs.existsSync(json) ? json : path.join(config_dir(), "default_config.yaml");
}

/** The config at `file` (default: the default file) over the defaults; null when there is no such file. */
export function load_config(file: string = default_config_file()): AccelerateConfig | null {
  if (!fs.existsSync(file)) return null;
  let parsed: unknown;
  try {
    const text = fs.readFileSync(file, "utf8");
    parsed = file.endsWith(".json") ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new Error(`${file} is not a valid accelerate config (${(err as Error).message}): fix it or write a new one with \`finetune config\``);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error(`${file} is not a valid accelerate config (expected a mapping of settings): write a new one with \`finetune config\``);
  }
  const config = { ...default_config(), ...(parsed as Partial<AccelerateConfig>) };
  if (!MIXED_PRECISION.includes(config.mixed_precision)) {
    throw new Error(`${file}: mixed_precision must be "no", "fp16" or "bf16", got ${JSON.stringify(config.mixed_precision)}`);
  }
  if (!Number.isInteger(config.num_processes) || config.num_processes < 1) {
    throw new Error(`${file}: num_processes must be a positive integer, got ${JSON.stringify(config.num_processes)}`);
  }
  return config;
}

/** Writes the config (YAML, or JSON for a .json path) through a temporary file, so a crash leaves no half file. */
export function save_config(config: AccelerateConfig, file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const text = file.endsWith(".json") ? JSON.stringify(config, null, 2) + "\n" : YAML.stringify(config);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}
