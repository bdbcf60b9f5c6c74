import { test } from "node:test";
import path from "node:path";
import { GOLDEN } from "../helpers/paths.js";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { lrLambdaFor } from "../../src/training_api.js";

const close = (actual: number, expected: number, tol = 1e-12) => assert.ok(Math.abs(actual - expected) <= tol, `${actual} != ${expected}`);

test("golden trainer trajectory: linear, warmup 4, 32 steps, lr 1e-3 gives the logged learning rates exactly", () => {
  const trace = JSON.parse(readFileSync(path.join(GOLDEN, "trainer-trajectory", "trace.json"), "utf8"));
  const lambda = lrLambdaFor("linear", { num_warmup_steps: 4, num_training_steps: 32 });
  assert.equal(trace.steps.length, 32);
  // step k is logged after scheduler.step(), with the lr step k ran at: base_lr · λ(k − 1)
  for (const { step, learning_rate } of trace.steps) assert.equal(0.001 * lambda(step - 1), learning_rate, `step ${step}`);
});

test("linear by hand", () => {
  const l = lrLambdaFor("linear", { num_warmup_steps: 2, num_training_steps: 10 });
  // warmup 0/2, 1/2; then (10 − s) / 8
  assert.deepEqual([0, 1, 2, 6, 10, 12].map(l), [0, 0.5, 1, 0.5, 0, 0]);
  // no warmup: max(1, 0) guards the division
  assert.equal(lrLambdaFor("linear", { num_warmup_steps: 0, num_training_steps: 4 })(1), 0.75);
});

test("cosine and cosine_with_restarts by hand", () => {
  const c = lrLambdaFor("cosine", { num_warmup_steps: 0, num_training_steps: 10 });
  // ½(1 + cos(π · 2 · 0.5 · progress))
  close(c(5), 0.5);
  close(c(10), 0);
  close(c(2), 0.5 * (1 + Math.cos(Math.PI * 0.2)));
  const r = lrLambdaFor("cosine_with_restarts", { num_warmup_steps: 0, num_training_steps: 10, scheduler_specific_kwargs: { num_cycles: 2 } });
  // progress .5 → (2·.5) mod 1 = 0 → restart at 1; progress .3 → .6 → ½(1 + cos .6π)
  close(r(5), 1);
  close(r(3), 0.5 * (1 + Math.cos(0.6 * Math.PI)));
  assert.equal(r(10), 0);
  const w = lrLambdaFor("cosine", { num_warmup_steps: 4, num_training_steps: 12 });
  assert.equal(w(1), 0.25);
  close(w(8), 0.5);
});

test("polynomial depends on the initial lr", () => {
  const p = lrLambdaFor("polynomial", { num_warmup_steps: 2, num_training_steps: 12, initial_lr: 1e-3 });
  // step 7: 1 − 5/10 remains; ((1e-3 − 1e-7)·0.5 + 1e-7) / 1e-3 = 0.50005
  close(p(7), 0.50005);
  // past the end: lr_end / lr_init
  close(p(13), 1e-4);
  const p2 = lrLambdaFor("polynomial", { num_warmup_steps: 2, num_training_steps: 12, initial_lr: 1e-3, scheduler_specific_kwargs: { power: 2 } });
  // ((1e-3 − 1e-7)·0.25 + 1e-7) / 1e-3 = 0.250075
  close(p2(7), 0.250075);
  assert.throws(() => lrLambdaFor("polynomial", { num_warmup_steps: 0, num_training_steps: 5, initial_lr: 1e-8 }), /lr_end \(1e-7\) must be smaller than initial lr/);
  assert.throws(() => lrLambdaFor("polynomial", { num_warmup_steps: 0, num_training_steps: 5 }), /initial_lr/);
});

test("constant, constant_with_warmup, inverse_sqrt, cosine_with_min_lr", () => {
  assert.equal(lrLambdaFor("constant")(1000), 1);
  const cw = lrLambdaFor("constant_with_warmup", { num_warmup_steps: 4 });
  assert.deepEqual([0, 2, 4, 100].map(cw), [0, 0.5, 1, 1]);
  // timescale defaults to num_warmup_steps: 1/√((s + 0)/4)
  const is = lrLambdaFor("inverse_sqrt", { num_warmup_steps: 4 });
  assert.deepEqual([2, 4, 16].map(is), [0.5, 1, 0.5]);
  // without warmup the timescale is 10 000: 1/√((30000 + 10000)/10000) = 1/2
  assert.equal(lrLambdaFor("inverse_sqrt", { num_warmup_steps: 0 })(30000), 0.5);
  const m = lrLambdaFor("cosine_with_min_lr", { num_warmup_steps: 0, num_training_steps: 10, scheduler_specific_kwargs: { min_lr_rate: 0.1 } });
  // at the end the cosine factor is 0 → 0·0.9 + 0.1
  close(m(10), 0.1);
  const m2 = lrLambdaFor("cosine_with_min_lr", { num_warmup_steps: 0, num_training_steps: 10, initial_lr: 1e-3, scheduler_specific_kwargs: { min_lr: 1e-4 } });
  close(m2(5), 0.5 * 0.9 + 0.1);
});

test("errors name what is missing or wrong", () => {
  assert.throws(() => lrLambdaFor("cosine_annealing"), {
    message:
      "cosine_annealing is not a valid SchedulerType, please select one of ['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup', 'inverse_sqrt', 'cosine_with_min_lr']",
  });
  assert.throws(() => lrLambdaFor("linear", { num_warmup_steps: 0 }), /linear requires `num_training_steps`/);
  assert.throws(() => lrLambdaFor("constant_with_warmup"), /requires `num_warmup_steps`/);
  assert.throws(() => lrLambdaFor("cosine", { num_warmup_steps: 0, num_training_steps: 3, scheduler_specific_kwargs: { power: 2 } }), /unexpected lr_scheduler_kwargs power/);
});
