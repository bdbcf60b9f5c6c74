// Finding a model's files: a local folder, or a Hub repo id downloaded into the shared cache.
import fs from "node:fs";
import path from "node:path";
import { hf_hub_download, type DownloadOptions } from "../hub/download.js";
import { EntryNotFoundError } from "../hub/errors.js";

export interface ResolveOptions extends Omit<DownloadOptions, "repo_type"> {}

/** The local path of `filename` for `idOrPath`, or null when the repo or folder does not have it. */
export async function resolveFile(idOrPath: string, filename: string, options: ResolveOptions = {}): Promise<string | null> {
  if (isLocalFolder(idOrPath)) {
    const file = path.join(idOrPath, filename);
    return fs.existsSync(file) ? file : null;
  }
  try {
    return await hf_hub_download(idOrPath, filename, { ...options, repo_type: "model" });
  } catch (err) {
    if (err instanceof EntryNotFoundError) return null;
    throw err;
  }
}

export function isLocalFolder(idOrPath: string): boolean {
  return fs.existsSync(idOrPath) && fs.statSync(idOrPath).isDirectory();
}

/** Writes a file by way of a temporary name, so a reader never sees half of it. */
export function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
