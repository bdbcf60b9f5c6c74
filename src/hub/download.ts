// hf_hub_download: one file into the shared cache, resuming interrupted transfers and checking LFS hashes.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import lockfile from "proper-lockfile";
import { hf_endpoint, hf_hub_offline, type RepoType } from "./constants.js";
import { RepoCache } from "./cache.js";
import { EntryNotFoundError, HfHubError, HubConnectionError, LocalEntryNotFoundError } from "./errors.js";
import { auth_headers, connection_error, hub_fetch, type RequestContext } from "./http.js";
import { download_progress } from "./progress.js";

export interface DownloadOptions {
  repo_type?: RepoType;
  revision?: string;
  cache_dir?: string;
  local_files_only?: boolean;
  force_download?: boolean;
  token?: string | boolean;
}

const MAX_ATTEMPTS = 5;
// Waiting for another process's download of the same blob: polls up to about an hour (the holder keeps its lock
// fresh; one that died leaves it stale after 10 s, and then it is taken over).
const LOCK_RETRIES = { retries: 3600, factor: 1.2, minTimeout: 50, maxTimeout: 1000 };
const SHA256 = /^[0-9a-f]{64}$/;

export function hf_hub_url(repo_id: string, filename: string, repo_type: RepoType = "model", revision = "main"): string {
  const prefix = repo_type === "model" ? "" : `${repo_type}s/`;
  const file = filename.split("/").map(encodeURIComponent).join("/");
  return `${hf_endpoint()}/${prefix}${repo_id}/resolve/${encodeURIComponent(revision)}/${file}`;
}

/** Returns the path of the file inside snapshots/<commit>/, downloading it unless the cache has it. */
export async function hf_hub_download(repo_id: string, filename: string, opts: DownloadOptions = {}): Promise<string> {
  const repo_type = opts.repo_type ?? "model";
  const revision = opts.revision ?? "main";
  const cache = new RepoCache(repo_id, repo_type, opts.cache_dir);
  const cached = cache.cached_file(revision, filename);
  if (cached && !opts.force_download && cache.commit_for(revision) === revision) return cached;

  if (opts.local_files_only || hf_hub_offline()) {
    if (cached) return cached;
    const why = opts.local_files_only ? "`local_files_only` is set" : "HF_HUB_OFFLINE=1";
    const missing = cache.known_missing(revision, filename) ? " (the repository has no such file)" : "";
    throw new LocalEntryNotFoundError(
      `'${filename}' of ${repo_type} '${repo_id}' (revision '${revision}') is not in the cache ${cache.root} ` +
        `and ${why}${missing}. Run once with network access (unset HF_HUB_OFFLINE / local_files_only) to download it, ` +
        "or point HF_HOME / HF_HUB_CACHE at a cache that has it.",
    );
  }

  const ctx: RequestContext = { repo_id, repo_type, revision, filename, token: opts.token };
  let head: Response;
  try {
    head = await hub_fetch(hf_hub_url(repo_id, filename, repo_type, revision), {
      method: "HEAD", headers: { "Accept-Encoding": "identity" },
    }, ctx);
  } catch (err) {
    if (err instanceof HubConnectionError && cached) return cached; // as Python: fall back to the cache when unreachable
    if (err instanceof EntryNotFoundError) {
      const commit = err.commit ?? cache.commit_for(revision);
      if (commit) {
        cache.write_ref(revision, commit);
        cache.mark_missing(commit, filename);
      }
    }
    throw err;
  }
  const commit = head.headers.get("x-repo-commit");
  const etag = normalize_etag(head.headers.get("x-linked-etag") ?? head.headers.get("etag"));
  const size = Number(head.headers.get("x-linked-size") ?? head.headers.get("content-length"));
  if (!commit || !etag || !Number.isFinite(size)) {
    throw new HfHubError(
      `The server at ${hf_endpoint()} did not send X-Repo-Commit / ETag / Content-Length for '${filename}' of '${repo_id}'; ` +
        "is HF_ENDPOINT a Hub (or a mirror of one)?",
    );
  }
  cache.write_ref(revision, commit);
  const pointer = cache.snapshot(commit, filename);
  if (fs.existsSync(pointer) && !opts.force_download) return pointer;
  const blob = cache.blob(etag);
  if (!fs.existsSync(blob) || opts.force_download) {
    fs.mkdirSync(path.dirname(blob), { recursive: true });
    // as huggingface_hub's lock file: processes sharing the cache (a launch's) download each blob once, in turn
    const release = await lockfile.lock(blob, { realpath: false, lockfilePath: `${blob}.lock`, retries: LOCK_RETRIES });
    try {
      if (!fs.existsSync(blob) || opts.force_download) await download_blob(head.url, blob, { size, etag, ctx });
    } finally {
      await release();
    }
  }
  return cache.link_snapshot(commit, filename, etag);
}

