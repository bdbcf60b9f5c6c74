// Hugging Face checkpoint compatibility: the course's load report, legacy names, prefixes, shards, tied weights,
// save_pretrained round trips, and clear errors for bad checkpoints.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, BertConfig, BertForMaskedLM,
  BertForSequenceClassification, BertModel,
} from "../../src/models/index.js";
import type { BertLayer } from "../../src/models/bert/modeling_bert.js";
import { load_file, save_file } from "../../src/safetensors/tensors.js";
import { torch } from "../../src/torch.js";
import { TINY_BERT, TINY_BERT_SEQCLS } from "../helpers/paths.js";
import { assertClose } from "../helpers/compare.js";

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "finetune-ckpt-"));
}

/** Runs fn and returns what it printed with console.warn. */
async function captureWarnings<T>(fn: () => Promise<T>): Promise<[T, string]> {
  const original = console.warn;
  const lines: string[] = [];
  console.warn = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    return [await fn(), lines.join("\n")];
  } finally {
    console.warn = original;
  }
}

/** A folder holding the tiny fixture's config with the given tensors as model.safetensors. */
function checkpointFolder(tensors: Record<string, ReturnType<typeof torch.zeros>>, config: Record<string, unknown> = {}): string {
  const dir = tempDir();
  const base = JSON.parse(fs.readFileSync(path.join(TINY_BERT, "config.json"), "utf8"));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...base, ...config }));
  save_file(tensors, path.join(dir, "model.safetensors"));
  return dir;
}

test("the course's report: cls.* unused, classifier.* newly initialised", async () => {
  const [model, report] = await captureWarnings(() => AutoModelForSequenceClassification.from_pretrained(TINY_BERT, { num_labels: 2 }));
  assert.ok(model instanceof BertForSequenceClassification);
  assert.match(report, /Some weights of the model checkpoint at .*tiny-bert were not used when initializing BertForSequenceClassification: \['cls\.predictions\.bias', 'cls\.predictions\.transform\.LayerNorm\.bias'/);
  assert.match(report, /Some weights of BertForSequenceClassification were not initialized from the model checkpoint at .* and are newly initialized: \['classifier\.bias', 'classifier\.weight'\]/);
  assert.match(report, /You should probably TRAIN this model on a down-stream task/);
  assert.deepEqual(model._loading_info!.missing_keys.sort(), ["classifier.bias", "classifier.weight"]);
  assert.equal(model.training, false, "from_pretrained returns the model in eval mode");
  // New weights follow transformers' init: zero bias, normal(0, 0.02) weight.
  assert.deepEqual(model.classifier.bias!.tolist(), [0, 0]);
  const std = Math.sqrt((model.classifier.weight.data() as Float32Array).reduce((a, v) => a + v * v, 0) / 64);
  assert.ok(std > 0.01 && std < 0.04, `classifier weight std ${std}`);
  const expected = load_file(path.join(TINY_BERT, "model.safetensors"));
  assertClose(model.bert.embeddings.word_embeddings.weight, expected["bert.embeddings.word_embeddings.weight"], 0, "loaded embedding");
});

test("legacy LayerNorm.gamma/beta names and a checkpoint without the bert. prefix load", async () => {
  const original = load_file(path.join(TINY_BERT_SEQCLS, "model.safetensors"));
  const legacy: Record<string, ReturnType<typeof torch.zeros>> = {};
  for (const [k, v] of Object.entries(original)) {
    if (!k.startsWith("bert.")) continue;
    legacy[k.slice(5).replace(/LayerNorm\.weight$/, "LayerNorm.gamma").replace(/LayerNorm\.bias$/, "LayerNorm.beta")] = v;
  }
  legacy["embeddings.position_ids"] = torch.arange(512).reshape([1, 512]);
  const dir = checkpointFolder(legacy);
  const [model, report] = await captureWarnings(() => BertForSequenceClassification.from_pretrained(dir, { num_labels: 2 }));
  assert.deepEqual(model._loading_info!.unexpected_keys, [], "position_ids is ignored, as transformers does");
  assert.doesNotMatch(report, /were not used/);
  assertClose((model.bert.encoder.layer.at(1) as BertLayer).output.LayerNorm.weight!, original["bert.encoder.layer.1.output.LayerNorm.weight"], 0, "gamma -> weight");
  const base = await captureWarnings(() => BertModel.from_pretrained(TINY_BERT_SEQCLS));
  assert.deepEqual(base[0]._loading_info!.unexpected_keys, ["classifier.bias", "classifier.weight"], "bert. prefix stripped for BertModel");
  assert.deepEqual(base[0]._loading_info!.missing_keys, []);
});

test("sharded checkpoints: model.safetensors.index.json and its shards", async () => {
  const original = load_file(path.join(TINY_BERT_SEQCLS, "model.safetensors"));
  const dir = tempDir();
  fs.copyFileSync(path.join(TINY_BERT_SEQCLS, "config.json"), path.join(dir, "config.json"));
  const names = Object.keys(original);
  const weight_map: Record<string, string> = {};
  const shards = [names.slice(0, 20), names.slice(20)];
  shards.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    save_file(Object.fromEntries(part.map((n) => [n, original[n]])), path.join(dir, file));
    for (const n of part) weight_map[n] = file;
  });
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map }));
  const model = await BertForSequenceClassification.from_pretrained(dir);
  for (const [k, v] of Object.entries(model.state_dict())) assertClose(v, original[k], 0, k);
});

