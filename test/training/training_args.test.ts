import { test } from "node:test";
import assert from "node:assert/strict";
import { parse_training_cli, TrainingArguments } from "../../src/training_api.js";

test("transformers 5 defaults", () => {
  const args = new TrainingArguments("test-trainer");
  assert.equal(args.output_dir, "test-trainer");
  assert.equal(args.eval_strategy, "no");
  assert.equal(args.save_strategy, "steps");
  assert.equal(args.save_steps, 500);
  assert.equal(args.logging_strategy, "steps");
  assert.equal(args.logging_steps, 500);
  assert.equal(args.eval_steps, null);
  assert.equal(args.per_device_train_batch_size, 8);
  assert.equal(args.per_device_eval_batch_size, 8);
  assert.equal(args.num_train_epochs, 3);
  assert.equal(args.max_steps, -1);
  assert.equal(args.learning_rate, 5e-5);
  assert.equal(args.weight_decay, 0);
  assert.deepEqual([args.adam_beta1, args.adam_beta2, args.adam_epsilon], [0.9, 0.999, 1e-8]);
  assert.equal(args.max_grad_norm, 1.0);
  assert.equal(args.lr_scheduler_type, "linear");
  assert.equal(args.warmup_steps, 0);
  assert.equal(args.gradient_accumulation_steps, 1);
  assert.equal(args.seed, 42);
  assert.equal(args.optim, "adamw_torch_fused");
  assert.equal(args.remove_unused_columns, true);
  assert.equal(args.disable_tqdm, false);
  assert.deepEqual(args.report_to, []);
  assert.equal(args.do_eval, false);
  assert.equal(args.metric_for_best_model, null);
  assert.equal(args.greater_is_better, null);
  assert.equal(args.train_batch_size, 8);
  assert.equal(args.eval_batch_size, 8);
  assert.equal(new TrainingArguments().output_dir, "trainer_output");
});

test("derived values", () => {
  assert.equal(new TrainingArguments("o", { eval_strategy: "epoch" }).do_eval, true);
  assert.equal(new TrainingArguments("o", { evaluation_strategy: "epoch" }).eval_strategy, "epoch");
  // eval_steps falls back to logging_steps
  assert.equal(new TrainingArguments("o", { eval_strategy: "steps" }).eval_steps, 500);
  assert.equal(new TrainingArguments("o", { eval_strategy: "steps", logging_steps: 50 }).eval_steps, 50);
  const best = new TrainingArguments("o", { eval_strategy: "epoch", save_strategy: "epoch", load_best_model_at_end: true });
  assert.equal(best.metric_for_best_model, "loss");
  assert.equal(best.greater_is_better, false);
  assert.equal(new TrainingArguments("o", { metric_for_best_model: "accuracy" }).greater_is_better, true);
  assert.equal(new TrainingArguments("o", { metric_for_best_model: "eval_loss" }).greater_is_better, false);
  assert.deepEqual(new TrainingArguments("o", { report_to: "tensorboard" }).report_to, ["tensorboard"]);
  assert.equal(new TrainingArguments("o", { per_device_train_batch_size: 16 }).train_batch_size, 16);
});

test("get_warmup_steps: steps, or a ratio of the training steps", () => {
  assert.equal(new TrainingArguments("o", { warmup_steps: 4 }).get_warmup_steps(32), 4);
  // ceil(32 · 0.1) = ceil(3.2) = 4
  assert.equal(new TrainingArguments("o", { warmup_steps: 0.1 }).get_warmup_steps(32), 4);
  assert.equal(new TrainingArguments("o", { warmup_ratio: 0.1 }).get_warmup_steps(32), 4);
  assert.equal(new TrainingArguments("o").get_warmup_steps(32), 0);
});

test("validation errors read like transformers'", () => {
  assert.throws(() => new TrainingArguments("o", { load_best_model_at_end: true, eval_strategy: "epoch" }), {
    message: "--load_best_model_at_end requires the save and eval strategy to match, but found\n- Evaluation strategy: epoch\n- Save strategy: steps",
  });
  assert.throws(() => new TrainingArguments("o", { load_best_model_at_end: true, eval_strategy: "steps", eval_steps: 300 }), {
    message:
      "--load_best_model_at_end requires the saving steps to be a round multiple of the evaluation steps, but found 500, which is not a round multiple of 300.",
  });
  assert.throws(
    () => new TrainingArguments("o", { load_best_model_at_end: true, eval_strategy: "steps", eval_steps: 0.1, save_steps: 100 }),
    /mixing ratio and absolute steps/,
  );
  assert.throws(() => new TrainingArguments("o", { load_best_model_at_end: true, eval_strategy: "steps", eval_steps: 0.2, save_steps: 0.3 }), /not a multiple of 0.2/);
  // 0.3 is a multiple of 0.1 once both are scaled to integers
  assert.doesNotThrow(() => new TrainingArguments("o", { load_best_model_at_end: true, eval_strategy: "steps", eval_steps: 0.1, save_steps: 0.3 }));
  assert.doesNotThrow(() => new TrainingArguments("o", { load_best_model_at_end: true, eval_strategy: "steps", eval_steps: 100, save_steps: 500 }));
  assert.throws(() => new TrainingArguments("o", { fp16: true, bf16: true }), { message: "At most one of fp16 and bf16 can be True, but not both" });
  assert.throws(() => new TrainingArguments("o", { logging_steps: 0 }), { message: "logging strategy steps requires non-zero --logging_steps" });
  assert.throws(() => new TrainingArguments("o", { save_steps: 2.5 }), { message: "--save_steps must be an integer if bigger than 1: 2.5" });
  assert.throws(() => new TrainingArguments("o", { eval_strategy: "sometimes" as "no" }), {
    message: "sometimes is not a valid IntervalStrategy, please select one of ['no', 'steps', 'epoch']",
  });
  assert.throws(() => new TrainingArguments("o", { lr_scheduler_type: "cosinus" as "cosine" }), /cosinus is not a valid SchedulerType/);
});

