import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CallbackHandler,
  DefaultFlowCallback,
  EarlyStoppingCallback,
  format_logs,
  TrainerCallback,
  TrainerControl,
  TrainerState,
  TrainingArguments,
  type TrainingArgumentsOptions,
} from "../../src/training_api.js";

/** Runs DefaultFlowCallback.on_step_end for each step; returns the steps at which each flag was raised. */
function flow(options: TrainingArgumentsOptions, max_steps: number) {
  const args = new TrainingArguments("o", options);
  const state = new TrainerState({ max_steps });
  state.compute_steps(args, max_steps);
  const cb = new DefaultFlowCallback();
  const seen = { log: [] as number[], evaluate: [] as number[], save: [] as number[], stop: [] as number[] };
  for (let step = 1; step <= max_steps; step++) {
    state.global_step = step;
    const control = new TrainerControl();
    cb.on_step_end(args, state, control);
    if (control.should_log) seen.log.push(step);
    if (control.should_evaluate) seen.evaluate.push(step);
    if (control.should_save) seen.save.push(step);
    if (control.should_training_stop) seen.stop.push(step);
  }
  return seen;
}

test("DefaultFlowCallback: defaults over 1377 steps", () => {
  // log and save every 500 steps; the last step stops and saves (save strategy steps) but does not log
  assert.deepEqual(flow({}, 1377), { log: [500, 1000], evaluate: [], save: [500, 1000, 1377], stop: [1377] });
});

test("DefaultFlowCallback: logging_first_step, eval every 20, no saving", () => {
  assert.deepEqual(flow({ logging_first_step: true, logging_steps: 10, eval_strategy: "steps", eval_steps: 20, save_strategy: "no" }, 45), {
    log: [1, 10, 20, 30, 40],
    evaluate: [20, 40],
    save: [],
    stop: [45],
  });
});

test("DefaultFlowCallback: ratios of max_steps and eval_delay", () => {
  // logging_steps 0.1 · 50 = 5; eval_steps ceil(0.25 · 50) = 13; save_steps ceil(0.5 · 50) = 25
  assert.deepEqual(flow({ logging_steps: 0.1, eval_strategy: "steps", eval_steps: 0.25, save_steps: 0.5 }, 50), {
    log: [5, 10, 15, 20, 25, 30, 35, 40, 45, 50],
    evaluate: [13, 26, 39],
    save: [25, 50],
    stop: [50],
  });
  assert.deepEqual(flow({ eval_strategy: "steps", eval_steps: 5, eval_delay: 10, save_strategy: "no" }, 20).evaluate, [10, 15, 20]);
});

test("DefaultFlowCallback: epoch strategies act at epoch ends only", () => {
  const options = { logging_strategy: "epoch", eval_strategy: "epoch", save_strategy: "epoch" } as const;
  assert.deepEqual(flow(options, 10), { log: [], evaluate: [], save: [], stop: [10] });
  const args = new TrainingArguments("o", options);
  const control = new DefaultFlowCallback().on_epoch_end(args, new TrainerState({ epoch: 1 }), new TrainerControl());
  assert.deepEqual([control.should_log, control.should_evaluate, control.should_save], [true, true, true]);
  const delayed = new TrainingArguments("o", { ...options, eval_delay: 2 });
  assert.equal(new DefaultFlowCallback().on_epoch_end(delayed, new TrainerState({ epoch: 1 }), new TrainerControl()).should_evaluate, false);
});

test("CallbackHandler: order, resets, and a returned control replacing the old one", () => {
  const calls: string[] = [];
  const replacement = new TrainerControl();
  class First extends TrainerCallback {
    override on_step_begin() {
      calls.push("first");
      return replacement;
    }
  }
  class Second extends TrainerCallback {
    override on_step_begin(_a: unknown, _s: unknown, control: TrainerControl) {
      calls.push(control === replacement ? "second saw replacement" : "second saw original");
    }
  }
  const handler = new CallbackHandler([DefaultFlowCallback, new First(), Second], null, null, null, null);
  const control = new TrainerControl({ should_log: true, should_save: true, should_evaluate: true });
  const out = handler.on_step_begin(new TrainingArguments("o"), new TrainerState(), control);
  assert.deepEqual(calls, ["first", "second saw replacement"]);
  assert.equal(out, replacement);
  assert.deepEqual([control.should_log, control.should_save, control.should_evaluate], [false, false, false]);
  assert.ok(handler.pop_callback(First) instanceof First);
  assert.equal(handler.callback_list, "DefaultFlowCallback\nSecond");
});

