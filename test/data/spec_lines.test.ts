// The dataset and tokenizer lines of ../shared/spec/course-trainer.ts, run as written against the local
// Hub server serving ../shared/hub (bert-base-uncased and glue through their legacy names).
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { after, before, it } from "node:test";
import { AutoTokenizer, load_dataset, type DatasetDict } from "../../src/data_api.js";
import { startHub, type TestHub } from "../helpers/hub-server.js";

let hub: TestHub;
before(async () => {
  hub = await startHub();
});
after(() => hub.close());

it("runs the course notes' dataset and tokenizer lines", async () => {
  const raw_datasets = await load_dataset("glue", "mrpc") as DatasetDict;
  assert.match(inspect(raw_datasets), /^DatasetDict\(\{\n    train: Dataset\(\{\n        features: \['sentence1', 'sentence2', 'label', 'idx'\],\n        num_rows: 3668\n    \}\)/);
  const raw_train_dataset = raw_datasets["train"]!;
  assert.equal(raw_train_dataset.at(0).label, 1);
  assert.match(inspect(raw_train_dataset.features), /label: ClassLabel\(\{ names: \['not_equivalent', 'equivalent'\] \}\), idx: Value\('int32'\)/);

  const checkpoint = "bert-base-uncased";
  const tokenizer = await AutoTokenizer.from_pretrained(checkpoint);
  const inputs = tokenizer("This is the first sentence.", "This is the second one.");
  assert.deepEqual(inputs, {
    input_ids: [101, 2023, 2003, 1996, 2034, 6251, 1012, 102, 2023, 2003, 1996, 2117, 2028, 1012, 102],
    token_type_ids: [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
    attention_mask: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  });
  assert.deepEqual(tokenizer.convert_ids_to_tokens(inputs["input_ids"]),
    ["[CLS]", "this", "is", "the", "first", "sentence", ".", "[SEP]", "this", "is", "the", "second", "one", ".", "[SEP]"]);

  const tokenized_in_memory = tokenizer(
    raw_datasets["train"]!.column("sentence1"), raw_datasets["train"]!.column("sentence2"),
    { padding: true, truncation: true },
  );
  assert.equal(tokenized_in_memory.input_ids.length, 3668);
  assert.ok(tokenized_in_memory.input_ids.every((r: number[]) => r.length === tokenized_in_memory.input_ids[0].length));

  function tokenize_function(example: Record<string, any>) {
    return tokenizer(example["sentence1"], example["sentence2"], { truncation: true });
  }
  const tokenized_datasets = raw_datasets.map(tokenize_function, { batched: true });
  assert.match(inspect(tokenized_datasets), /features: \['sentence1', 'sentence2', 'label', 'idx', 'input_ids', 'token_type_ids', 'attention_mask'\],\n        num_rows: 3668/);

  let samples = tokenized_datasets["train"]!.slice(0, 8);
  samples = Object.fromEntries(Object.entries(samples).filter(([k]) => !["idx", "sentence1", "sentence2"].includes(k)));
  assert.deepEqual(samples["input_ids"]!.map((x: number[]) => x.length), [50, 59, 47, 67, 59, 50, 62, 32]);
  const batch = tokenizer.pad(samples, { return_tensors: "pt" });
  assert.deepEqual(Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, v.shape])),
    { label: [8], input_ids: [8, 67], token_type_ids: [8, 67], attention_mask: [8, 67] });

  // course-loop.ts: columns for the model, torch format
  let model_ready = tokenized_datasets.remove_columns(["sentence1", "sentence2", "idx"]);
  model_ready = model_ready.rename_column("label", "labels");
  model_ready.set_format("torch");
  assert.deepEqual([...model_ready["train"]!.column_names].sort(), ["attention_mask", "input_ids", "labels", "token_type_ids"]);
  const row = model_ready["train"]!.at(0);
  assert.deepEqual(row.input_ids.shape, [50]);
  assert.equal(row.labels.tolist(), 1);
  const padded = tokenizer.pad([model_ready["train"]!.at(0), model_ready["train"]!.at(3)], { return_tensors: "pt" });
  assert.deepEqual(padded.input_ids.shape, [2, 67]);
  assert.deepEqual(padded.labels.tolist(), [1, 0]);
});
