// The engine lines of ../shared/spec/course-loop.ts — model, device, optimizer, scheduler, the training loop with
// backward, and the evaluation — run as written with the tiny fixture from a local folder (the golden MRPC
// batches stand in for the DataLoader, which the data tests cover).
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { AutoModelForSequenceClassification, AdamW, get_scheduler, evaluate, torch, tqdm, type Tensor } from "../../src/index.js";
import { load_file } from "../../src/safetensors/tensors.js";
import { TINY_BERT, TINY_BERT_SEQCLS } from "../helpers/paths.js";

test("course-loop.ts: from_pretrained, to(device), AdamW, get_scheduler, backward/step, eval with a metric", async () => {
  const train_dataloader = [0, 1, 2].map((i) => load_file(path.join(TINY_BERT_SEQCLS, `batch${i}.safetensors`)));
  const eval_dataloader = train_dataloader;
  const silence = console.warn;
  console.warn = () => {};
  const model = await AutoModelForSequenceClassification.from_pretrained(TINY_BERT, { num_labels: 2 });
  console.warn = silence;
  const device = torch.cuda.is_available() ? torch.device("cuda") : torch.device("cpu");
  model.to(device);
  const optimizer = new AdamW(model.parameters(), { lr: 3e-5 });
  const num_epochs = 3;
  const num_training_steps = num_epochs * train_dataloader.length;
  const lr_scheduler = get_scheduler("linear", { optimizer, num_warmup_steps: 0, num_training_steps });
  const progress_bar = tqdm({ total: num_training_steps, disable: true });
  const before = (model.parameters()[0].data() as Float32Array).slice();
  const losses: number[] = [];
  model.train();
  for (let epoch = 0; epoch < num_epochs; epoch++) {
    for (let batch of train_dataloader) {
      batch = Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, v.to(device)]));
      const outputs = model(batch);
      const loss: Tensor = outputs.loss;
      losses.push(loss.item());
      loss.backward();
      optimizer.step();
      lr_scheduler.step();
      optimizer.zero_grad();
      progress_bar.update(1);
    }
  }
  assert.equal(optimizer.param_groups[0].lr, 0, "the linear schedule ends at 0");
  assert.ok(losses.every(Number.isFinite));
  assert.notDeepEqual(model.parameters()[0].data(), before, "the parameters were updated");

  const metric = await evaluate.load("glue", "mrpc");
  model.eval();
  for (let batch of eval_dataloader) {
    batch = Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, v.to(device)]));
    const outputs = torch.no_grad(() => model(batch));
    assert.equal(outputs.logits.requires_grad, false);
    const predictions = torch.argmax(outputs.logits, -1);
    metric.add_batch({ predictions, references: batch["labels"] });
  }
  const result = metric.compute() as { accuracy: number; f1: number };
  assert.deepEqual(Object.keys(result).sort(), ["accuracy", "f1"]);
  assert.ok(result.accuracy >= 0 && result.accuracy <= 1);
});
