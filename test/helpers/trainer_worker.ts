// A Trainer run the multi-process tests compare across launches (test/training/trainer_multi_process.test.ts, and
// on GPUs test/cuda/multi_gpu.test.ts): the script, its one-process run, and what a run wrote.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "./paths.js";

/**
 * Trains the tiny BERT on the synthetic pair task with per-device batch BATCH into OUT; writes what it reached to
 * OUT.<rank>.json (the lines of several processes' stdout may interleave).
 */
export const TRAINER_WORKER = `
const test = dist.replace(/src$/, "test");
const { tinyBert, pairTask } = await import(test + "/training/fixtures.js");
const { Trainer, TrainingArguments, torch } = await import(dist + "/index.js");
const fs = await import("node:fs");
const batch = Number(process.env.BATCH);
const args = new TrainingArguments(process.env.OUT, {
  per_device_train_batch_size: batch, per_device_eval_batch_size: 4, learning_rate: 1e-3, num_train_epochs: 2, seed: 42,
  logging_steps: 1, eval_strategy: "epoch", save_strategy: "epoch", report_to: "none", disable_tqdm: true, max_grad_norm: 0.5,
});
const accuracy = (p) => {
  const predicted = torch.argmax(p.predictions, -1).tolist(), labels = p.label_ids.tolist();
  return { accuracy: predicted.filter((v, i) => v === labels[i]).length / labels.length, seen: labels.length };
};
const model = tinyBert({ hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, 3);
const trainer = new Trainer(model, args, { train_dataset: pairTask(32, 1), eval_dataset: pairTask(16, 2), compute_metrics: accuracy });
const result = await trainer.train();
const predicted = await trainer.predict(pairTask(14, 5));
const logged = trainer.state.log_history.filter((h) => "loss" in h).map((h) => h.loss);
const evals = trainer.state.log_history.filter((h) => "eval_loss" in h).map((h) => [h.eval_loss, h.eval_accuracy, h.eval_seen]);
fs.writeFileSync(process.env.OUT + "." + args.process_index + ".json", JSON.stringify({ rank: args.process_index, world: args.world_size, steps: result.global_step, train_loss: result.training_loss, logged, evals,
  predictions: predicted.predictions.tolist(), parameters: [...model.parameters()].map((p) => [...p.data()]),
  checkpoints: fs.readdirSync(process.env.OUT).sort() }));
`;


/** What the run into `dir`/`run` wrote as process `rank`. */
export function trainerReport(dir: string, run: string, rank: number): Record<string, any> {
  return JSON.parse(fs.readFileSync(path.join(dir, `${run}.${rank}.json`), "utf8")) as Record<string, any>;
}

/** TRAINER_WORKER as one process of batch 8 into `dir`/one, with `env` added; its stdout, once it passed. */
export function runTrainerAlone(dir: string, env: Record<string, string> = {}): string {
  const script = path.join(dir, "alone.mjs");
  fs.writeFileSync(script, `const dist = ${JSON.stringify(path.join(REPO_ROOT, "dist/src"))};\n${TRAINER_WORKER}`);
  const alone = spawnSync(process.execPath, [script], { env: { ...process.env, BATCH: "8", OUT: path.join(dir, "one"), ...env }, encoding: "utf8" });
  assert.equal(alone.status, 0, alone.stderr);
  return alone.stdout;
}
