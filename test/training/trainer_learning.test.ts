// The Trainer learns: a tiny random BERT reaches high accuracy on a synthetic pair task in a short CPU run.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { torch } from "../../src/torch.js";
import { evaluate } from "../../src/evaluate/index.js";
import { Trainer } from "../../src/training/trainer.js";
import { TrainingArguments } from "../../src/training/training_args.js";
import type { EvalPrediction } from "../../src/training/trainer_utils.js";
import { pairTask, tinyBert } from "./fixtures.js";

test("a synthetic pair task reaches >= 95% eval accuracy", async () => {
  const output_dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-learn-"));
  const accuracy = await evaluate.load("accuracy");
  const trainer = new Trainer(
    tinyBert(),
    new TrainingArguments(output_dir, {
      learning_rate: 3e-3, num_train_epochs: 4, per_device_train_batch_size: 16, per_device_eval_batch_size: 64,
      eval_strategy: "epoch", save_strategy: "no", logging_strategy: "epoch", disable_tqdm: true, warmup_steps: 0.1,
    }),
    {
      train_dataset: pairTask(512, 1),
      eval_dataset: pairTask(256, 2),
      compute_metrics: (p: EvalPrediction) => accuracy.compute({ predictions: torch.argmax(p.predictions, -1), references: p.label_ids }) as Record<string, number>,
    },
  );
  await trainer.train();
  const evals = trainer.state.log_history.filter((h) => "eval_accuracy" in h);
  assert.equal(evals.length, 4, "one evaluation per epoch");
  const final = evals[evals.length - 1]!;
  assert.ok((final.eval_accuracy as number) >= 0.95, `eval_accuracy ${final.eval_accuracy}`);
  fs.rmSync(output_dir, { recursive: true, force: true });
});
