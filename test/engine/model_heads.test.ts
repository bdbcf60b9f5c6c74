// The heads' losses, as transformers picks them: regression for one label, single-label cross-entropy for
// integer labels, multi-label BCE for float label vectors; the MLM loss over the vocabulary with -100 ignored.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
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
