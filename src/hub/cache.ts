// The cache layout of Python's huggingface_hub (blobs/, snapshots/<commit>/, refs/<revision>, .no_exist/),
// so that both stacks reuse each other's downloads.
import fs from "node:fs";
import path from "node:path";
import { hf_hub_cache, type RepoType } from "./constants.js";

export const COMMIT_HASH = /^[0-9a-f]{40}$/;

export function repo_folder_name(repo_id: string, repo_type: RepoType): string {
  return [`${repo_type}s`, ...repo_id.split("/")].join("--");
}

export class RepoCache {
  readonly root: string;

  constructor(repo_id: string, repo_type: RepoType, cache_dir?: string) {
    this.root = path.join(cache_dir ?? hf_hub_cache(), repo_folder_name(repo_id, repo_type));
  }

  blob(etag: string): string {
    return path.join(this.root, "blobs", etag);
  }

  snapshot(commit: string, file = ""): string {
    return path.join(this.root, "snapshots", commit, ...file.split("/"));
  }

  /** The commit a revision pointed to when last resolved online; a commit hash is its own answer. */
  commit_for(revision: string): string | undefined {
    if (COMMIT_HASH.test(revision)) return revision;
    try {
      return fs.readFileSync(path.join(this.root, "refs", ...revision.split("/")), "utf8").trim();
    } catch {
      return undefined;
    }
  }

  write_ref(revision: string, commit: string): void {
    if (revision === commit) return;
    const ref = path.join(this.root, "refs", ...revision.split("/"));
    if (this.commit_for(revision) === commit) return;
    fs.mkdirSync(path.dirname(ref), { recursive: true });
    atomic_write(ref, commit);
  }

  /** Links snapshots/<commit>/<file> to the blob with a relative symlink, as Python does. */
  link_snapshot(commit: string, file: string, etag: string): string {
    const pointer = this.snapshot(commit, file);
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    const target = path.relative(path.dirname(pointer), this.blob(etag));
    // made under a name of its own, then renamed over the pointer: processes linking the same file at once each
    // replace it whole, and none writes through another's link into the blob
    const tmp = `${pointer}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      fs.symlinkSync(target, tmp);
    } catch {
      fs.copyFileSync(this.blob(etag), tmp); // file systems without symlinks
    }
    fs.renameSync(tmp, pointer);
    return pointer;
  }

  cached_file(revision: string, file: string): string | undefined {
    const commit = this.commit_for(revision);
    if (!commit) return undefined;
    const pointer = this.snapshot(commit, file);
    return fs.existsSync(pointer) ? pointer : undefined;
  }

  /** Python's marker for "this file does not exist at this commit", which spares a request next time. */
  no_exist(commit: string, file: string): string {
    return path.join(this.root, ".no_exist", commit, ...file.split("/"));
  }

  mark_missing(commit: string, file: string): void {
    const marker = this.no_exist(commit, file);
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.writeFileSync(marker, "");
  }

  known_missing(revision: string, file: string): boolean {
    const commit = this.commit_for(revision);
    return commit !== undefined && fs.existsSync(this.no_exist(commit, file));
  }
}

/** Writes under a temporary name and renames, so readers never see half a file. */
export function atomic_write(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}
