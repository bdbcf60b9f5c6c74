// Tokenisation against the reference outputs of Hugging Face tokenizers (../shared/golden/tokenizer).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { AutoTokenizer, BertTokenizerFast, load_dataset, type DatasetDict, type PreTrainedTokenizerFast } from "../../src/data_api.js";
import { GOLDEN as GOLDEN_ROOT, SHARED_HUB } from "../helpers/paths.js";

const GOLDEN = path.join(GOLDEN_ROOT, "tokenizer");
const BERT_DIR = path.join(SHARED_HUB, "models/google-bert/bert-base-uncased");
const MRPC_DIR = path.join(SHARED_HUB, "datasets/nyu-mll/glue/mrpc");

interface Golden { split: string; idx: number; input_ids: number[]; token_type_ids: number[] }
interface EdgeCase { text: string; text_pair: string | null; input_ids: number[]; token_type_ids: number[]; tokens: string[] }
interface TruncCase { strategy: "longest_first" | "only_first" | "only_second"; max_length: number; idx: number; input_ids?: number[]; token_type_ids?: number[]; error?: string }

describe("tokenizer", () => {
  let tokenizer: PreTrainedTokenizerFast;
  let mrpc: DatasetDict;
  let tmp: string;
  const rows = new Map<string, { sentence1: string; sentence2: string }>();

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-tok-"));
    tokenizer = await AutoTokenizer.from_pretrained(BERT_DIR);
    mrpc = await load_dataset("parquet", {
      data_files: Object.fromEntries(["train", "validation", "test"].map((s) => [s, path.join(MRPC_DIR, `${s}-00000-of-00001.parquet`)])),
      cache_dir: tmp,
    }) as DatasetDict;
    for (const split of mrpc.keys()) {
      for (const row of mrpc[split]!) rows.set(`${split}:${row.idx}`, row as { sentence1: string; sentence2: string });
    }
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("matches the reference on every MRPC sample pair", () => {
    const lines = fs.readFileSync(path.join(GOLDEN, "mrpc_sample.jsonl"), "utf8").trim().split("\n");
    assert.equal(lines.length, 504);
    for (const line of lines) {
      const g = JSON.parse(line) as Golden;
      const row = rows.get(`${g.split}:${g.idx}`)!;
      const enc = tokenizer(row.sentence1, row.sentence2);
      assert.deepEqual(enc.input_ids, g.input_ids, `${g.split} ${g.idx}`);
      assert.deepEqual(enc.token_type_ids, g.token_type_ids, `${g.split} ${g.idx}`);
      assert.deepEqual(enc.attention_mask, g.input_ids.map(() => 1));
    }
  });

  it("matches the reference on the edge cases (accents, CJK, emoji, control chars, long words, empty input)", () => {
    const { edge } = JSON.parse(fs.readFileSync(path.join(GOLDEN, "cases.json"), "utf8")) as { edge: EdgeCase[] };
    for (const c of edge) {
      const enc = c.text_pair === null ? tokenizer(c.text) : tokenizer(c.text, c.text_pair);
      assert.deepEqual(enc.input_ids, c.input_ids, JSON.stringify(c.text));
      assert.deepEqual(enc.token_type_ids, c.token_type_ids, JSON.stringify(c.text));
      assert.deepEqual(tokenizer.convert_ids_to_tokens(enc.input_ids), c.tokens);
    }
  });

  it("truncates as the reference does, and refuses what it refuses with a clear message", () => {
    const { truncation } = JSON.parse(fs.readFileSync(path.join(GOLDEN, "cases.json"), "utf8")) as { truncation: TruncCase[] };
    assert.equal(truncation.length, 120);
    for (const c of truncation) {
      const row = rows.get(`train:${c.idx}`)!;
      const call = () => tokenizer(row.sentence1, row.sentence2, { truncation: c.strategy, max_length: c.max_length });
      if (c.error) {
        assert.throws(call, (err: Error) =>
          err.message.includes("Sequence to truncate too short to respect the provided max_length") &&
          err.message.includes(c.strategy) && /Use truncation='longest_first'/.test(err.message), `${c.strategy} ${c.idx}`);
      } else {
        const enc = call();
        assert.deepEqual(enc.input_ids, c.input_ids, `${c.strategy} ${c.idx}`);
        assert.deepEqual(enc.token_type_ids, c.token_type_ids, `${c.strategy} ${c.idx}`);
      }
    }
  });

  it("truncates to model_max_length with truncation: true", () => {
    const long = "word ".repeat(600);
    assert.equal(tokenizer(long).input_ids.length, 602);
    assert.equal(tokenizer(long, { truncation: true }).input_ids.length, 512);
    assert.equal(tokenizer("short text", long, { truncation: "only_second", max_length: 300 }).input_ids.length, 300);
    assert.throws(() => tokenizer(long, long, { truncation: "only_second", max_length: 300 }), /too short/);
  });

  it("pads batches (longest, max_length, pad_to_multiple_of, left) and pads features like transformers", () => {
    const batch = tokenizer(["a b c", "d"], null, { padding: true });
    assert.deepEqual(batch.input_ids, [[101, 1037, 1038, 1039, 102], [101, 1040, 102, 0, 0]]);
    assert.deepEqual(batch.attention_mask, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
    assert.equal(tokenizer(["a"], { padding: "max_length", max_length: 8 }).input_ids[0].length, 8);
    assert.equal(tokenizer(["a b c"], { padding: true, pad_to_multiple_of: 8 }).input_ids[0].length, 8);
    assert.deepEqual(tokenizer(["a b c", "d"], { padding: true, padding_side: "left" }).input_ids[1], [0, 0, 101, 1040, 102]);
    const padded = tokenizer.pad([
      { input_ids: [101, 1037, 102], token_type_ids: [0, 0, 0], attention_mask: [1, 1, 1], labels: 1 },
      { input_ids: [101, 102], token_type_ids: [0, 0], attention_mask: [1, 1], labels: 0 },
    ]);
    assert.deepEqual(padded, {
      input_ids: [[101, 1037, 102], [101, 102, 0]], token_type_ids: [[0, 0, 0], [0, 0, 0]],
      attention_mask: [[1, 1, 1], [1, 1, 0]], labels: [1, 0],
    });
    const columns = tokenizer.pad({ input_ids: [[1, 2], [3]] }, { padding: "max_length", max_length: 4 });
    assert.deepEqual(columns, { input_ids: [[1, 2, 0, 0], [3, 0, 0, 0]], attention_mask: [[1, 1, 0, 0], [1, 0, 0, 0]] });
  });

  it("returns engine tensors with return_tensors: 'pt'", () => {
    const batch = tokenizer(["a b", "c"], { padding: true, return_tensors: "pt" });
    assert.deepEqual(batch.input_ids.shape, [2, 4]);
    assert.deepEqual(batch.attention_mask.tolist(), [[1, 1, 1, 1], [1, 1, 1, 0]]);
    assert.deepEqual(tokenizer("a b", "c", { return_tensors: "pt" }).token_type_ids.tolist(), [[0, 0, 0, 0, 1, 1]]);
  });

  it("refuses ragged tensors with the transformers hint", () => {
    assert.throws(() => tokenizer(["a b c", "d"], { return_tensors: "pt" }), /padding: true, truncation: true/);
  });

  it("converts, decodes and knows its special tokens", () => {
    assert.deepEqual(tokenizer.convert_tokens_to_ids(["[CLS]", "hello", "not-a-token"]), [101, 7592, 100]);
    assert.equal(tokenizer.convert_ids_to_tokens(7592), "hello");
    const ids = tokenizer("Hello, world!").input_ids;
    assert.equal(tokenizer.decode(ids), "[CLS] hello, world! [SEP]");
    assert.equal(tokenizer.decode(ids, { skip_special_tokens: true }), "hello, world!");
    assert.deepEqual(tokenizer.batch_decode([ids, [101, 102]], { skip_special_tokens: true }), ["hello, world!", ""]);
    assert.deepEqual(
      [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id, tokenizer.mask_token_id],
      [0, 101, 102, 100, 103],
    );
    assert.equal(tokenizer.model_max_length, 512);
    assert.equal(tokenizer.vocab_size, 30522);
    assert.ok(tokenizer instanceof BertTokenizerFast);
    assert.deepEqual(tokenizer.tokenize("unaffable"), ["una", "##ffa", "##ble"]);
  });

  it("returns offsets, special tokens masks and lengths", () => {
    const enc = tokenizer("Héllo naïve unaffable", "北京", { return_offsets_mapping: true, return_special_tokens_mask: true, return_length: true });
    assert.deepEqual(enc.offset_mapping, [[0, 0], [0, 5], [6, 11], [12, 15], [15, 18], [18, 21], [0, 0], [0, 1], [1, 2], [0, 0]]);
    assert.deepEqual(enc.special_tokens_mask, [1, 0, 0, 0, 0, 0, 1, 0, 0, 1]);
    assert.equal(enc.length, 10);
    const plain = tokenizer("x", { return_token_type_ids: false, return_attention_mask: false });
    assert.deepEqual(Object.keys(plain), ["input_ids"]);
  });

  it("builds the BERT tokenizer from a folder with only vocab.txt, and round-trips save_pretrained", async () => {
    const vocab_only = path.join(tmp, "vocab-only");
    fs.mkdirSync(vocab_only);
    fs.copyFileSync(path.join(BERT_DIR, "vocab.txt"), path.join(vocab_only, "vocab.txt"));
    const from_vocab = await AutoTokenizer.from_pretrained(vocab_only);
    const saved = path.join(tmp, "saved");
    const files = tokenizer.save_pretrained(saved);
    assert.deepEqual(files.map((f) => path.basename(f)).sort(), ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
    const reloaded = await AutoTokenizer.from_pretrained(saved);
    for (const tok of [from_vocab, reloaded]) {
      for (const key of ["train:0", "train:1", "validation:9", "test:0"]) {
        const row = rows.get(key)!;
        assert.deepEqual(tok(row.sentence1, row.sentence2), tokenizer(row.sentence1, row.sentence2));
      }
      assert.equal(tok.pad_token_id, 0);
    }
  });

  it("prints like transformers", () => {
    const printed = (tokenizer as unknown as { [k: symbol]: () => string })[Symbol.for("nodejs.util.inspect.custom")]!();
    assert.match(printed, /^BertTokenizerFast\(name_or_path='.*bert-base-uncased', vocab_size=30522, model_max_length=512/);
  });
});