test("EarlyStoppingCallback: patience 2 with threshold 0.01 on accuracy", () => {
  const args = new TrainingArguments("o", { eval_strategy: "epoch", save_strategy: "epoch", load_best_model_at_end: true, metric_for_best_model: "accuracy" });
  const cb = new EarlyStoppingCallback(2, 0.01);
  cb.on_train_begin(args);
  const state = new TrainerState();
  const control = new TrainerControl();
  const evaluate = (accuracy: number) => cb.on_evaluate(args, state, control, { metrics: { eval_accuracy: accuracy } });
  evaluate(0.8); // no best yet
  assert.equal(cb.early_stopping_patience_counter, 0);
  state.best_metric = 0.8;
  evaluate(0.805); // better, but not by more than 0.01
  assert.equal(cb.early_stopping_patience_counter, 1);
  assert.equal(control.should_training_stop, false);
  evaluate(0.9); // a real improvement resets the count
  assert.equal(cb.early_stopping_patience_counter, 0);
  evaluate(0.79);
  evaluate(0.7);
  assert.equal(cb.early_stopping_patience_counter, 2);
  assert.equal(control.should_training_stop, true);
  assert.deepEqual(cb.state(), {
    args: { early_stopping_patience: 2, early_stopping_threshold: 0.01 },
    attributes: { early_stopping_patience_counter: 2 },
  });
  assert.equal(EarlyStoppingCallback.from_state(cb.state()).early_stopping_patience_counter, 2);
  assert.throws(() => cb.on_train_begin(new TrainingArguments("o")), /requires metric_for_best_model/);
});

test("trainer_state.json: transformers' format, atomic write, round trip", () => {
  const dir = mkdtempSync(join(tmpdir(), "trainer-state-"));
  const path = join(dir, "trainer_state.json");
  const state = new TrainerState({
    epoch: 1,
    global_step: 32,
    max_steps: 32,
    logging_steps: 1,
    num_train_epochs: 1,
    train_batch_size: 8,
    total_flos: 1234,
    log_history: [
      { epoch: 0.03125, grad_norm: 0.2545347213745117, learning_rate: 0.0, loss: 0.6908, step: 1 },
      { epoch: 1, eval_accuracy: 0.671875, eval_loss: 0.6389493942260742, step: 32 },
    ],
    stateful_callbacks: [new TrainerControl({ should_training_stop: true }), new EarlyStoppingCallback(3)],
  });
  state.save_to_json(path);
  assert.deepEqual(readdirSync(dir), ["trainer_state.json"]);
  const text = readFileSync(path, "utf8");
  // sorted keys, indent 2, floats spelt as Python does, trailing newline
  assert.ok(text.startsWith('{\n  "best_global_step": null,\n  "best_metric": null,\n  "best_model_checkpoint": null,\n  "epoch": 1.0,\n  "eval_steps": 500,\n'));
  assert.ok(text.includes('\n  "log_history": [\n    {\n      "epoch": 0.03125,\n      "grad_norm": 0.2545347213745117,\n      "learning_rate": 0.0,\n      "loss": 0.6908,\n      "step": 1\n    },\n'));
  assert.ok(text.includes('"total_flos": 1234.0,'));
  assert.ok(text.includes('"stateful_callbacks": {\n    "EarlyStoppingCallback": {'));
  assert.ok(text.endsWith("}\n"));
  const loaded = TrainerState.load_from_json(path);
  assert.deepEqual(loaded.to_dict(), state.to_dict());
  assert.deepEqual((loaded.stateful_callbacks["TrainerControl"] as { args: Record<string, boolean> }).args.should_training_stop, true);
});

test("log lines print as transformers 5 prints them", () => {
  // golden step 1 of the trainer trajectory
  assert.equal(
    format_logs({ loss: 0.6908109188079834, grad_norm: 0.2545347213745117, learning_rate: 0.0, epoch: 0.03125 }),
    "{'loss': '0.6908', 'grad_norm': '0.2545', 'learning_rate': '0', 'epoch': '0.03125'}",
  );
  assert.equal(
    format_logs({ train_runtime: 0.9676, train_samples_per_second: 264.568, train_loss: 0.6416006162762642, epoch: 1.0, total_flos: 5 }),
    "{'train_runtime': '0.9676', 'train_samples_per_second': '264.6', 'train_loss': '0.6416', 'epoch': '1'}",
  );
  assert.equal(format_logs({ learning_rate: 3.571428571428571e-5, num_input_tokens_seen: 4096 }), "{'learning_rate': '3.571e-05', 'num_input_tokens_seen': 4096}");
});
