// Bad inputs fail early with messages that say what to do.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { Dataset } from "../../src/datasets/dataset.js";
import { Trainer, type TrainableModel } from "../../src/training/trainer.js";
import { TrainingArguments } from "../../src/training/training_args.js";
import { CALLBACK_EVENTS, EarlyStoppingCallback, TrainerCallback } from "../../src/training/callbacks.js";
import { TrainerState } from "../../src/training/trainer_state.js";
import type { Batch } from "../../src/data/data_collator.js";
import { pairTask, tinyBert } from "./fixtures.js";

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "finetune-errors-"));
const args = (dir: string, extra = {}) => new TrainingArguments(dir, { disable_tqdm: true, save_strategy: "no", num_train_epochs: 1, ...extra });

test("a NaN loss stops training, naming the step, with the last checkpoint intact", async () => {
  const dir = tmp();
  class NaNAtStep4 extends Trainer {
    override compute_loss(model: TrainableModel, inputs: Batch, return_outputs?: boolean): any {
      const [loss, outputs] = super.compute_loss(model, inputs, true);
      const out = this.state.global_step === 3 ? loss.mul(Number.NaN) : loss;
      return return_outputs ? [out, outputs] : out;
    }
  }
  const trainer = new NaNAtStep4(tinyBert(), args(dir, { save_strategy: "steps", save_steps: 2 }), { train_dataset: pairTask(64, 1) });
  await assert.rejects(trainer.train(), (err: Error) => {
    assert.match(err.message, /loss is NaN at step 4/);
    assert.match(err.message, /checkpoint-2, is intact/);
    return true;
  });
  assert.equal(TrainerState.load_from_json(path.join(dir, "checkpoint-2", "trainer_state.json")).global_step, 2);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("labels outside num_labels are a RangeError from the model", async () => {
  const dir = tmp();
  const base = pairTask(16, 1);
  const data = Dataset.from_dict({ ...base.slice(), label: (base.column("label") as number[]).map((l) => l + 2) });
  const trainer = new Trainer(tinyBert(), args(dir), { train_dataset: data });
  await assert.rejects(trainer.train(), RangeError);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("missing label or text columns, empty splits and an unwritable output_dir are clear errors", async () => {
  const dir = tmp();
  const noLabels = pairTask(16, 1).remove_columns(["label"]);
  await assert.rejects(new Trainer(tinyBert(), args(dir), { train_dataset: noLabels }).train(), /no label column/);
  const textOnly = Dataset.from_dict({ sentence1: ["a", "b"], label: [0, 1] });
  await assert.rejects(new Trainer(tinyBert(), args(dir), { train_dataset: textOnly }).train(), /No columns in the training dataset match/);
  const empty = pairTask(16, 1).select([]);
  await assert.rejects(new Trainer(tinyBert(), args(dir), { train_dataset: empty }).train(), /training dataset is empty/);
  await assert.rejects(new Trainer(tinyBert(), args(dir), { train_dataset: pairTask(8, 1), eval_dataset: empty }).evaluate(), /evaluation dataset is empty/);
  await assert.rejects(new Trainer(tinyBert(), args(dir)).train(), /requires a train_dataset/);
  const file = path.join(dir, "a-file");
  fs.writeFileSync(file, "");
  await assert.rejects(new Trainer(tinyBert(), args(path.join(file, "out")), { train_dataset: pairTask(8, 1) }).train(), /output_dir '.*' is not writable/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("callbacks see events in transformers' order; EarlyStoppingCallback stops training", async () => {
  const dir = tmp();
  const trainer = new Trainer(
    tinyBert(),
    args(dir, { num_train_epochs: 20, eval_strategy: "epoch", metric_for_best_model: "eval_loss", learning_rate: 0 }),
    { train_dataset: pairTask(16, 1), eval_dataset: pairTask(8, 2), callbacks: [new EarlyStoppingCallback(2)] },
  );
  const events: string[] = [];
  class Recorder extends TrainerCallback {}
  for (const name of CALLBACK_EVENTS) (Recorder.prototype as unknown as Record<string, () => void>)[name] = () => void events.push(name);
  trainer.add_callback(new Recorder());
  const result = await trainer.train();
  // lr 0: eval_loss never improves after the first evaluation, so patience 2 stops after epoch 3
  assert.equal(result.metrics.epoch, 3);
  assert.deepEqual(events.slice(0, 6), ["on_train_begin", "on_epoch_begin", "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end"]);
  assert.ok(events.includes("on_log") && events.includes("on_evaluate"));
  assert.equal(events[events.length - 1], "on_train_end");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("gradient accumulation takes one step per group of batches", async () => {
  const dir = tmp();
  const trainer = new Trainer(tinyBert(), args(dir, { gradient_accumulation_steps: 2, logging_steps: 1 }), { train_dataset: pairTask(32, 1) });
  const result = await trainer.train();
  assert.equal(result.global_step, 2);
  assert.equal(trainer.state.log_history.filter((h) => "loss" in h).length, 2);
  assert.ok(trainer.state.log_history.every((h) => !("loss" in h) || Number.isFinite(h.loss)));
  fs.rmSync(dir, { recursive: true, force: true });
});
