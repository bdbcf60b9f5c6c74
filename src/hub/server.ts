// A Hub HTTP API over a local folder: the parts that our client and Python's huggingface_hub call
// (repo info, tree, paths-info, resolve with HEAD and Range, redirects of renamed repos, Hub-shaped 404s).
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { RepoFolder, type RepoEntry, type RepoKind, type RepoSnapshot } from "./repo_folder.js";

export interface ServeOptions {
  port?: number;
  host?: string;
}

const KINDS: Record<string, RepoKind> = { models: "models", datasets: "datasets", spaces: "spaces" };
const ACTIONS = new Set(["revision", "tree", "paths-info", "resolve", "raw"]);

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export class HubServer {
  readonly folder: RepoFolder;
  /** Every request answered so far, as "METHOD /path": tests use it to prove the cache was used. */
  readonly requests: string[] = [];
  private readonly server: http.Server;

  constructor(dir: string) {
    this.folder = new RepoFolder(dir);
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 1000;
  }

  async listen(opts: ServeOptions = {}): Promise<string> {
    const host = opts.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(opts.port ?? 0, host, () => resolve());
    });
    const { port } = this.server.address() as AddressInfo;
    return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.requests.push(`${req.method} ${req.url}`);
    try {
      const url = new URL(req.url ?? "/", "http://hub.local");
      const segments = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
      if (segments[0] === "api") await this.api(req, res, segments.slice(1), url);
      else this.resolve(req, res, segments, url);
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(500, "InternalError", String((err as Error).message));
      if (res.headersSent) return void res.destroy();
      const body = JSON.stringify({ error: e.message });
      res.writeHead(e.status, {
        "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body),
        "X-Error-Code": e.code, "X-Error-Message": e.message, ...e.headers,
      });
      res.end(req.method === "HEAD" ? undefined : body);
    }
  }

  /** Splits "[kind/]id/action/..." where id has one or two segments; redirects renamed repositories. */
  private locate(segments: string[], kind: RepoKind, url: URL, res: http.ServerResponse, prefix: string) {
    for (const n of [2, 1]) {
      if (segments.length < n || (n === 2 && ACTIONS.has(segments[1]!) && !this.folder.exists(kind, segments.slice(0, 2).join("/")))) continue;
      const id = segments.slice(0, n).join("/");
      const renamed = this.folder.renamed(kind, id);
      if (renamed) {
        const rest = segments.slice(n).map(encodeURIComponent).join("/");
        res.writeHead(307, { Location: `${prefix}${renamed}${rest ? `/${rest}` : ""}${url.search}`, "Content-Length": 0 });
        res.end();
        return undefined;
      }
      if (this.folder.exists(kind, id)) return { id, rest: segments.slice(n) };
    }
    throw new HttpError(404, "RepoNotFound", "Repository not found");
  }

  private snapshot_at(kind: RepoKind, id: string, revision: string): RepoSnapshot {
    const snapshot = this.folder.snapshot(kind, id);
    if (revision !== "main" && revision !== "HEAD" && revision !== snapshot.sha) {
      throw new HttpError(404, "RevisionNotFound", `Invalid rev id: ${revision}`);
    }
    return snapshot;
  }

  private async api(req: http.IncomingMessage, res: http.ServerResponse, segments: string[], url: URL) {
    const kind = KINDS[segments[0] ?? ""];
    if (!kind) throw new HttpError(404, "NotFound", "Not found");
    const located = this.locate(segments.slice(1), kind, url, res, `/api/${kind}/`);
    if (!located) return;
    const { id, rest } = located;
    const [action, revision = "main", ...sub] = rest;
    if (action === undefined || action === "revision") {
      const snap = this.snapshot_at(kind, id, action === undefined ? "main" : revision);
      return send_json(res, {
        _id: snap.sha.slice(0, 24), id, sha: snap.sha, private: false, gated: false, disabled: false,
        lastModified: snap.last_modified.toISOString(), tags: [], downloads: 0, likes: 0,
        siblings: [...snap.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }
    if (action === "tree") {
      const snap = this.snapshot_at(kind, id, revision);
      return send_json(res, tree(snap, sub.join("/"), url.searchParams.get("recursive") === "true"));
    }
    if (action === "paths-info" && req.method === "POST") {
      const snap = this.snapshot_at(kind, id, revision);
      const wanted = await read_paths(req);
      return send_json(res, tree(snap, "", true, true).filter((e) => wanted.has(e.path)));
    }
    throw new HttpError(404, "NotFound", "Not found");
  }

  private resolve(req: http.IncomingMessage, res: http.ServerResponse, segments: string[], url: URL) {
    const kind = KINDS[segments[0] ?? ""] && segments[0] !== "models" ? KINDS[segments[0]!]! : "models";
    const tail = kind === "models" ? segments : segments.slice(1);
    const prefix = kind === "models" ? "/" : `/${kind}/`;
    const located = this.locate(tail, kind, url, res, prefix);
    if (!located) return;
    const [action, revision, ...file] = located.rest;
    if ((action !== "resolve" && action !== "raw") || !revision || file.length === 0) {
      throw new HttpError(404, "NotFound", "Not found");
    }
    const snap = this.snapshot_at(kind, located.id, revision);
    const entry = snap.files.get(file.join("/"));
    const abs = entry && this.folder.file(kind, located.id, entry.path);
    if (!entry || !abs) throw new HttpError(404, "EntryNotFound", "Entry not found", { "X-Repo-Commit": snap.sha });
    send_file(req, res, entry, abs, snap.sha);
  }
}

interface TreeEntry {
  type: "file" | "directory";
  path: string;
  size: number;
  oid: string;
  lfs?: RepoEntry["lfs"];
}

/** The tree API's answer: files and the folders they imply, under `dir`, one level or all of them. */
function tree(snap: RepoSnapshot, dir: string, recursive: boolean, with_dirs_everywhere = false): TreeEntry[] {
  const prefix = dir ? `${dir}/` : "";
  const out = new Map<string, TreeEntry>();
  if (dir && ![...snap.files.keys()].some((p) => p.startsWith(prefix))) {
    throw new HttpError(404, "EntryNotFound", `Entry not found: ${dir}`);
  }
  for (const f of snap.files.values()) {
    if (!f.path.startsWith(prefix)) continue;
    const parts = f.path.slice(prefix.length).split("/");
    for (let depth = 1; depth < parts.length; depth++) {
      if (!recursive && !with_dirs_everywhere && depth > 1) break;
      const sub = prefix + parts.slice(0, depth).join("/");
      if (!out.has(sub)) out.set(sub, { type: "directory", path: sub, size: 0, oid: "0".repeat(40) });
    }
    if (recursive || parts.length === 1) {
      out.set(f.path, { type: "file", path: f.path, size: f.size, oid: f.oid, ...(f.lfs ? { lfs: f.lfs } : {}) });
    }
  }
  return [...out.values()];
}

async function read_paths(req: http.IncomingMessage): Promise<Set<string>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks).toString("utf8");
  if ((req.headers["content-type"] ?? "").includes("json")) {
    const paths = JSON.parse(body || "{}").paths ?? [];
    return new Set((Array.isArray(paths) ? paths : [paths]).map(String));
  }
  return new Set(new URLSearchParams(body).getAll("paths")); // huggingface_hub posts a form
}

