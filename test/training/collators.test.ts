// DataCollatorWithPadding, default_data_collator and DataCollatorForLanguageModeling.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { AutoTokenizer } from "../../src/tokenizers/auto.js";
import { Dataset } from "../../src/datasets/dataset.js";
import { int64 } from "../../src/tensor/dtype.js";
import { Tensor } from "../../src/tensor/tensor.js";
import { tensor } from "../../src/tensor/creation.js";
import { DataCollatorWithPadding, default_data_collator } from "../../src/data/data_collator.js";
import { DataCollatorForLanguageModeling } from "../../src/data/language_modeling.js";
import { GOLDEN, TINY_BERT } from "../helpers/paths.js";

const tokenizer = await AutoTokenizer.from_pretrained(TINY_BERT);

/** The first 8 MRPC train rows as the course tokenizes them (golden/tokenizer), with labels added. */
function firstEightRows(): Record<string, unknown>[] {
  const lines = fs.readFileSync(path.join(GOLDEN, "tokenizer", "mrpc_sample.jsonl"), "utf8").trim().split("\n");
  return lines
    .map((l) => JSON.parse(l) as { split: string; input_ids: number[]; token_type_ids: number[] })
    .filter((r) => r.split === "train")
    .slice(0, 8)
    .map((r, i) => ({ input_ids: r.input_ids, token_type_ids: r.token_type_ids, attention_mask: r.input_ids.map(() => 1), label: i % 2 }));
}

const shapes = (batch: Record<string, Tensor>) => Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, [...v.shape]]));

test("the first 8 MRPC train rows collate to [8, 67], labels renamed and last", () => {
  const rows = firstEightRows();
  assert.deepEqual(rows.map((r) => (r.input_ids as number[]).length), [50, 59, 47, 67, 59, 50, 62, 32]);
  const collator = new DataCollatorWithPadding({ tokenizer });
  const batch = collator(rows);
  assert.deepEqual(shapes(batch), { input_ids: [8, 67], token_type_ids: [8, 67], attention_mask: [8, 67], labels: [8] });
  for (const t of Object.values(batch)) assert.equal(t.dtype, int64);
  const ids = batch.input_ids!.tolist() as number[][];
  const mask = batch.attention_mask!.tolist() as number[][];
  assert.deepEqual(ids[7]!.slice(32), new Array(35).fill(0));
  assert.deepEqual(mask[7]!.slice(30), [1, 1, ...new Array(35).fill(0)]);
  assert.deepEqual(batch.labels!.tolist(), [0, 1, 0, 1, 0, 1, 0, 1]);
});

test("DataCollatorWithPadding takes an object of columns (ds.slice) as well as a list of examples", () => {
  const ds = Dataset.from_list(firstEightRows());
  const collator = new DataCollatorWithPadding({ tokenizer });
  const fromColumns = collator(ds.slice(0, 8));
  const fromRows = collator(firstEightRows());
  assert.deepEqual(shapes(fromColumns), shapes(fromRows));
  assert.deepEqual(fromColumns.input_ids!.tolist(), fromRows.input_ids!.tolist());
  // torch-formatted rows arrive as tensors
  const torchRows = ds.with_format("torch");
  const fromTensors = collator([0, 1, 2].map((i) => torchRows.at(i)));
  assert.deepEqual(shapes(fromTensors), { input_ids: [3, 59], token_type_ids: [3, 59], attention_mask: [3, 59], labels: [3] });
});

test("DataCollatorWithPadding: max_length padding and pad_to_multiple_of", () => {
  const rows = firstEightRows().slice(0, 2);
  assert.deepEqual(new DataCollatorWithPadding({ tokenizer, pad_to_multiple_of: 8 })(rows).input_ids!.shape, [2, 64]);
  assert.deepEqual(new DataCollatorWithPadding({ tokenizer, padding: "max_length", max_length: 80 })(rows).input_ids!.shape, [2, 80]);
  assert.throws(() => new DataCollatorWithPadding({} as never), /needs a tokenizer/);
});

test("default_data_collator stacks equal-length features and refuses ragged ones", () => {
  const batch = default_data_collator([
    { input_ids: [1, 2, 3], label: 1, text: "a" },
    { input_ids: [4, 5, 6], label: 0, text: "b" },
  ]);
  assert.deepEqual(Object.keys(batch), ["labels", "input_ids"]);
  assert.deepEqual(batch.input_ids!.tolist(), [[1, 2, 3], [4, 5, 6]]);
  assert.equal(batch.labels!.dtype, int64);
  const floats = default_data_collator([{ x: tensor([1, 2]), label: 0.5 }, { x: tensor([3, 4]), label: 1.5 }]);
  assert.equal(floats.labels!.dtype.name, "float32");
  assert.deepEqual(floats.x!.shape, [2, 2]);
  assert.throws(() => default_data_collator([{ input_ids: [1, 2] }, { input_ids: [1] }]), /DataCollatorWithPadding/);
});

test("DataCollatorForLanguageModeling masks 15% of ordinary tokens, never special ones, reproducibly", () => {
  const rows = firstEightRows().map(({ input_ids }) => ({ input_ids }));
  const collate = () => new DataCollatorForLanguageModeling({ tokenizer, seed: 7 })(rows);
  const batch = collate();
  const original = new DataCollatorWithPadding({ tokenizer })(rows).input_ids!.tolist() as number[][];
  const ids = batch.input_ids!.tolist() as number[][];
  const labels = batch.labels!.tolist() as number[][];
  const special = new Set(tokenizer.all_special_ids);
  let candidates = 0;
  let picked = 0;
  let masked = 0;
  for (let r = 0; r < ids.length; r++) {
    for (let c = 0; c < ids[r]!.length; c++) {
      const o = original[r]![c]!;
      if (special.has(o)) {
        assert.equal(labels[r]![c], -100, "special tokens are never picked");
        assert.equal(ids[r]![c], o);
        continue;
      }
      candidates++;
      if (labels[r]![c] === -100) assert.equal(ids[r]![c], o, "tokens not picked stay as they were");
      else {
        picked++;
        assert.equal(labels[r]![c], o, "labels hold the original token");
        if (ids[r]![c] === tokenizer.mask_token_id) masked++;
      }
    }
  }
  assert.ok(picked / candidates > 0.08 && picked / candidates < 0.22, `picked ${picked} of ${candidates}`);
  assert.ok(masked / picked > 0.6, `[MASK] for ${masked} of ${picked}`);
  assert.deepEqual(collate().input_ids!.tolist(), ids, "the same seed masks the same tokens");
  const plain = new DataCollatorForLanguageModeling({ tokenizer, mlm: false })(rows);
  assert.equal((plain.labels!.tolist() as number[][])[7]![40], -100, "causal LM labels ignore padding");
});
