// Small models and data sets the training tests share: a tiny random BERT, a synthetic pair task with a
// learnable signal, tokenized MRPC rows from the local Hub, and a temporary Hub folder where the tiny
// fixture stands in for bert-base-uncased.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BertConfig } from "../../src/models/bert/configuration_bert.js";
import { BertForSequenceClassification } from "../../src/models/bert/modeling_bert.js";
import { Dataset } from "../../src/datasets/dataset.js";
import { DatasetDict } from "../../src/datasets/dataset_dict.js";
import { load_dataset } from "../../src/datasets/load.js";
import { AutoTokenizer } from "../../src/tokenizers/auto.js";
import type { PreTrainedTokenizerFast } from "../../src/tokenizers/tokenization.js";
import { manual_seed } from "../../src/ops/random.js";
import { SequentialSampler } from "../../src/data/samplers.js";
import { Trainer } from "../../src/training/trainer.js";
import { TrainingArguments } from "../../src/training/training_args.js";
import { SHARED, TINY_BERT } from "../helpers/paths.js";
import { startHub } from "../helpers/hub-server.js";

export const SHARED_HUB = path.join(SHARED, "hub");

/** The golden trajectory's Trainer: transformers' run it reproduces read the rows in order. */
export class SequentialTrainer extends Trainer {
  override _get_train_sampler(train_dataset = this.train_dataset) {
    return new SequentialSampler(train_dataset as Dataset);
  }
}

/** The TrainingArguments of the golden trajectory (golden/trainer-trajectory), with `options` on top. */
export function goldenTrainingArgs(output_dir: string, options: Record<string, unknown> = {}): TrainingArguments {
  return new TrainingArguments(output_dir, {
    learning_rate: 1e-3, weight_decay: 0.01, warmup_steps: 4, max_grad_norm: 1.0, lr_scheduler_type: "linear",
    logging_steps: 1, seed: 42, num_train_epochs: 1, report_to: "none", save_strategy: "no",
    per_device_train_batch_size: 8, per_device_eval_batch_size: 16, disable_tqdm: true, ...options,
  });
}

export function tinyBert(options: Record<string, unknown> = {}, seed = 0): BertForSequenceClassification {
  manual_seed(seed);
  const config = new BertConfig({
    vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64,
    max_position_embeddings: 32, num_labels: 2, ...options,
  });
  return new BertForSequenceClassification(config);
}

/** A tiny PRNG of its own, so the synthetic data never moves the engine's generators. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * Sentence pairs as token ids: label 1 pairs draw their words from ids 34..63, label 0 pairs from 4..33
 * (with a few words of the other half mixed in), so a bag of words decides the label.
 */
export function pairTask(rows: number, seed: number): Dataset {
  const rand = lcg(seed);
  const columns: Record<string, unknown[]> = { input_ids: [], token_type_ids: [], attention_mask: [], label: [] };
  for (let r = 0; r < rows; r++) {
    const label = rand() < 0.5 ? 0 : 1;
    const word = () => {
      const own = rand() < 0.8 ? label : 1 - label;
      return (own === 1 ? 34 : 4) + Math.floor(rand() * 30);
    };
    const a = Array.from({ length: 2 + Math.floor(rand() * 5) }, word);
    const b = Array.from({ length: 2 + Math.floor(rand() * 5) }, word);
    // Padded to 16 here, so the default collator can stack the rows
    const pad = (row: number[], value: number) => [...row, ...new Array(16 - row.length).fill(value)];
    const ids = [2, ...a, 3, ...b, 3];
    columns.input_ids!.push(pad(ids, 0));
    columns.token_type_ids!.push(pad([0, ...a.map(() => 0), 0, ...b.map(() => 1), 1], 0));
    columns.attention_mask!.push(pad(ids.map(() => 1), 0));
    columns.label!.push(label);
  }
  return Dataset.from_dict(columns);
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** MRPC from the local Hub mirror, tokenized with the fixture's (bert-base-uncased) tokenizer. */
export async function tokenizedMrpc(): Promise<{ train: Dataset; validation: Dataset; tokenizer: PreTrainedTokenizerFast }> {
  const hub = await startHub(SHARED_HUB);
  try {
    const raw = (await load_dataset("glue", "mrpc")) as DatasetDict;
    const tokenizer = await AutoTokenizer.from_pretrained(TINY_BERT);
    const tokenize = (batch: Record<string, string[]>) => tokenizer(batch["sentence1"]!, batch["sentence2"]!, { truncation: true });
    const train = (raw["train"] as Dataset).select(range(256)).map(tokenize, { batched: true, keep_in_memory: true });
    const validation = (raw["validation"] as Dataset).select(range(64)).map(tokenize, { batched: true, keep_in_memory: true });
    return { train, validation, tokenizer };
  } finally {
    await hub.close();
  }
}

/**
 * A Hub folder where google-bert/bert-base-uncased holds the tiny fixture and nyu-mll/glue's mrpc holds its
 * first 64/32/32 rows, so the course scripts run unchanged in seconds. Returns the folder; remove it after.
 */
export async function makeTinyHub(): Promise<string> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-tiny-hub-"));
  const model = path.join(root, "models", "google-bert", "bert-base-uncased");
  fs.mkdirSync(model, { recursive: true });
  for (const f of fs.readdirSync(TINY_BERT)) fs.copyFileSync(path.join(TINY_BERT, f), path.join(model, f));
  fs.copyFileSync(path.join(SHARED_HUB, "aliases.json"), path.join(root, "aliases.json"));
  const glue = path.join(root, "datasets", "nyu-mll", "glue");
  fs.mkdirSync(path.join(glue, "mrpc"), { recursive: true });
  fs.copyFileSync(path.join(SHARED_HUB, "datasets", "nyu-mll", "glue", "README.md"), path.join(glue, "README.md"));
  const hub = await startHub(SHARED_HUB);
  try {
    const raw = (await load_dataset("glue", "mrpc")) as DatasetDict;
    for (const [split, rows] of [["train", 64], ["validation", 32], ["test", 32]] as const) {
      (raw[split] as Dataset).select(range(rows)).to_parquet(path.join(glue, "mrpc", `${split}-00000-of-00001.parquet`));
    }
  } finally {
    await hub.close();
  }
  return root;
}
