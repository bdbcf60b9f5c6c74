// Mixed precision in the Trainer (bf16 / fp16 with loss scaling), on the CPU as on a GPU: the golden MRPC run
// in 16-bit matrix products follows transformers' float32 trajectory within 16-bit rounding noise, and learns.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { BertForSequenceClassification } from "../../src/models/bert/modeling_bert.js";
import { torch } from "../../src/torch.js";
import { evaluate } from "../../src/evaluate/index.js";
import { DataCollatorWithPadding } from "../../src/data/data_collator.js";
import { Trainer } from "../../src/training/trainer.js";
import { TrainingArguments } from "../../src/training/training_args.js";
import type { EvalPrediction } from "../../src/training/trainer_utils.js";
import { GOLDEN, TINY_BERT_SEQCLS } from "../helpers/paths.js";
import { maxAbsDiff } from "../helpers/compare.js";
import { goldenTrainingArgs, SequentialTrainer, pairTask, tinyBert, tokenizedMrpc } from "./fixtures.js";

interface Trace {
  steps: { step: number; loss: number; grad_norm: number; learning_rate: number }[];
  eval_metrics: Record<string, number>;
}

async function goldenRun(options: Record<string, unknown>): Promise<{ trainer: Trainer; output_dir: string }> {
  const { train, validation, tokenizer } = await tokenizedMrpc();
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  const output_dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-mp-"));
  const args = goldenTrainingArgs(output_dir, options);
  const trainer = new SequentialTrainer(model, args, { train_dataset: train, eval_dataset: validation, data_collator: new DataCollatorWithPadding({ tokenizer }) });
  await trainer.train();
  return { trainer, output_dir };
}

const trace = (): Trace => JSON.parse(fs.readFileSync(path.join(GOLDEN, "trainer-trajectory", "trace.json"), "utf8")) as Trace;

for (const [flag, tolerance] of [["bf16", 2e-3], ["fp16", 2e-4]] as const) {
  test(`${flag}: the golden MRPC run follows transformers' float32 losses within ${flag} noise`, async () => {
    const expected = trace();
    const { trainer, output_dir } = await goldenRun({ [flag]: true });
    const steps = trainer.state.log_history.filter((h) => "loss" in h);
    assert.equal(steps.length, expected.steps.length);
    let worst = 0;
    let exact = 0;
    for (const [i, want] of expected.steps.entries()) {
      const got = steps[i]!;
      const d = Math.abs((got.loss as number) - want.loss);
      worst = Math.max(worst, d);
      if (d <= 1e-6) exact++;
      assert.equal(got.learning_rate, want.learning_rate, `step ${want.step}: no step was skipped`);
    }
    assert.ok(worst <= tolerance, `largest loss difference ${worst} > ${tolerance}`);
    // 16-bit products are not float32 ones: the run really took the mixed-precision path
    assert.ok(exact < expected.steps.length / 2, `${exact} of ${expected.steps.length} losses equal float32's to 1e-6`);
    const metrics = await trainer.evaluate();
    assert.ok(Math.abs(metrics.eval_loss! - expected.eval_metrics.eval_loss!) <= tolerance, `eval_loss ${metrics.eval_loss} vs ${expected.eval_metrics.eval_loss}`);
    fs.rmSync(output_dir, { recursive: true, force: true });
  });
}

test("fp16 checkpoints carry the loss scaler's state and a resumed run continues it", async () => {
  const { trainer, output_dir } = await goldenRun({ fp16: true, save_strategy: "steps", save_steps: 16 });
  const saved = JSON.parse(fs.readFileSync(path.join(output_dir, "checkpoint-16", "scaler.json"), "utf8")) as Record<string, number>;
  assert.deepEqual(saved, { scale: 65536, growth_factor: 2, backoff_factor: 0.5, growth_interval: 2000, _growth_tracker: 16 });
  assert.equal(trainer.scaler!.state_dict()._growth_tracker, 32);

  const { train, validation, tokenizer } = await tokenizedMrpc();
  const resumed = new SequentialTrainer(await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS), trainer.args, {
    train_dataset: train, eval_dataset: validation, data_collator: new DataCollatorWithPadding({ tokenizer }),
  });
  await resumed.train({ resume_from_checkpoint: path.join(output_dir, "checkpoint-16") });
  assert.deepEqual(resumed.scaler!.state_dict(), trainer.scaler!.state_dict());
  const own = resumed.model.state_dict();
  for (const [name, p] of Object.entries(trainer.model.state_dict())) assert.equal(maxAbsDiff(own[name]!, p), 0, name);
  fs.rmSync(output_dir, { recursive: true, force: true });
});

test("bf16 training learns the synthetic pair task as float32 does", async () => {
  const output_dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-mp-learn-"));
  const accuracy = await evaluate.load("accuracy");
  const trainer = new Trainer(
    tinyBert(),
    new TrainingArguments(output_dir, {
      learning_rate: 3e-3, num_train_epochs: 4, per_device_train_batch_size: 16, per_device_eval_batch_size: 64,
      eval_strategy: "no", save_strategy: "no", logging_strategy: "no", disable_tqdm: true, warmup_steps: 0.1, bf16: true,
    }),
    {
      train_dataset: pairTask(512, 1),
      eval_dataset: pairTask(256, 2),
      compute_metrics: (p: EvalPrediction) => accuracy.compute({ predictions: torch.argmax(p.predictions, -1), references: p.label_ids }) as Record<string, number>,
    },
  );
  await trainer.train();
  const metrics = await trainer.evaluate();
  assert.ok(metrics.eval_accuracy! >= 0.95, `eval_accuracy ${metrics.eval_accuracy}`);
  fs.rmSync(output_dir, { recursive: true, force: true });
});

test("tf32 without a GPU is refused as transformers refuses it", () => {
  assert.throws(() => new TrainingArguments("out", { tf32: true, use_cpu: true }), /--tf32 requires Ampere or a newer GPU arch/);
  assert.doesNotThrow(() => new TrainingArguments("out", { tf32: false, use_cpu: true }));
});
