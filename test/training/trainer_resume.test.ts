// Checkpoints: saving, rotation, and resuming equal to an uninterrupted run.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Trainer } from "../../src/training/trainer.js";
import { TrainingArguments, type TrainingArgumentsOptions } from "../../src/training/training_args.js";
import { TrainerState } from "../../src/training/trainer_state.js";
import { maxAbsDiff } from "../helpers/compare.js";
import { pairTask, tinyBert } from "./fixtures.js";

// 40 rows in batches of 8: 5 steps an epoch, 10 in all; checkpoints at 3 (epoch 1), 6 (epoch 2) and 9, 10.
const OPTIONS: TrainingArgumentsOptions = {
  learning_rate: 2e-3, num_train_epochs: 2, per_device_train_batch_size: 8, save_strategy: "steps", save_steps: 3,
  logging_steps: 1, disable_tqdm: true, weight_decay: 0.01, seed: 7,
};

async function run(output_dir: string, resume: string | boolean | null = null, extra: TrainingArgumentsOptions = {}) {
  // Dropout stays on (0.1), so the global generator's state matters too
  const model = tinyBert({}, 123);
  const trainer = new Trainer(model, new TrainingArguments(output_dir, { ...OPTIONS, ...extra }), { train_dataset: pairTask(40, 5) });
  await trainer.train({ resume_from_checkpoint: resume });
  return { model, trainer };
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "finetune-resume-"));

test("checkpoints hold the model, optimizer, scheduler, RNG and trainer state", async () => {
  const dir = tmp();
  const { trainer } = await run(dir);
  const names = fs.readdirSync(dir).filter((n) => n.startsWith("checkpoint-")).sort();
  assert.deepEqual(names, ["checkpoint-10", "checkpoint-3", "checkpoint-6", "checkpoint-9"]);
  assert.deepEqual(fs.readdirSync(path.join(dir, "checkpoint-3")).sort(), [
    "config.json", "model.safetensors", "optimizer.json", "optimizer.safetensors", "rng_state.json", "scheduler.json",
    "trainer_state.json", "training_args.json",
  ]);
  assert.ok(!fs.readdirSync(dir).some((n) => n.startsWith("tmp-")), "no temporary folder is left");
  const state = TrainerState.load_from_json(path.join(dir, "checkpoint-6", "trainer_state.json"));
  assert.equal(state.global_step, 6);
  assert.equal(state.log_history.length, 6);
  assert.equal(trainer.state.global_step, 10);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("resuming (mid-epoch and across an epoch boundary) ends with the same parameters", async () => {
  const full = tmp();
  const { model: reference } = await run(full);
  const expected = reference.state_dict();
  for (const checkpoint of ["checkpoint-3", "checkpoint-6"]) {
    const dir = tmp();
    const { model, trainer } = await run(dir, path.join(full, checkpoint));
    assert.equal(trainer.state.global_step, 10);
    for (const [name, t] of Object.entries(model.state_dict())) {
      assert.ok(maxAbsDiff(t, expected[name]!) <= 1e-6, `${checkpoint}: ${name} differs by ${maxAbsDiff(t, expected[name]!)}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  // resume_from_checkpoint: true picks the newest checkpoint of output_dir
  const { trainer } = await run(full, true);
  assert.equal(trainer.state.global_step, 10);
  fs.rmSync(full, { recursive: true, force: true });
});

test("resume_from_checkpoint: true without checkpoints is a clear error", async () => {
  const dir = tmp();
  const trainer = new Trainer(tinyBert(), new TrainingArguments(dir, OPTIONS), { train_dataset: pairTask(40, 5) });
  await assert.rejects(trainer.train({ resume_from_checkpoint: true }), /No valid checkpoint found in output directory/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("save_total_limit keeps the newest checkpoints", async () => {
  const dir = tmp();
  await run(dir, null, { save_total_limit: 2 });
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith("checkpoint-")).sort(), ["checkpoint-10", "checkpoint-9"]);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("load_best_model_at_end keeps and reloads the best checkpoint", async () => {
  const dir = tmp();
  const model = tinyBert({}, 123);
  const trainer = new Trainer(
    model,
    new TrainingArguments(dir, { ...OPTIONS, eval_strategy: "steps", eval_steps: 3, load_best_model_at_end: true, save_total_limit: 1 }),
    { train_dataset: pairTask(40, 5), eval_dataset: pairTask(16, 6) },
  );
  await trainer.train();
  const best = trainer.state.best_model_checkpoint;
  assert.ok(best !== null && fs.existsSync(best));
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith("checkpoint-")), [path.basename(best)]);
  const evals = trainer.state.log_history.filter((h) => "eval_loss" in h).map((h) => h.eval_loss as number);
  assert.equal(trainer.state.best_metric, Math.min(...evals));
  fs.rmSync(dir, { recursive: true, force: true });
});
