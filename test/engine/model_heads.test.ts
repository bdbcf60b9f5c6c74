// The heads' losses, as transformers picks them: regression for one label, single-label cross-entropy for
// integer labels, multi-label BCE for float label vectors; the MLM loss over the vocabulary with -100 ignored.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { BertConfig, BertForMaskedLM, BertForSequenceClassification } from "../../src/models/index.js";

const small = (extra: Record<string, unknown> = {}) =>
  new BertConfig({ vocab_size: 40, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, ...extra });
const input_ids = torch.tensor([[2, 5, 7, 0], [3, 9, 0, 0]]);
const attention_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]);

test("problem types: regression, single-label and multi-label, remembered in config.problem_type", () => {
  torch.manual_seed(0);
  const regression = BertForSequenceClassification.from_config(small({ num_labels: 1 })) as BertForSequenceClassification;
  const labels = torch.tensor([0.5, -1.5], { dtype: torch.float32 });
  const r = regression({ input_ids, attention_mask, labels });
  assert.equal(regression.config.problem_type, "regression");
  assert.ok(Math.abs(r.loss.item() - F.mse_loss(r.logits.squeeze(), labels).item()) < 1e-7);

  const single = BertForSequenceClassification.from_config(small({ num_labels: 3 })) as BertForSequenceClassification;
  const classes = torch.tensor([2, 0]);
  const s = single({ input_ids, attention_mask, labels: classes });
  assert.equal(single.config.problem_type, "single_label_classification");
  assert.ok(Math.abs(s.loss.item() - F.cross_entropy(s.logits, classes).item()) < 1e-7);
  assert.throws(() => single({ input_ids, labels: torch.tensor([3, 0]) }), /label 3 is outside \[0, 3\)/);

  const multi = BertForSequenceClassification.from_config(small({ num_labels: 2 })) as BertForSequenceClassification;
  const targets = torch.tensor([[1, 0], [1, 1]], { dtype: torch.float32 });
  const m = multi({ input_ids, attention_mask, labels: targets });
  assert.equal(multi.config.problem_type, "multi_label_classification");
  assert.ok(Math.abs(m.loss.item() - F.binary_cross_entropy_with_logits(m.logits, targets).item()) < 1e-7);
  m.loss.backward();
  assert.ok(multi.classifier.weight.grad, "the multi-label loss reaches the classifier");
});

test("masked LM: logits over the vocabulary, loss ignoring -100, padding masked out of attention", () => {
  torch.manual_seed(1);
  const model = BertForMaskedLM.from_config(small()) as BertForMaskedLM;
  const labels = torch.tensor([[-100, 5, -100, -100], [3, -100, -100, -100]]);
  const out = model({ input_ids, attention_mask, labels });
  assert.deepEqual(out.logits.shape, [2, 4, 40]);
  const expected = F.cross_entropy(out.logits.view([-1, 40]), labels.reshape([-1])).item();
  assert.ok(Math.abs(out.loss.item() - expected) < 1e-7);
  // A padding position's token does not change the other positions' outputs.
  const changed = torch.tensor([[2, 5, 7, 11], [3, 9, 0, 0]]);
  const again = model({ input_ids: changed, attention_mask });
  const a = out.logits.index(0, [0, 3]).data() as Float32Array;
  const b = again.logits.index(0, [0, 3]).data() as Float32Array;
  assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-5));
});

test("sequence classification computes the last layer at the first token alone: the logits, loss and gradients of the whole layer", () => {
  torch.manual_seed(2);
  // weights large enough that every block moves the logits (at the default 0.02 the residual path drowns the rest)
  const model = BertForSequenceClassification.from_config(small({ num_hidden_layers: 2, num_labels: 3, initializer_range: 0.5 })) as BertForSequenceClassification;
  const labels = torch.tensor([2, 0]);
  const grads = () => [...model.named_parameters()].map(([name, p]) => [name, Array.from(p.grad!.data() as Float32Array)] as const);
  const out = model({ input_ids, attention_mask, labels });
  out.loss!.backward();
  const fast = grads();
  model.zero_grad();
  // the same head on the whole last layer
  const whole = model.bert({ input_ids, attention_mask }, { first_token_only: false });
  assert.deepEqual(whole.last_hidden_state.shape, [2, 4, 8]);
  const logits = model.classifier(model.dropout(whole.pooler_output!));
  const loss = F.cross_entropy(logits, labels);
  loss.backward();
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, label: string) => {
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-5 * Math.abs(b[i]!) + 1e-7, `${label}[${i}]: ${a[i]} vs ${b[i]}`);
  };
  close(out.logits.data() as Float32Array, logits.data() as Float32Array, "logits");
  close([out.loss!.item()], [loss.item()], "loss");
  const wholeGrads = grads();
  fast.forEach(([name, g], i) => close(g, wholeGrads[i]![1], name));
  assert.deepEqual(model.bert({ input_ids, attention_mask }, { first_token_only: true }).last_hidden_state.shape, [2, 1, 8]);
  // hidden states asked for (here by the config, as transformers reads it): every layer whole
  model.config.output_hidden_states = true;
  const states = model({ input_ids, attention_mask }).hidden_states!;
  assert.deepEqual(states.map((h: Tensor) => h.shape), [[2, 4, 8], [2, 4, 8], [2, 4, 8]]);
  close(model.classifier(model.dropout(model.bert.pooler!(states[2]!))).data() as Float32Array, out.logits.data() as Float32Array, "logits with hidden states");
});
