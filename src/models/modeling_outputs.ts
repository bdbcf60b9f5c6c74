// Model inputs and outputs: `model(batch)` takes the collated batch object; outputs have transformers' fields.
import { Tensor } from "../tensor/tensor.js";

export interface ModelInputs {
  input_ids?: Tensor;
  attention_mask?: Tensor | null;
  token_type_ids?: Tensor | null;
  position_ids?: Tensor | null;
  labels?: Tensor | null;
  output_hidden_states?: boolean;
  [extra: string]: unknown;
}

/** `model(input_ids)` and `model({ input_ids, ... })` both work, as in Python. */
export function toInputs(inputsOrIds: ModelInputs | Tensor): ModelInputs {
  if (inputsOrIds instanceof Tensor) return { input_ids: inputsOrIds };
  if (inputsOrIds === null || typeof inputsOrIds !== "object") {
    throw new TypeError("a model takes a batch object ({ input_ids, attention_mask, ... }) or an input_ids tensor");
  }
  for (const [k, v] of Object.entries(inputsOrIds)) {
    if (v !== null && v !== undefined && typeof v === "object" && !(v instanceof Tensor)) {
      throw new TypeError(`model input '${k}' must be a tensor (set the dataset format to "torch" or use a data collator), got ${Array.isArray(v) ? "an array" : typeof v}`);
    }
  }
  return inputsOrIds;
}

export class BaseModelOutputWithPooling {
  constructor(
    readonly last_hidden_state: Tensor,
    readonly pooler_output: Tensor | null,
    readonly hidden_states: Tensor[] | null = null,
  ) {}
}

export class SequenceClassifierOutput {
  constructor(
    readonly loss: Tensor | null,
    readonly logits: Tensor,
    readonly hidden_states: Tensor[] | null = null,
  ) {}
}

export class MaskedLMOutput {
  constructor(
    readonly loss: Tensor | null,
    readonly logits: Tensor,
    readonly hidden_states: Tensor[] | null = null,
  ) {}
}