test("unknown options and wrong types are named", () => {
  assert.throws(() => new TrainingArguments("o", { lerning_rate: 1e-3 } as never), {
    message: "TrainingArguments.__init__() got an unexpected keyword argument 'lerning_rate' (did you mean 'learning_rate'?)",
  });
  assert.throws(() => new TrainingArguments("o", { learning_rate: "3e-5" } as never), {
    message: 'TrainingArguments: learning_rate must be a number, got "3e-5"',
  });
  assert.throws(() => new TrainingArguments("o", { per_device_train_batch_size: 8.5 }), /per_device_train_batch_size must be an integer/);
  assert.throws(() => new TrainingArguments("o", { bf16: 1 } as never), /bf16 must be a boolean/);
  assert.throws(() => new TrainingArguments("o", { seed: null } as never), /seed cannot be null/);
});

test("to_dict and to_json_string (Python's float spelling)", () => {
  const args = new TrainingArguments("out", { lr_scheduler_kwargs: { num_cycles: 2 }, label_names: ["labels"] });
  const d = args.to_dict();
  assert.equal(d.learning_rate, 5e-5);
  assert.deepEqual(d.lr_scheduler_kwargs, { num_cycles: 2 });
  const json = args.to_json_string();
  assert.deepEqual(JSON.parse(json), JSON.parse(JSON.stringify(d)));
  assert.match(json, /^\{\n  "output_dir": "out",\n  "overwrite_output_dir": false,\n/);
  assert.match(json, /\n  "learning_rate": 5e-05,\n/);
  assert.match(json, /\n  "num_train_epochs": 3\.0,\n/);
  assert.match(json, /\n  "per_device_train_batch_size": 8,\n/);
  assert.match(json, /\n  "label_names": \[\n    "labels"\n  \],\n/);
});

test("repr like transformers' __str__", () => {
  const s = String(new TrainingArguments("test-trainer"));
  assert.ok(s.startsWith("TrainingArguments(\nadam_beta1=0.9,\nadam_beta2=0.999,\nadam_epsilon=1e-08,\n"));
  assert.ok(s.includes("\neval_strategy=IntervalStrategy.NO,\n"));
  assert.ok(s.includes("\nlearning_rate=5e-05,\n"));
  assert.ok(s.includes("\noutput_dir=test-trainer,\n"));
  assert.ok(s.includes("\nnum_train_epochs=3.0,\n"));
  assert.ok(s.includes("\nmetric_for_best_model=None,\n"));
  assert.ok(s.includes("\nreport_to=[],\n"));
  assert.ok(s.includes("\nwarmup_steps=0.0,\n"));
  assert.ok(s.endsWith("\nweight_decay=0.0,\n)"));
});

test("command-line flags", () => {
  const args = TrainingArguments.from_cli([
    "--output_dir", "out",
    "--learning_rate", "2e-5",
    "--bf16",
    "--num_train_epochs=1",
    "--eval_strategy", "epoch",
    "--save_strategy", "epoch",
    "--load_best_model_at_end", "true",
    "--report_to", "none",
    "--no_remove_unused_columns",
    "--lr_scheduler_kwargs", '{"num_cycles": 2}',
    "--label_names", "labels", "start_positions",
    "--save_total_limit", "None",
  ]);
  assert.equal(args.output_dir, "out");
  assert.equal(args.learning_rate, 2e-5);
  assert.equal(args.bf16, true);
  assert.equal(args.num_train_epochs, 1);
  assert.equal(args.eval_strategy, "epoch");
  assert.equal(args.load_best_model_at_end, true);
  assert.deepEqual(args.report_to, []);
  assert.equal(args.remove_unused_columns, false);
  assert.deepEqual(args.lr_scheduler_kwargs, { num_cycles: 2 });
  assert.deepEqual(args.label_names, ["labels", "start_positions"]);
  assert.equal(args.save_total_limit, null);

  const { options, remaining } = parse_training_cli(["--model", "bert-base-uncased", "--fp16", "--dataset", "glue", "--seed", "7", "extra"]);
  assert.deepEqual(options, { fp16: true, seed: 7 });
  assert.deepEqual(remaining, ["--model", "bert-base-uncased", "--dataset", "glue", "extra"]);

  assert.throws(() => TrainingArguments.from_cli(["--seed", "x"]), { message: "argument --seed: invalid int value: 'x'" });
  assert.throws(() => TrainingArguments.from_cli(["--learning_rate"]), /argument --learning_rate: expected one argument/);
  assert.throws(() => TrainingArguments.from_cli(["--modle", "x"]), /unrecognized arguments: --modle x/);
});
