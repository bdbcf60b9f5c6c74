// Repository metadata through @huggingface/hub, with our endpoint, token and error messages.
import { datasetInfo, listFiles, modelInfo } from "@huggingface/hub";
import { hf_endpoint, hf_token, type RepoType } from "./constants.js";
import { hub_fetch, type RequestContext } from "./http.js";

export interface RepoInfo {
  /** The current id: differs from the one asked for when the repository was renamed. */
  id: string;
  sha: string;
}

export interface RepoOptions {
  repo_type?: RepoType;
  revision?: string;
  token?: string | boolean;
}

function library_params(repo_id: string, opts: RepoOptions, filename?: string) {
  const ctx: RequestContext = {
    repo_id, repo_type: opts.repo_type ?? "model", revision: opts.revision ?? "main", filename, token: opts.token,
  };
  return {
    hubUrl: hf_endpoint(),
    accessToken: hf_token(opts.token),
    fetch: ((url: string, init: RequestInit) => hub_fetch(String(url), init ?? {}, ctx)) as typeof fetch,
  };
}

export async function repo_info(repo_id: string, opts: RepoOptions = {}): Promise<RepoInfo> {
  const params = {
    ...library_params(repo_id, opts), name: repo_id, revision: opts.revision ?? "main", additionalFields: ["sha" as const],
  };
  const info = (opts.repo_type ?? "model") === "dataset" ? await datasetInfo(params) : await modelInfo(params);
  return { id: info.name, sha: info.sha };
}

export interface RepoFile {
  path: string;
  size: number;
  oid?: string;
  lfs?: { oid: string; size: number };
}

/** Every file of the repository at a revision (the tree endpoint, recursively). */
export async function list_repo_tree(repo_id: string, opts: RepoOptions = {}): Promise<RepoFile[]> {
  const files: RepoFile[] = [];
  const repo = { type: opts.repo_type ?? "model", name: repo_id } as const;
  for await (const entry of listFiles({
    ...library_params(repo_id, opts), repo: repo as { type: "model" | "dataset" | "space"; name: string },
    revision: opts.revision ?? "main", recursive: true,
  })) {
    if (entry.type === "file") files.push({ path: entry.path, size: entry.size, oid: entry.oid, lfs: entry.lfs });
  }
  return files;
}
