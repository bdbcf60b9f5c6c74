// One place that turns Hub HTTP failures into errors saying what to try (token, offline mode, a mirror).
import { hf_endpoint, hf_token, type RepoType } from "./constants.js";
import {
  EntryNotFoundError, GatedRepoError, HfHubError, HubConnectionError, RepositoryNotFoundError, RevisionNotFoundError,
} from "./errors.js";

export interface RequestContext {
  repo_id: string;
  repo_type: RepoType;
  revision?: string;
  filename?: string;
  token?: string | boolean;
}

export function auth_headers(token?: string | boolean): Record<string, string> {
  const value = hf_token(token);
  return value ? { Authorization: `Bearer ${value}` } : {};
}

function describe(ctx: RequestContext): string {
  const kind = ctx.repo_type === "model" ? "model" : ctx.repo_type;
  return `${kind} repository '${ctx.repo_id}'`;
}

const TOKEN_HINT =
  "If it is private or gated, set HF_TOKEN (or pass `token`) with an access token that can read it.";

/** fetch() that raises a typed, actionable error for network failures and non-2xx answers. */
export async function hub_fetch(url: string, init: RequestInit, ctx: RequestContext): Promise<Response> {
  let resp: Response;
  try {
    resp = await fetch(url, { ...init, headers: { ...auth_headers(ctx.token), ...(init.headers as object) } });
  } catch (err) {
    throw connection_error(url, err);
  }
  if (resp.ok) return resp;
  await raise_for_status(resp, ctx);
  return resp;
}

export function connection_error(url: string, err: unknown): HubConnectionError {
  const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
  return new HubConnectionError(
    `Cannot reach the Hub at ${hf_endpoint()} (${url}): ${cause}. ` +
      "Check the network, point HF_ENDPOINT at a mirror (e.g. one served by `npx finetune hub serve DIR`), " +
      "or set HF_HUB_OFFLINE=1 to use files already in the cache.",
  );
}

async function raise_for_status(resp: Response, ctx: RequestContext): Promise<never> {
  const code = resp.headers.get("x-error-code");
  const server_message = resp.headers.get("x-error-message") ?? (await resp.text().catch(() => "")).slice(0, 200);
  const where = `${resp.status} for ${resp.url}`;
  if (code === "RepoNotFound" || (resp.status === 401 && !code) || (resp.status === 404 && !code && !ctx.filename)) {
    throw new RepositoryNotFoundError(
      `Repository not found (${where}): no ${describe(ctx)} at ${hf_endpoint()}. ` +
        `Check the id and the repo_type. ${TOKEN_HINT}`,
    );
  }
  if (code === "GatedRepo" || resp.status === 401 || resp.status === 403) {
    throw new GatedRepoError(`Access to ${describe(ctx)} is restricted (${where}). ${TOKEN_HINT}`);
  }
  if (code === "RevisionNotFound") {
    throw new RevisionNotFoundError(
      `Revision '${ctx.revision}' not found in ${describe(ctx)} (${where}). Use a branch, tag or commit hash that exists.`,
    );
  }
  if (code === "EntryNotFound" || resp.status === 404) {
    const err = new EntryNotFoundError(
      `File '${ctx.filename ?? "?"}' not found in ${describe(ctx)} at revision '${ctx.revision ?? "main"}' (${where}).`,
    );
    err.commit = resp.headers.get("x-repo-commit") ?? undefined;
    throw err;
  }
  throw new HfHubError(`The Hub answered ${where}: ${server_message || resp.statusText}`);
}
