// transformers' data collators for classification: dynamic padding through the tokenizer, and the
// default collator that only stacks what is already the same length.
import { Tensor } from "../tensor/tensor.js";
import { tensor as toTensor } from "../tensor/creation.js";
import { stack } from "../ops/join.js";
import { float32, int64 } from "../tensor/dtype.js";
import { Callable } from "../tokenizers/callable.js";
import type { PadOptions, PreTrainedTokenizerFast } from "../tokenizers/tokenization.js";
import { asExamples, type Example, type Features } from "./features.js";

export type Batch = Record<string, Tensor>;

/** Moves `label` / `label_ids` to `labels`, last, as transformers' collators name it for the model. */
function renameLabels(batch: Record<string, unknown>): void {
  for (const key of ["label", "label_ids"]) {
    if (key in batch) {
      batch["labels"] = batch[key];
      delete batch[key];
    }
  }
}

export interface DataCollatorWithPaddingOptions {
  tokenizer: PreTrainedTokenizerFast;
  padding?: PadOptions["padding"];
  max_length?: number | null;
  pad_to_multiple_of?: number | null;
  return_tensors?: "pt";
}

export interface DataCollatorWithPadding {
  (features: Features): Batch;
}

/** Pads each batch to its longest example (or as `padding` says) and returns int64 tensors. */
export class DataCollatorWithPadding extends Callable<[Features], Batch> {
  readonly tokenizer: PreTrainedTokenizerFast;
  readonly padding: PadOptions["padding"];
  readonly max_length: number | null;
  readonly pad_to_multiple_of: number | null;
  readonly return_tensors: "pt";

  constructor(options: DataCollatorWithPaddingOptions) {
    super();
    if (!options?.tokenizer || typeof options.tokenizer.pad !== "function") {
      throw new TypeError("DataCollatorWithPadding needs a tokenizer: new DataCollatorWithPadding({ tokenizer })");
    }
    if (options.return_tensors !== undefined && options.return_tensors !== "pt") {
      throw new Error(`return_tensors='${options.return_tensors}' is not supported; use 'pt'`);
    }
    this.tokenizer = options.tokenizer;
    this.padding = options.padding ?? true;
    this.max_length = options.max_length ?? null;
    this.pad_to_multiple_of = options.pad_to_multiple_of ?? null;
    this.return_tensors = "pt";
  }

  protected _call(features: Features): Batch {
    const batch = this.tokenizer.pad(features as Example[], {
      padding: this.padding,
      max_length: this.max_length,
      pad_to_multiple_of: this.pad_to_multiple_of,
      return_tensors: this.return_tensors,
    });
    renameLabels(batch);
    return batch as Batch;
  }
}

function isNumberList(v: unknown): boolean {
  return Array.isArray(v) || ArrayBuffer.isView(v);
}

/** One tensor from the values of one key across examples: tensors are stacked, numbers and lists tensorised. */
function collateValues(key: string, values: unknown[], dtype?: typeof int64): Tensor {
  if (values[0] instanceof Tensor) return stack(values as Tensor[]);
  try {
    const plain = values.map((v) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>, Number) : v));
    return toTensor(plain as never, dtype ? { dtype } : {});
  } catch (err) {
    throw new Error(
      `default_data_collator: cannot stack '${key}' (${(err as Error).message}). Its examples differ in length: ` +
        "pad them with DataCollatorWithPadding({ tokenizer }) instead.",
    );
  }
}

/**
 * transformers' default_data_collator: `label` / `label_ids` become `labels` (int64 for integer labels,
 * float32 otherwise); every other non-string value is stacked into a tensor as it is (no padding).
 */
export function default_data_collator(features: Features): Batch {
  const examples = asExamples(features);
  if (examples.length === 0) return {};
  const first = examples[0]!;
  const batch: Batch = {};
  if (first["label"] !== undefined && first["label"] !== null) {
    const label = first["label"] instanceof Tensor ? first["label"].item() : (first["label"] as number);
    const dtype = Number.isInteger(label) ? int64 : float32;
    batch["labels"] = collateValues("label", examples.map((f) => (f["label"] instanceof Tensor ? f["label"].item() : f["label"])), dtype);
  } else if (first["label_ids"] !== undefined && first["label_ids"] !== null) {
    const ids = first["label_ids"];
    const probe = ids instanceof Tensor ? null : (ids as number[])[0];
    const dtype = probe === null ? undefined : Number.isInteger(probe) ? int64 : float32;
    batch["labels"] = collateValues("label_ids", examples.map((f) => f["label_ids"]), dtype);
  }
  for (const [key, value] of Object.entries(first)) {
    if (key === "label" || key === "label_ids" || value === null || value === undefined || typeof value === "string") continue;
    if (!(value instanceof Tensor) && !isNumberList(value) && typeof value !== "number" && typeof value !== "boolean") continue;
    batch[key] = collateValues(key, examples.map((f) => f[key]));
  }
  return batch;
}
