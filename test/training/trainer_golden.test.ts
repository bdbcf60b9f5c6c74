// The Trainer reproduces transformers' own Trainer run (golden/trainer-trajectory): same losses, gradient
// norms, learning rates, final parameters and evaluation.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { BertForSequenceClassification } from "../../src/models/bert/modeling_bert.js";
import { load_file } from "../../src/safetensors/tensors.js";
import { torch } from "../../src/torch.js";
import { evaluate } from "../../src/evaluate/index.js";
import { DataCollatorWithPadding } from "../../src/data/data_collator.js";
import type { EvalPrediction } from "../../src/training/trainer_utils.js";
import { GOLDEN, TINY_BERT_SEQCLS } from "../helpers/paths.js";
import { maxAbsDiff } from "../helpers/compare.js";
import { goldenTrainingArgs, SequentialTrainer, tokenizedMrpc } from "./fixtures.js";

interface Trace {
  steps: { step: number; loss: number; grad_norm: number; learning_rate: number; epoch: number }[];
  train_metrics: Record<string, number>;
  eval_metrics: Record<string, number>;
}

test("Trainer matches transformers' trajectory on MRPC rows 0-255", async () => {
  const trace = JSON.parse(fs.readFileSync(path.join(GOLDEN, "trainer-trajectory", "trace.json"), "utf8")) as Trace;
  const { train, validation, tokenizer } = await tokenizedMrpc();
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  const output_dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-golden-"));
  const args = goldenTrainingArgs(output_dir);
  const metric = await evaluate.load("glue", "mrpc");
  const compute_metrics = (p: EvalPrediction) => metric.compute({ predictions: torch.argmax(p.predictions, -1), references: p.label_ids }) as Record<string, number>;
  const trainer = new SequentialTrainer(model, args, {
    train_dataset: train, eval_dataset: validation, data_collator: new DataCollatorWithPadding({ tokenizer }), compute_metrics,
  });
  const result = await trainer.train();

  const steps = trainer.state.log_history.filter((h) => "loss" in h);
  assert.equal(steps.length, trace.steps.length);
  for (const [i, expected] of trace.steps.entries()) {
    const got = steps[i]!;
    assert.equal(got.step, expected.step);
    assert.ok(Math.abs((got.loss as number) - expected.loss) <= 1e-5, `step ${expected.step} loss ${got.loss} vs ${expected.loss}`);
    assert.ok(Math.abs((got.grad_norm as number) - expected.grad_norm) <= 1e-5, `step ${expected.step} grad_norm ${got.grad_norm} vs ${expected.grad_norm}`);
    assert.equal(got.learning_rate, expected.learning_rate, `step ${expected.step} learning_rate`);
    assert.equal(got.epoch, expected.epoch);
  }
  assert.equal(result.global_step, 32);
  assert.ok(Math.abs(result.training_loss - trace.train_metrics.train_loss!) <= 1e-5);
  // PrinterCallback (disable_tqdm) pops total_flos from the logged dict, as in transformers
  assert.deepEqual(Object.keys(result.metrics), ["train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "epoch"]);

  const expectedParams = load_file(path.join(GOLDEN, "trainer-trajectory", "final_params.safetensors"));
  const own = model.state_dict();
  for (const [name, expected] of Object.entries(expectedParams)) {
    const d = maxAbsDiff(own[name]!, expected);
    assert.ok(d <= 1e-5, `${name}: max abs difference ${d}`);
  }

  const metrics = await trainer.evaluate();
  assert.deepEqual(Object.keys(metrics).slice(0, 3), ["eval_loss", "eval_accuracy", "eval_f1"]);
  assert.equal(metrics.eval_accuracy, trace.eval_metrics.eval_accuracy);
  assert.equal(metrics.eval_f1, trace.eval_metrics.eval_f1);
  assert.ok(Math.abs(metrics.eval_loss! - trace.eval_metrics.eval_loss!) <= 1e-5, `eval_loss ${metrics.eval_loss}`);
  assert.equal(metrics.epoch, 1);

  const prediction = await trainer.predict(validation);
  const expectedLogits = Object.values(load_file(path.join(GOLDEN, "trainer-trajectory", "eval_logits.safetensors")))[0]!;
  assert.deepEqual(prediction.predictions.shape, [64, 2]);
  assert.equal(prediction.label_ids.dtype.name, "int64");
  assert.ok(maxAbsDiff(prediction.predictions, expectedLogits) <= 1e-5);
  fs.rmSync(output_dir, { recursive: true, force: true });
});
