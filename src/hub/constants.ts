// Environment settings shared with Python's huggingface_hub, read at call time so tests can change them.
import os from "node:os";
import path from "node:path";

export const DEFAULT_ENDPOINT = "https://huggingface.co";

export function hf_endpoint(): string {
  return (process.env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, "");
}

export function hf_home(): string {
  if (process.env.HF_HOME) return process.env.HF_HOME;
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(xdg, "huggingface");
}

export function hf_hub_cache(): string {
  return process.env.HF_HUB_CACHE || process.env.HUGGINGFACE_HUB_CACHE || path.join(hf_home(), "hub");
}

export function hf_datasets_cache(): string {
  return process.env.HF_DATASETS_CACHE || path.join(hf_home(), "datasets");
}

function truthy(value: string | undefined): boolean {
  return ["1", "ON", "YES", "TRUE"].includes((value ?? "").toUpperCase());
}

export function hf_hub_offline(): boolean {
  return truthy(process.env.HF_HUB_OFFLINE) || truthy(process.env.HF_DATASETS_OFFLINE);
}

export function hf_token(explicit?: string | boolean): string | undefined {
  if (typeof explicit === "string") return explicit;
  if (explicit === false) return undefined;
  return process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN || undefined;
}

export type RepoType = "model" | "dataset" | "space";