test("tied weights: the MLM decoder is the word embedding, and is saved once", async () => {
  const [model, report] = await captureWarnings(() => AutoModelForMaskedLM.from_pretrained(TINY_BERT));
  assert.ok(model instanceof BertForMaskedLM);
  assert.equal(model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight);
  assert.equal(model.cls.predictions.decoder.bias, model.cls.predictions.bias);
  assert.match(report, /were not used when initializing BertForMaskedLM: \['bert\.pooler\.dense\.bias', 'bert\.pooler\.dense\.weight', 'cls\.seq_relationship\.bias', 'cls\.seq_relationship\.weight'\]/);
  assert.doesNotMatch(report, /newly initialized/);
  const dir = tempDir();
  model.save_pretrained(dir);
  const saved = load_file(path.join(dir, "model.safetensors"));
  assert.ok(!("cls.predictions.decoder.weight" in saved) && "bert.embeddings.word_embeddings.weight" in saved);
  assert.ok(!("cls.predictions.decoder.bias" in saved) && "cls.predictions.bias" in saved);
  const reloaded = await BertForMaskedLM.from_pretrained(dir);
  assert.deepEqual(reloaded._loading_info!.missing_keys, []);
  assert.equal(reloaded.cls.predictions.decoder.weight, reloaded.bert.embeddings.word_embeddings.weight);
});

test("save_pretrained writes config.json and model.safetensors that load back identically", async () => {
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  const dir = tempDir();
  model.save_pretrained(dir);
  const config = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.deepEqual(config.architectures, ["BertForSequenceClassification"]);
  assert.equal(config.model_type, "bert");
  assert.equal(config.hidden_size, 32);
  assert.equal(config.dtype, "float32");
  assert.deepEqual(Object.keys(config), [...Object.keys(config)].sort(), "keys sorted as transformers writes them");
  const reloaded = await BertForSequenceClassification.from_pretrained(dir);
  for (const [k, v] of Object.entries(model.state_dict())) assertClose(reloaded.state_dict()[k], v, 0, k);
  assert.deepEqual(fs.readdirSync(dir).sort(), ["config.json", "model.safetensors"], "no temporary files left");
});

test("from_config initialises like transformers and AutoConfig reads config.json", async () => {
  const config = await AutoConfig.from_pretrained(TINY_BERT);
  assert.ok(config instanceof BertConfig);
  assert.equal((config as BertConfig).hidden_size, 32);
  torch.manual_seed(0);
  const model = AutoModel.from_config(config) as BertModel;
  const ln = model.embeddings.LayerNorm;
  assert.ok((ln.weight!.tolist() as number[]).every((v) => v === 1));
  assert.ok((ln.bias!.tolist() as number[]).every((v) => v === 0));
  assert.deepEqual(model.embeddings.word_embeddings.weight.select(0, 0).tolist(), new Array(32).fill(0), "padding row zero");
});

test("bad checkpoints give clear errors", async () => {
  const dir = tempDir();
  fs.copyFileSync(path.join(TINY_BERT_SEQCLS, "config.json"), path.join(dir, "config.json"));
  const bytes = fs.readFileSync(path.join(TINY_BERT_SEQCLS, "model.safetensors"));
  fs.writeFileSync(path.join(dir, "model.safetensors"), bytes.subarray(0, bytes.length - 1000));
  await assert.rejects(BertForSequenceClassification.from_pretrained(dir), /model\.safetensors.*truncated or corrupt/s);
  fs.writeFileSync(path.join(dir, "model.safetensors"), Buffer.from("garbage!"));
  await assert.rejects(BertForSequenceClassification.from_pretrained(dir), /model\.safetensors/);
  fs.rmSync(path.join(dir, "model.safetensors"));
  await assert.rejects(BertForSequenceClassification.from_pretrained(dir), /does not appear to have a file named model\.safetensors/);

  const unknown = tempDir();
  fs.writeFileSync(path.join(unknown, "config.json"), JSON.stringify({ model_type: "gpt9" }));
  await assert.rejects(AutoModel.from_pretrained(unknown), /Unrecognized model in .*"gpt9"/s);
  await assert.rejects(AutoModel.from_pretrained(tempDir()), /does not appear to have a file named config\.json/);

  const original = load_file(path.join(TINY_BERT_SEQCLS, "model.safetensors"));
  const wrongShape = checkpointFolder({ ...original, "classifier.weight": torch.zeros([3, 32]) });
  await assert.rejects(BertForSequenceClassification.from_pretrained(wrongShape, { num_labels: 2 }),
    /size mismatch for classifier\.weight: copying a param with shape \[3, 32\] from checkpoint, the shape in current model is \[2, 32\]/);
  const [model] = await captureWarnings(() => BertForSequenceClassification.from_pretrained(wrongShape, { num_labels: 2, ignore_mismatched_sizes: true }));
  assert.deepEqual(model._loading_info!.mismatched_keys, [["classifier.weight", [3, 32], [2, 32]]]);
});

test("load_state_dict: strict key checks and shape mismatches", () => {
  const model = new BertForSequenceClassification(new BertConfig({ vocab_size: 50, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16 }));
  const sd = model.state_dict();
  assert.throws(() => model.load_state_dict({ ...sd, "classifier.weight": torch.zeros([3, 8]) }),
    /size mismatch for classifier\.weight: copying a param with shape \[3, 8\] from checkpoint, the shape in current model is \[2, 8\]/);
  const { "classifier.bias": _dropped, ...partial } = sd;
  assert.throws(() => model.load_state_dict(partial), /Missing key\(s\) in state_dict: "classifier\.bias"/);
  assert.throws(() => model.load_state_dict({ ...sd, extra: torch.zeros([1]) }), /Unexpected key\(s\) in state_dict: "extra"/);
  const result = model.load_state_dict({ ...partial, extra: torch.zeros([1]) }, false);
  assert.deepEqual(result, { missing_keys: ["classifier.bias"], unexpected_keys: ["extra"] });
});