function normalize_etag(etag: string | null): string | undefined {
  return etag?.replace(/^W\//, "").replace(/"/g, "") || undefined;
}

interface BlobTarget {
  size: number;
  etag: string;
  ctx: RequestContext;
}

/** Streams into <blob>.incomplete, resuming with Range after a broken connection; renames only when complete. */
async function download_blob(url: string, blob: string, target: BlobTarget): Promise<void> {
  const partial = `${blob}.incomplete`;
  let last_error: unknown;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(Math.min(100 * 2 ** attempt, 2000));
    try {
      await fetch_into(url, partial, target);
      if (fs.statSync(partial).size === target.size) {
        last_error = undefined;
        break;
      }
      last_error = new Error(`received ${fs.statSync(partial).size} of ${target.size} bytes`);
    } catch (err) {
      if (err instanceof HfHubError && !(err instanceof HubConnectionError)) throw err;
      last_error = err;
    }
  }
  if (last_error !== undefined) {
    const have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    throw new HubConnectionError(
      `Download of '${target.ctx.filename}' from '${target.ctx.repo_id}' was interrupted ${MAX_ATTEMPTS} times ` +
        `(${have} of ${target.size} bytes kept in ${partial}): ${(last_error as Error).message ?? last_error}. ` +
        "Run again to resume, or set HF_ENDPOINT to a mirror.",
    );
  }
  if (SHA256.test(target.etag)) {
    const actual = await sha256_file(partial);
    if (actual !== target.etag) {
      fs.rmSync(partial, { force: true });
      throw new HfHubError(
        `'${target.ctx.filename}' of '${target.ctx.repo_id}' arrived corrupted: sha256 ${actual}, the Hub says ${target.etag}. ` +
          "The partial file was removed; run again to download it afresh.",
      );
    }
  }
  fs.renameSync(partial, blob);
}

async function fetch_into(url: string, partial: string, target: BlobTarget): Promise<void> {
  let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  if (have > target.size) {
    fs.rmSync(partial);
    have = 0;
  }
  if (have === target.size) return;
  const headers: Record<string, string> = { ...auth_headers(target.ctx.token), "Accept-Encoding": "identity" };
  if (have > 0) headers.Range = `bytes=${have}-`;
  let resp: Response;
  try {
    resp = await fetch(url, { headers });
  } catch (err) {
    throw connection_error(url, err);
  }
  if (resp.status !== 200 && resp.status !== 206) {
    await hub_fetch(url, { headers }, target.ctx); // raises the typed error for this status
  }
  if (resp.status === 200 && have > 0) have = 0; // the server ignored Range: start over
  const progress = download_progress(target.ctx.filename ?? "download", target.size, have);
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      progress.advance(chunk.length);
      done(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(resp.body as import("node:stream/web").ReadableStream),
      counter,
      fs.createWriteStream(partial, { flags: have > 0 ? "a" : "w" }),
    );
  } catch (err) {
    throw connection_error(url, err);
  } finally {
    progress.stop();
  }
}

async function sha256_file(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  await pipeline(fs.createReadStream(file), hash);
  return hash.digest("hex");
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
