// load_dataset through the local Hub server: MRPC as the course notes show it, the caches, offline
// mode, and clear failures that leave no broken cache entry.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { inspect } from "node:util";
import { afterEach, beforeEach, describe, it } from "node:test";
import { AutoTokenizer, ClassLabel, Dataset, load_dataset, Value, type DatasetDict } from "../../src/data_api.js";
import { startHub, type TestHub } from "../helpers/hub-server.js";
import { SHARED_HUB } from "../helpers/paths.js";
import { startProxy } from "../helpers/proxy.js";

const MRPC_PRINTOUT = `DatasetDict({
    train: Dataset({
        features: ['sentence1', 'sentence2', 'label', 'idx'],
        num_rows: 3668
    })
    validation: Dataset({
        features: ['sentence1', 'sentence2', 'label', 'idx'],
        num_rows: 408
    })
    test: Dataset({
        features: ['sentence1', 'sentence2', 'label', 'idx'],
        num_rows: 1725
    })
})`;

/** Every file under dir with its mtime, to prove a second run rewrote nothing. */
function snapshot_mtimes(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(p, fs.lstatSync(p).mtimeMs);
    }
  };
  walk(dir);
  return out;
}

/** A copy of the served Hub folder that a test may break. */
function hub_copy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-hubcopy-"));
  fs.cpSync(SHARED_HUB, dir, { recursive: true });
  return dir;
}

describe("load_dataset from the Hub", () => {
  let hub: TestHub;
  beforeEach(async () => {
    hub = await startHub();
  });
  afterEach(() => hub.close());

  it("loads glue/mrpc as the course notes show it", async () => {
    const raw_datasets = await load_dataset("glue", "mrpc") as DatasetDict;
    assert.equal(inspect(raw_datasets), MRPC_PRINTOUT);
    assert.deepEqual(raw_datasets.num_rows, { train: 3668, validation: 408, test: 1725 });
    const raw_train_dataset = raw_datasets["train"]!;
    assert.deepEqual(raw_train_dataset.at(0), {
      sentence1: 'Amrozi accused his brother , whom he called " the witness " , of deliberately distorting his evidence .',
      sentence2: 'Referring to him as only " the witness " , Amrozi accused his brother of deliberately distorting his evidence .',
      label: 1,
      idx: 0,
    });
    assert.equal(raw_datasets["validation"]!.at(0).idx, 9);
    const features = raw_train_dataset.features;
    assert.ok(features.label instanceof ClassLabel);
    assert.deepEqual((features.label as ClassLabel).names, ["not_equivalent", "equivalent"]);
    assert.equal((features.label as ClassLabel).int2str(1), "equivalent");
    assert.equal((features.label as ClassLabel).str2int("not_equivalent"), 0);
    assert.equal((features.idx as Value).dtype, "int32");
    assert.equal(inspect(features),
      "{ sentence1: Value('string'), sentence2: Value('string'), label: ClassLabel({ names: ['not_equivalent', 'equivalent'] }), idx: Value('int32') }");
    const only = await load_dataset("glue", "mrpc", { split: "validation" }) as Dataset;
    assert.equal(only.num_rows, 408);
    const part = await load_dataset("glue", "mrpc", { split: "train[:10]" }) as Dataset;
    assert.equal(part.num_rows, 10);
  });

  it("asks for a config when the card has several", async () => {
    await assert.rejects(load_dataset("glue"), /Config name is missing[\s\S]*'mrpc'[\s\S]*load_dataset\('glue', 'ax'\)/);
  });

  it("reuses the prepared dataset and the map cache: no request, no file rewritten", async () => {
    const tokenizer = await AutoTokenizer.from_pretrained("bert-base-uncased");
    const tokenize = (example: Record<string, any>) => tokenizer(example["sentence1"], example["sentence2"], { truncation: true });
    const first = await load_dataset("glue", "mrpc") as DatasetDict;
    const mapped = first.map(tokenize, { batched: true });
    assert.deepEqual(mapped["train"]!.slice(0, 8)["input_ids"]!.map((x: number[]) => x.length), [50, 59, 47, 67, 59, 50, 62, 32]);
    const before = snapshot_mtimes(hub.hf_home);
    const requests = hub.requestCount();
    const second = await load_dataset("glue", "mrpc") as DatasetDict;
    const remapped = second.map(tokenize, { batched: true });
    assert.equal(hub.requestCount(), requests, `requests: ${hub.server.requests.slice(requests).join(", ")}`);
    assert.deepEqual(snapshot_mtimes(hub.hf_home), before);
    assert.deepEqual(remapped["validation"]!.at(5), mapped["validation"]!.at(5));
    assert.equal(remapped["train"]!._fingerprint, mapped["train"]!._fingerprint);
    const forced = second.map(tokenize, { batched: true, load_from_cache_file: false });
    const cache_file = mapped["train"]!.cache_files.find((f) => path.basename(f.filename).startsWith("cache-"))!.filename;
    assert.notEqual(fs.statSync(cache_file).mtimeMs, before.get(cache_file));
    assert.deepEqual(forced["train"]!.at(3), mapped["train"]!.at(3));
  });

  it("works offline from the cache, and fails clearly without it", async () => {
    process.env.HF_HUB_OFFLINE = "1";
    await assert.rejects(load_dataset("glue", "mrpc"), /offline: HF_HUB_OFFLINE=1 and no prepared copy[\s\S]*network access/);
    await assert.rejects(AutoTokenizer.from_pretrained("bert-base-uncased"), /HF_HUB_OFFLINE=1/);
    delete process.env.HF_HUB_OFFLINE;
    await load_dataset("glue", "mrpc");
    await AutoTokenizer.from_pretrained("bert-base-uncased");
    process.env.HF_HUB_OFFLINE = "1";
    const requests = hub.requestCount();
    const offline = await load_dataset("glue", "mrpc") as DatasetDict;
    assert.equal(offline["test"]!.num_rows, 1725);
    const tok = await AutoTokenizer.from_pretrained("bert-base-uncased");
    assert.equal(tok("hello").input_ids.length, 3);
    assert.equal(hub.requestCount(), requests);
  });

  it("gives a clear error for a truncated download and leaves no cache entry", async () => {
    const proxy = await startProxy(hub.endpoint, {
      async intercept(req, res, upstream) {
        if (req.method !== "GET" || !req.url!.includes("train-00000")) return false;
        res.writeHead(upstream!.status, Object.fromEntries(upstream!.headers.entries()));
        res.write(Buffer.from(await upstream!.arrayBuffer()).subarray(0, 1000));
        setTimeout(() => res.destroy(), 10);
        return true;
      },
    });
    process.env.HF_ENDPOINT = proxy.url;
    try {
      await assert.rejects(load_dataset("glue", "mrpc"), /train-00000-of-00001\.parquet[\s\S]*interrupted/);
      assert.ok(!fs.existsSync(path.join(hub.hf_home, "datasets", "glue", "mrpc")), "no prepared dataset");
    } finally {
      await proxy.close();
    }
  });
});

