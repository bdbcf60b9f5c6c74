// DataLoader and the samplers.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Dataset } from "../../src/datasets/dataset.js";
import { Generator } from "../../src/ops/random.js";
import { DataLoader } from "../../src/data/dataloader.js";
import { BatchSampler, RandomSampler, SequentialSampler } from "../../src/data/samplers.js";
import { DataCollatorWithPadding } from "../../src/data/data_collator.js";
import { AutoTokenizer } from "../../src/tokenizers/auto.js";
import { TINY_BERT } from "../helpers/paths.js";
import { Tensor } from "../../src/tensor/tensor.js";

const ds = Dataset.from_dict({ x: Array.from({ length: 10 }, (_, i) => i), ids: Array.from({ length: 10 }, (_, i) => Array.from({ length: 1 + (i % 3) }, () => i)) });

test("len(dataloader) counts batches, with and without drop_last", () => {
  assert.equal(new DataLoader(ds, { batch_size: 4 }).length, 3);
  assert.equal(new DataLoader(ds, { batch_size: 4, drop_last: true }).length, 2);
  assert.equal(new DataLoader(ds).length, 10);
  assert.equal([...new DataLoader(ds, { batch_size: 4, drop_last: true, collate_fn: (rows: unknown[]) => rows })].length, 2);
});

test("sequential batches read the right rows, collated by collate_fn", () => {
  const batches = [...new DataLoader(ds, { batch_size: 4, collate_fn: (rows: { x: number }[]) => rows.map((r) => r.x) })];
  assert.deepEqual(batches, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  const collated = [...new DataLoader(ds.select_columns(["x"]), { batch_size: 5 })];
  assert.ok(collated[0].x instanceof Tensor);
  assert.deepEqual(collated[1].x.tolist(), [5, 6, 7, 8, 9]);
});

test("shuffle draws a new permutation each epoch, reproducible from the generator", () => {
  const order = (dl: DataLoader<number[]>) => [...dl].flat();
  const dl = new DataLoader(ds, { batch_size: 3, shuffle: true, generator: new Generator().manual_seed(1), collate_fn: (rows: { x: number }[]) => rows.map((r) => r.x) });
  const first = order(dl);
  const second = order(dl);
  assert.deepEqual([...first].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.notDeepEqual(first, second);
  const again = new DataLoader(ds, { batch_size: 3, shuffle: true, generator: new Generator().manual_seed(1), collate_fn: (rows: { x: number }[]) => rows.map((r) => r.x) });
  assert.deepEqual(order(again), first);
});

test("samplers and BatchSampler", () => {
  assert.deepEqual([...new SequentialSampler(ds)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const random = new RandomSampler(ds, { generator: new Generator().manual_seed(3) });
  assert.equal(random.length, 10);
  assert.deepEqual([...random].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const withReplacement = [...new RandomSampler(ds, { replacement: true, num_samples: 50, generator: new Generator().manual_seed(3) })];
  assert.equal(withReplacement.length, 50);
  assert.ok(withReplacement.every((i) => i >= 0 && i < 10));
  const bs = new BatchSampler(new SequentialSampler(ds), 4, false);
  assert.deepEqual([...bs], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  assert.equal(bs.length, 3);
  const dl = new DataLoader(ds, { batch_sampler: new BatchSampler(new SequentialSampler(ds), 5, true), collate_fn: (rows: unknown[]) => rows.length });
  assert.deepEqual([...dl], [5, 5]);
  assert.throws(() => new DataLoader(ds, { batch_sampler: bs, batch_size: 4 }), /mutually exclusive/);
  assert.throws(() => new DataLoader(ds, { sampler: new SequentialSampler(ds), shuffle: true }), /mutually exclusive/);
});

test("a torch-formatted dataset with a padding collator gives padded int64 batches", async () => {
  const tokenizer = await AutoTokenizer.from_pretrained(TINY_BERT);
  const data = Dataset.from_dict({ input_ids: [[101, 7, 102], [101, 102], [101, 5, 6, 102]], labels: [1, 0, 1] });
  data.set_format("torch");
  const dl = new DataLoader(data, { batch_size: 3, collate_fn: new DataCollatorWithPadding({ tokenizer }) });
  const [batch] = [...dl];
  assert.deepEqual(batch!.input_ids!.tolist(), [[101, 7, 102, 0], [101, 102, 0, 0], [101, 5, 6, 102]]);
  assert.deepEqual(batch!.labels!.tolist(), [1, 0, 1]);
});

test("plain arrays work as datasets", () => {
  const dl = new DataLoader([{ a: 1 }, { a: 2 }, { a: 3 }], { batch_size: 2 });
  assert.deepEqual([...dl].map((b) => b.a.tolist()), [[1, 2], [3]]);
});
