// Padding of a batch of encoded inputs (lists of ids and their companion lists), as transformers' _pad.
import { is_tensor, to_tensor, type EngineTensor } from "../datasets/tensor_bridge.js";
import type { Side } from "./truncation.js";

export type PaddingStrategy = "longest" | "max_length" | "do_not_pad";

export interface PadSettings {
  strategy: PaddingStrategy;
  max_length?: number;
  pad_to_multiple_of?: number;
  side: Side;
  pad_token_id?: number;
  pad_token_type_id: number;
  return_attention_mask: boolean;
}

export function padding_strategy(padding: boolean | string | undefined): PaddingStrategy {
  if (padding === true || padding === "longest") return "longest";
  if (padding === "max_length") return "max_length";
  if (padding === false || padding === undefined || padding === "do_not_pad") return "do_not_pad";
  throw new Error(`padding='${padding}' is not one of true, 'longest', 'max_length', false, 'do_not_pad'`);
}

/** What each padded key is filled with; keys not listed (labels, …) are left alone. */
function fill_value(key: string, s: PadSettings): unknown {
  switch (key) {
    case "input_ids": return s.pad_token_id;
    case "token_type_ids": return s.pad_token_type_id;
    case "attention_mask": return 0;
    case "special_tokens_mask": return 1;
    case "offset_mapping": return [0, 0];
    default: return undefined;
  }
}

/** Pads every example of `batch` (columns of per-example lists) in place and returns it. */
export function pad_columns(batch: Record<string, unknown[]>, s: PadSettings): Record<string, unknown[]> {
  const ids = batch.input_ids as unknown[][] | undefined;
  if (!ids) throw new Error(`pad(): the inputs have no 'input_ids' (got ${Object.keys(batch).join(", ")})`);
  if (s.return_attention_mask && !batch.attention_mask) batch.attention_mask = ids.map((row) => row.map(() => 1));
  if (s.strategy === "do_not_pad") return batch;
  let target = s.strategy === "longest" ? Math.max(0, ...ids.map((row) => row.length)) : s.max_length!;
  if (s.pad_to_multiple_of && target % s.pad_to_multiple_of !== 0) {
    target = (Math.floor(target / s.pad_to_multiple_of) + 1) * s.pad_to_multiple_of;
  }
  if (s.pad_token_id === undefined && ids.some((row) => row.length < target)) {
    throw new Error(
      "Asking to pad but the tokenizer does not have a padding token. Set `tokenizer.pad_token` " +
        "(e.g. tokenizer.pad_token = tokenizer.eos_token) or add one with add_special_tokens({ pad_token: '[PAD]' }).",
    );
  }
  for (const [key, rows] of Object.entries(batch)) {
    const fill = fill_value(key, s);
    if (fill === undefined || !Array.isArray(rows[0])) continue;
    batch[key] = (rows as unknown[][]).map((row) => {
      const missing = target - row.length;
      if (missing <= 0) return row;
      const extra = Array.from({ length: missing }, () => fill);
      return s.side === "right" ? row.concat(extra) : extra.concat(row);
    });
  }
  return batch;
}

/** return_tensors: 'pt' — one int64 (or float32) tensor per key, refusing ragged rows as transformers does. */
export function as_tensors(batch: Record<string, unknown>): Record<string, EngineTensor> {
  const out: Record<string, EngineTensor> = {};
  for (const [key, value] of Object.entries(batch)) {
    if (is_tensor(value)) {
      out[key] = value;
      continue;
    }
    const rows = value as unknown[];
    if (Array.isArray(rows[0]) && rows.some((r) => (r as unknown[]).length !== (rows[0] as unknown[]).length)) {
      throw new Error(
        `Unable to create tensor for '${key}': its rows have different lengths. You should probably activate ` +
          "truncation and/or padding with `padding: true, truncation: true` to have batched tensors with the same length.",
      );
    }
    const flat = (rows as unknown[]).flat(2);
    const floating = flat.some((v) => typeof v === "number" && !Number.isInteger(v));
    out[key] = to_tensor(rows as never, floating ? "float32" : typeof flat[0] === "boolean" ? "bool" : "int64");
  }
  return out;
}