describe("load_dataset from a broken Hub repository", () => {
  let hub: TestHub;
  let dir: string;
  beforeEach(async () => {
    dir = hub_copy();
    hub = await startHub(dir);
  });
  afterEach(async () => {
    await hub.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const no_prepared = () => !fs.existsSync(path.join(hub.hf_home, "datasets", "glue", "mrpc"));

  it("names the corrupt parquet file", async () => {
    fs.writeFileSync(path.join(dir, "datasets/nyu-mll/glue/mrpc/test-00000-of-00001.parquet"), "not a parquet file at all");
    await assert.rejects(load_dataset("glue", "mrpc"), /nyu-mll\/glue\/mrpc\/test-00000-of-00001\.parquet is not a valid parquet file|test-00000-of-00001\.parquet.*not a valid parquet file/);
    assert.ok(no_prepared());
  });

  it("names the malformed dataset card", async () => {
    const card = path.join(dir, "datasets/nyu-mll/glue/README.md");
    fs.writeFileSync(card, fs.readFileSync(card, "utf8").replace("configs:\n- config_name: ax", "configs:\n- config_name: [ax"));
    await assert.rejects(load_dataset("glue", "mrpc"), /README\.md of dataset 'glue' has malformed YAML metadata/);
    assert.ok(no_prepared());
  });

  it("names the missing columns", async () => {
    const { parquetWriteBuffer } = await import("hyparquet-writer");
    const bytes = parquetWriteBuffer({ columnData: [{ name: "sentence1", data: ["a"] }, { name: "label", data: [1n], type: "INT64" }] });
    fs.writeFileSync(path.join(dir, "datasets/nyu-mll/glue/mrpc/validation-00000-of-00001.parquet"), Buffer.from(bytes));
    await assert.rejects(load_dataset("glue", "mrpc"), /validation-00000-of-00001\.parquet \(split 'validation'\) does not have the columns of the dataset: missing \["sentence2","idx"\]/);
    assert.ok(no_prepared());
  });

  it("loads the refs/convert/parquet layout ({config}/{split}/NNNN.parquet) without a card", async () => {
    const conv = path.join(dir, "datasets/someone/converted");
    for (const split of ["train", "validation"]) {
      fs.mkdirSync(path.join(conv, "mrpc", split), { recursive: true });
      fs.copyFileSync(path.join(dir, `datasets/nyu-mll/glue/mrpc/${split}-00000-of-00001.parquet`), path.join(conv, "mrpc", split, "0000.parquet"));
    }
    const ds = await load_dataset("someone/converted", "mrpc") as DatasetDict;
    assert.deepEqual(ds.num_rows, { train: 3668, validation: 408 });
    assert.ok(ds["train"]!.features.label instanceof ClassLabel);
  });
});
