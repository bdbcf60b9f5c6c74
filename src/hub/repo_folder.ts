// A folder in the Hub's repo layout (models/ORG/NAME, datasets/ORG/NAME) seen as git repositories:
// per-file git/LFS object ids and a commit id that changes whenever a file does.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export type RepoKind = "models" | "datasets" | "spaces";

export interface RepoEntry {
  path: string;
  size: number;
  /** git blob id (of the LFS pointer file for LFS entries), as the Hub's tree API reports it */
  oid: string;
  lfs?: { oid: string; size: number; pointerSize: number };
  abs: string;
}

export interface RepoSnapshot {
  id: string;
  sha: string;
  files: Map<string, RepoEntry>;
  last_modified: Date;
}

// The Hub's default .gitattributes sends these to LFS, and anything over 10 MB.
const LFS_PATTERN =
  /\.(7z|arrow|bin|bz2|ckpt|ftz|gz|h5|joblib|mlmodel|model|msgpack|npy|npz|onnx|ot|parquet|pb|pickle|pkl|pt|pth|rar|safetensors|tar|tflite|tgz|wasm|xz|zip|zst|mp3|wav|ogg|flac|jpg|jpeg|png|webp|mp4)$|tfevents/;
const LFS_MIN_SIZE = 10 * 1024 * 1024;

export class RepoFolder {
  readonly root: string;
  private readonly aliases: Record<string, Record<string, string>>;
  private readonly hashes = new Map<string, { key: string; entry: Omit<RepoEntry, "path" | "abs"> }>();

  constructor(root: string) {
    this.root = fs.realpathSync(root);
    const alias_file = path.join(this.root, "aliases.json");
    this.aliases = fs.existsSync(alias_file) ? JSON.parse(fs.readFileSync(alias_file, "utf8")) : {};
  }

  /** The current id of a renamed repository, as aliases.json records it. */
  renamed(kind: RepoKind, id: string): string | undefined {
    const target = this.aliases[kind]?.[id];
    return typeof target === "string" ? target : undefined;
  }

  exists(kind: RepoKind, id: string): boolean {
    const dir = this.repo_dir(kind, id);
    if (!dir || !fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return false;
    // ORG/NAME is always a repository; a one-part id is one only if it holds files (else it is an org)
    return id.includes("/") || fs.readdirSync(dir, { withFileTypes: true }).some((d) => d.isFile());
  }

  private repo_dir(kind: RepoKind, id: string): string | undefined {
    const parts = id.split("/");
    if (parts.length > 2 || parts.some((p) => !p || p === "." || p === ".." || p.startsWith("."))) return undefined;
    return path.join(this.root, kind, ...parts);
  }

  snapshot(kind: RepoKind, id: string): RepoSnapshot {
    const dir = this.repo_dir(kind, id)!;
    const files = new Map<string, RepoEntry>();
    let newest = 0;
    for (const rel of walk(dir)) {
      const abs = path.join(dir, ...rel.split("/"));
      const stat = fs.statSync(abs);
      newest = Math.max(newest, stat.mtimeMs);
      files.set(rel, { path: rel, abs, ...this.hash(abs, rel, stat) });
    }
    const listing = [...files.values()].map((f) => `${f.path} ${f.lfs?.oid ?? f.oid}`).sort().join("\n");
    const sha = crypto.createHash("sha1").update(`${kind}/${id}\n${listing}`).digest("hex");
    return { id, sha, files, last_modified: new Date(newest) };
  }

  private hash(abs: string, rel: string, stat: fs.Stats): Omit<RepoEntry, "path" | "abs"> {
    const key = `${stat.size}:${stat.mtimeMs}`;
    const known = this.hashes.get(abs);
    if (known?.key === key) return known.entry;
    const content = fs.readFileSync(abs);
    let entry: Omit<RepoEntry, "path" | "abs">;
    if (LFS_PATTERN.test(rel) || stat.size >= LFS_MIN_SIZE) {
      const sha256 = crypto.createHash("sha256").update(content).digest("hex");
      const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${stat.size}\n`;
      entry = {
        size: stat.size, oid: git_blob_id(Buffer.from(pointer)),
        lfs: { oid: sha256, size: stat.size, pointerSize: pointer.length },
      };
    } else {
      entry = { size: stat.size, oid: git_blob_id(content) };
    }
    this.hashes.set(abs, { key, entry });
    return entry;
  }

  /** Resolves a file of the repository, refusing anything that leaves its folder (.., links out). */
  file(kind: RepoKind, id: string, rel: string): string | undefined {
    const dir = this.repo_dir(kind, id);
    const parts = rel.split("/");
    if (!dir || parts.some((p) => !p || p === "." || p === ".." || p.includes("\\") || p.includes("\0"))) return undefined;
    const abs = path.join(dir, ...parts);
    if (!fs.existsSync(abs)) return undefined;
    const real = fs.realpathSync(abs);
    if (!real.startsWith(fs.realpathSync(dir) + path.sep) || !fs.statSync(real).isFile()) return undefined;
    return real;
  }
}

function git_blob_id(content: Buffer): string {
  return crypto.createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

/** Regular files under dir as repo-relative POSIX paths, skipping dot-folders like .git. */
function* walk(dir: string, prefix = ""): Generator<string> {
  for (const d of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (d.name.startsWith(".git")) continue;
    const rel = prefix ? `${prefix}/${d.name}` : d.name;
    if (d.isDirectory()) yield* walk(path.join(dir, d.name), rel);
    else if (d.isFile()) yield rel;
  }
}