function send_json(res: http.ServerResponse, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function send_file(req: http.IncomingMessage, res: http.ServerResponse, entry: RepoEntry, abs: string, commit: string) {
  const etag = `"${entry.lfs?.oid ?? entry.oid}"`;
  const headers: Record<string, string | number> = {
    "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", ETag: etag, "X-Repo-Commit": commit,
    "Content-Disposition": `inline; filename="${entry.path.split("/").pop()!.replace(/"/g, "")}"`,
  };
  if (entry.lfs) Object.assign(headers, { "X-Linked-Etag": etag, "X-Linked-Size": entry.size });
  let start = 0;
  let end = entry.size - 1;
  let status = 200;
  const range = req.headers.range;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (m && (m[1] || m[2])) {
      start = m[1] ? Number(m[1]) : Math.max(0, entry.size - Number(m[2]));
      end = m[1] && m[2] ? Math.min(Number(m[2]), entry.size - 1) : entry.size - 1;
    }
    if (!m || start > end || start >= entry.size) {
      res.writeHead(416, { "Content-Range": `bytes */${entry.size}`, "Content-Length": 0 });
      return void res.end();
    }
    status = 206;
    headers["Content-Range"] = `bytes ${start}-${end}/${entry.size}`;
  }
  headers["Content-Length"] = entry.size === 0 ? 0 : end - start + 1;
  res.writeHead(status, headers);
  if (req.method === "HEAD" || entry.size === 0) return void res.end();
  fs.createReadStream(abs, { start, end }).on("error", () => res.destroy()).pipe(res);
}
