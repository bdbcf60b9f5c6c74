// The local Hub server: the HTTP answers that huggingface_hub and our client rely on.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { HubServer } from "../../src/hub/server.js";
import { SHARED_HUB } from "../helpers/paths.js";

describe("hub serve", () => {
  let server: HubServer;
  let base: string;
  before(async () => {
    server = new HubServer(SHARED_HUB);
    base = await server.listen({ port: 0 });
  });
  after(() => server.close());

  const get = (p: string, init: RequestInit = {}) => fetch(base + p, { redirect: "manual", ...init });

  it("answers repo info with sha and siblings", async () => {
    const res = await get("/api/models/google-bert/bert-base-uncased/revision/main");
    assert.equal(res.status, 200);
    const info = await res.json();
    assert.equal(info.id, "google-bert/bert-base-uncased");
    assert.match(info.sha, /^[0-9a-f]{40}$/);
    assert.deepEqual(info.siblings.map((s: { rfilename: string }) => s.rfilename).sort(),
      ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]);
    const plain = await (await get("/api/models/google-bert/bert-base-uncased")).json();
    assert.equal(plain.sha, info.sha);
  });

  it("redirects renamed repositories as the Hub does (307, relative Location)", async () => {
    const res = await get("/api/models/bert-base-uncased/revision/main?x=1");
    assert.equal(res.status, 307);
    assert.equal(res.headers.get("location"), "/api/models/google-bert/bert-base-uncased/revision/main?x=1");
    const file = await get("/datasets/glue/resolve/main/README.md", { method: "HEAD" });
    assert.equal(file.status, 307);
    assert.equal(file.headers.get("location"), "/datasets/nyu-mll/glue/resolve/main/README.md");
  });

  it("lists the tree, recursively or one level, and answers paths-info (JSON and form)", async () => {
    const top = await (await get("/api/datasets/nyu-mll/glue/tree/main")).json();
    assert.deepEqual(top.map((e: { path: string; type: string }) => `${e.type}:${e.path}`), ["directory:mrpc", "file:README.md"]);
    const all = await (await get("/api/datasets/nyu-mll/glue/tree/main?recursive=true")).json();
    const parquet = all.find((e: { path: string }) => e.path === "mrpc/train-00000-of-00001.parquet");
    assert.equal(parquet.lfs.size, parquet.size);
    assert.match(parquet.lfs.oid, /^[0-9a-f]{64}$/);
    const sub = await (await get("/api/datasets/nyu-mll/glue/tree/main/mrpc")).json();
    assert.equal(sub.length, 3);
    const json = await (await get("/api/models/google-bert/bert-base-uncased/paths-info/main", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ paths: ["vocab.txt", "nope"] }),
    })).json();
    assert.deepEqual(json.map((e: { path: string }) => e.path), ["vocab.txt"]);
    const form = await (await get("/api/models/google-bert/bert-base-uncased/paths-info/main", {
      method: "POST", body: new URLSearchParams([["paths", "config.json"], ["paths", "vocab.txt"]]),
    })).json();
    assert.deepEqual(form.map((e: { path: string }) => e.path).sort(), ["config.json", "vocab.txt"]);
  });

  it("resolves files with ETag, X-Repo-Commit, X-Linked-Etag for LFS, HEAD and Range", async () => {
    const sha = (await (await get("/api/datasets/nyu-mll/glue/revision/main")).json()).sha;
    const file = path.join(SHARED_HUB, "datasets/nyu-mll/glue/mrpc/validation-00000-of-00001.parquet");
    const bytes = fs.readFileSync(file);
    const head = await get("/datasets/nyu-mll/glue/resolve/main/mrpc/validation-00000-of-00001.parquet", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("x-repo-commit"), sha);
    assert.equal(Number(head.headers.get("content-length")), bytes.length);
    assert.match(head.headers.get("x-linked-etag")!, /^"[0-9a-f]{64}"$/);
    assert.equal(head.headers.get("etag"), head.headers.get("x-linked-etag"));
    const range = await get("/datasets/nyu-mll/glue/resolve/main/mrpc/validation-00000-of-00001.parquet", { headers: { Range: "bytes=4-9" } });
    assert.equal(range.status, 206);
    assert.equal(range.headers.get("content-range"), `bytes 4-9/${bytes.length}`);
    assert.deepEqual(Buffer.from(await range.arrayBuffer()), bytes.subarray(4, 10));
    const small = await get("/google-bert/bert-base-uncased/resolve/main/config.json");
    assert.match(small.headers.get("etag")!, /^"[0-9a-f]{40}"$/);
    assert.equal(small.headers.get("x-linked-etag"), null);
    const bySha = await get(`/datasets/nyu-mll/glue/resolve/${sha}/README.md`, { method: "HEAD" });
    assert.equal(bySha.status, 200);
    const bad = await get("/google-bert/bert-base-uncased/resolve/main/config.json", { headers: { Range: "bytes=99999-" } });
    assert.equal(bad.status, 416);
  });

  it("answers 404s in the Hub's shape", async () => {
    const repo = await get("/api/models/nobody/nothing/revision/main");
    assert.equal(repo.status, 404);
    assert.equal(repo.headers.get("x-error-code"), "RepoNotFound");
    assert.deepEqual(await repo.json(), { error: "Repository not found" });
    const entry = await get("/google-bert/bert-base-uncased/resolve/main/missing.bin", { method: "HEAD" });
    assert.equal(entry.status, 404);
    assert.equal(entry.headers.get("x-error-code"), "EntryNotFound");
    const rev = await get("/google-bert/bert-base-uncased/resolve/v9/config.json");
    assert.equal(rev.headers.get("x-error-code"), "RevisionNotFound");
  });

  it("never serves a path outside the folder", async () => {
    for (const p of [
      "/google-bert/bert-base-uncased/resolve/main/..%2F..%2Ffixtures%2Ftiny-bert%2Fconfig.json",
      "/google-bert/bert-base-uncased/resolve/main/../../../aliases.json",
      "/api/models/..%2F..%2F/revision/main",
      "/google-bert/..%2F..%2Fdatasets%2Fnyu-mll%2Fglue/resolve/main/README.md",
    ]) {
      const res = await get(p);
      assert.equal(res.status, 404, p);
    }
  });

  it("has no aliases when the served folder has no aliases.json, and follows no link out", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-hub-"));
    fs.mkdirSync(path.join(dir, "models/me/repo"), { recursive: true });
    fs.writeFileSync(path.join(dir, "models/me/repo/config.json"), "{}");
    fs.writeFileSync(path.join(dir, "secret.txt"), "secret");
    fs.symlinkSync(path.join(dir, "secret.txt"), path.join(dir, "models/me/repo/link.txt"));
    const own = new HubServer(dir);
    const url = await own.listen({ port: 0 });
    try {
      assert.equal((await fetch(`${url}/api/models/bert-base-uncased/revision/main`, { redirect: "manual" })).status, 404);
      assert.equal((await fetch(`${url}/me/repo/resolve/main/config.json`)).status, 200);
      assert.equal((await fetch(`${url}/me/repo/resolve/main/link.txt`)).status, 404);
    } finally {
      await own.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
