// Parity with PyTorch/transformers on the tiny BERT classifier: logits, loss, every gradient, and the
// parameters after 3 AdamW steps with linear warm-up and clipping (../shared/golden/tiny-bert-seqcls).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { BertForSequenceClassification } from "../../src/models/index.js";
import { AdamW, get_scheduler } from "../../src/optim/index.js";
import { clip_grad_norm_ } from "../../src/nn/utils.js";
import { load_file } from "../../src/safetensors/tensors.js";
import { TINY_BERT_SEQCLS } from "../helpers/paths.js";
import { assertClose, assertCloseRelMax } from "../helpers/compare.js";

const trace = JSON.parse(fs.readFileSync(path.join(TINY_BERT_SEQCLS, "trace.json"), "utf8"));
const batch = (i: number) => load_file(path.join(TINY_BERT_SEQCLS, `batch${i}.safetensors`));

test("forward: logits and loss equal transformers' within 1e-5", async () => {
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  model.train();
  const expected = load_file(path.join(TINY_BERT_SEQCLS, "step0_batch_logits.safetensors"));
  const out = model(batch(0));
  assertClose(out.logits, expected.logits, 1e-5, "logits");
  assert.ok(Math.abs(out.loss.item() - trace.step0_loss) <= 1e-5, `loss ${out.loss.item()} vs ${trace.step0_loss}`);
});

test("backward: every parameter's gradient within 1e-4 of its max-abs", async () => {
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  model.train();
  const expected = load_file(path.join(TINY_BERT_SEQCLS, "step0_grads.safetensors"));
  model(batch(0)).loss.backward();
  const named = Object.fromEntries(model.named_parameters());
  assert.deepEqual(Object.keys(named).sort(), Object.keys(expected).sort());
  for (const [name, p] of Object.entries(named)) {
    assert.ok(p.grad, `${name} has no gradient`);
    assertCloseRelMax(p.grad, expected[name], 1e-4, `grad of ${name}`);
  }
});

test("three AdamW steps with linear warm-up and clipping give transformers' parameters (1e-5)", async () => {
  const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS);
  model.train();
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 });
  const scheduler = get_scheduler("linear", { optimizer, num_warmup_steps: 1, num_training_steps: 3 });
  const losses: number[] = [];
  const lrs: number[] = [];
  for (let i = 0; i < 3; i++) {
    lrs.push(scheduler.get_last_lr()[0]);
    const loss = model(batch(i)).loss;
    losses.push(loss.item());
    loss.backward();
    clip_grad_norm_(model.parameters(), 1.0);
    optimizer.step();
    scheduler.step();
    optimizer.zero_grad();
  }
  assert.deepEqual(lrs, trace.lrs);
  losses.forEach((l, i) => assert.ok(Math.abs(l - trace.losses[i]) <= 1e-5, `loss ${i}: ${l} vs ${trace.losses[i]}`));
  const expected = load_file(path.join(TINY_BERT_SEQCLS, "after_steps_params.safetensors"));
  const state = model.state_dict();
  for (const [name, t] of Object.entries(expected)) assertClose(state[name], t, 1e-5, name);
});
