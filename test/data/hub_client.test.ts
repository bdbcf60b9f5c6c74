// hf_hub_download: the Python-compatible cache, offline use, resume, hash checks and error messages.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { hf_hub_download } from "../../src/hub/download.js";
import { repo_info } from "../../src/hub/api.js";
import {
  EntryNotFoundError, GatedRepoError, HubConnectionError, LocalEntryNotFoundError, RepositoryNotFoundError,
} from "../../src/hub/errors.js";
import { startHub, type TestHub } from "../helpers/hub-server.js";
import { SHARED_HUB } from "../helpers/paths.js";
import { startProxy } from "../helpers/proxy.js";

const PARQUET = "mrpc/validation-00000-of-00001.parquet";
const PARQUET_BYTES = fs.readFileSync(path.join(SHARED_HUB, "datasets/nyu-mll/glue", PARQUET));

describe("hub client", () => {
  let hub: TestHub;
  beforeEach(async () => {
    hub = await startHub();
  });
  afterEach(() => hub.close());

  it("resolves legacy ids through the Hub's redirect", async () => {
    const info = await repo_info("bert-base-uncased");
    assert.equal(info.id, "google-bert/bert-base-uncased");
    const data = await repo_info("glue", { repo_type: "dataset" });
    assert.equal(data.id, "nyu-mll/glue");
  });

  it("downloads into Python's cache layout: blobs, snapshots/<commit> links, refs/<revision>", async () => {
    const file = await hf_hub_download("glue", PARQUET, { repo_type: "dataset" });
    const root = path.join(hub.hf_home, "hub", "datasets--glue");
    const commit = fs.readFileSync(path.join(root, "refs", "main"), "utf8");
    assert.equal(file, path.join(root, "snapshots", commit, ...PARQUET.split("/")));
    assert.ok(fs.lstatSync(file).isSymbolicLink());
    const sha256 = crypto.createHash("sha256").update(PARQUET_BYTES).digest("hex");
    assert.equal(fs.realpathSync(file), fs.realpathSync(path.join(root, "blobs", sha256)));
    assert.ok(!path.isAbsolute(fs.readlinkSync(file)), "relative symlink, as huggingface_hub makes");
    assert.deepEqual(fs.readFileSync(file), PARQUET_BYTES);
    const config = await hf_hub_download("bert-base-uncased", "config.json");
    assert.ok(config.includes(`${path.sep}models--bert-base-uncased${path.sep}snapshots${path.sep}`));
    const before = hub.requestCount();
    const again = await hf_hub_download("glue", PARQUET, { repo_type: "dataset", revision: commit });
    assert.equal(again, file);
    assert.equal(hub.requestCount(), before, "a commit-pinned cached file needs no request");
  });

  it("works offline from the cache (HF_HUB_OFFLINE, local_files_only) and says what to do without it", async () => {
    const online = await hf_hub_download("bert-base-uncased", "config.json");
    process.env.HF_HUB_OFFLINE = "1";
    const before = hub.requestCount();
    assert.equal(await hf_hub_download("bert-base-uncased", "config.json"), online);
    assert.equal(hub.requestCount(), before);
    await assert.rejects(hf_hub_download("bert-base-uncased", "vocab.txt"), (err: Error) =>
      err instanceof LocalEntryNotFoundError && /HF_HUB_OFFLINE=1/.test(err.message) && /network access/.test(err.message));
    delete process.env.HF_HUB_OFFLINE;
    await assert.rejects(hf_hub_download("bert-base-uncased", "vocab.txt", { local_files_only: true }), /local_files_only/);
  });

  it("explains 404s, 401s and an unreachable Hub", async () => {
    await assert.rejects(hf_hub_download("nobody/nothing", "config.json"), (err: Error) =>
      err instanceof RepositoryNotFoundError && /HF_TOKEN/.test(err.message));
    await assert.rejects(hf_hub_download("bert-base-uncased", "nope.bin"), EntryNotFoundError);
    process.env.HF_ENDPOINT = "http://127.0.0.1:9"; // discard port: nothing listens
    await assert.rejects(hf_hub_download("bert-base-uncased", "config.json"), (err: Error) =>
      err instanceof HubConnectionError && /HF_HUB_OFFLINE=1/.test(err.message) && /mirror/.test(err.message));
  });

  it("sends HF_TOKEN, and says to set it when the Hub answers 401", async () => {
    const proxy = await startProxy(hub.endpoint, {
      intercept(req, res) {
        if (req.headers.authorization === "Bearer hf_test") return false;
        res.writeHead(401, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ error: "Invalid credentials" }));
        return true;
      },
    });
    process.env.HF_ENDPOINT = proxy.url;
    try {
      await assert.rejects(hf_hub_download("google-bert/bert-base-uncased", "config.json"), (err: Error) =>
        (err instanceof GatedRepoError || err instanceof RepositoryNotFoundError) && /HF_TOKEN/.test(err.message));
      process.env.HF_TOKEN = "hf_test";
      assert.ok(fs.existsSync(await hf_hub_download("google-bert/bert-base-uncased", "config.json")));
    } finally {
      await proxy.close();
    }
  });

  it("resumes an interrupted download with a Range request", async () => {
    let cuts = 0;
    const ranges: string[] = [];
    const proxy = await startProxy(hub.endpoint, {
      async intercept(req, res, upstream) {
        if (req.method !== "GET" || !req.url!.includes("validation-")) return false;
        ranges.push(String(req.headers.range ?? ""));
        if (cuts >= 2) return false;
        cuts++;
        const body = Buffer.from(await upstream!.arrayBuffer());
        res.writeHead(upstream!.status, Object.fromEntries(upstream!.headers.entries()));
        res.write(body.subarray(0, Math.floor(body.length / 3)));
        setTimeout(() => res.destroy(), 20);
        return true;
      },
    });
    process.env.HF_ENDPOINT = proxy.url;
    try {
      const file = await hf_hub_download("nyu-mll/glue", PARQUET, { repo_type: "dataset" });
      assert.deepEqual(fs.readFileSync(file), PARQUET_BYTES);
      assert.equal(ranges[0], "");
      assert.match(ranges[1]!, /^bytes=\d+-$/);
      assert.ok(ranges.length >= 3);
    } finally {
      await proxy.close();
    }
  });

  it("gives up on a download that keeps breaking, keeping only the partial file for later", async () => {
    const proxy = await startProxy(hub.endpoint, {
      async intercept(req, res, upstream) {
        if (req.method !== "GET" || !req.url!.includes("validation-")) return false;
        res.writeHead(upstream!.status, Object.fromEntries(upstream!.headers.entries()));
        res.write(Buffer.from(await upstream!.arrayBuffer()).subarray(0, 100));
        setTimeout(() => res.destroy(), 10);
        return true;
      },
    });
    process.env.HF_ENDPOINT = proxy.url;
    try {
      await assert.rejects(hf_hub_download("nyu-mll/glue", PARQUET, { repo_type: "dataset" }), (err: Error) =>
        err instanceof HubConnectionError && /Run again to resume/.test(err.message));
      const root = path.join(hub.hf_home, "hub", "datasets--nyu-mll--glue");
      const blobs = fs.readdirSync(path.join(root, "blobs"));
      assert.ok(blobs.every((b) => b.endsWith(".incomplete")), `no finished blob: ${blobs}`);
      assert.ok(!fs.existsSync(path.join(root, "snapshots")) || fs.readdirSync(path.join(root, "snapshots")).every((c) =>
        !fs.existsSync(path.join(root, "snapshots", c, ...PARQUET.split("/")))));
    } finally {
      await proxy.close();
    }
  });

  it("rejects an LFS file whose sha256 differs from the Hub's ETag and removes it", async () => {
    const proxy = await startProxy(hub.endpoint, {
      async intercept(req, res, upstream) {
        if (req.method !== "GET" || !req.url!.includes("validation-")) return false;
        const body = Buffer.from(await upstream!.arrayBuffer());
        body[body.length >> 1] ^= 0xff;
        res.writeHead(upstream!.status, Object.fromEntries(upstream!.headers.entries()));
        res.end(body);
        return true;
      },
    });
    process.env.HF_ENDPOINT = proxy.url;
    try {
      await assert.rejects(hf_hub_download("nyu-mll/glue", PARQUET, { repo_type: "dataset" }), /arrived corrupted: sha256/);
      const blobs = path.join(hub.hf_home, "hub", "datasets--nyu-mll--glue", "blobs");
      assert.deepEqual(fs.existsSync(blobs) ? fs.readdirSync(blobs) : [], []);
    } finally {
      await proxy.close();
    }
  });
});
