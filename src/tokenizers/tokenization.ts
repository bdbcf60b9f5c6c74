// PreTrainedTokenizerFast: transformers' tokenizer API (call, pad, decode, special tokens, save_pretrained)
// over a tokenizer.json.
import fs from "node:fs";
import path from "node:path";
import { inspect } from "node:util";
import { is_tensor, type EngineTensor } from "../datasets/tensor_bridge.js";
import { Callable } from "./callable.js";
import { SequenceEncoder } from "./encoder.js";
import { as_tensors, pad_columns, padding_strategy, type PadSettings } from "./padding.js";
import { assemble, num_special_tokens_to_add, template_from_json, type Assembled, type Template } from "./post_processor.js";
import { truncate_pair, type Side, type TruncationStrategy } from "./truncation.js";

/** transformers' VERY_LARGE_INTEGER: "no limit" for model_max_length. */
export const VERY_LARGE_INTEGER = 1e30;

export const SPECIAL_TOKEN_KEYS = [
  "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
] as const;
type SpecialKey = (typeof SPECIAL_TOKEN_KEYS)[number];

type TextInput = string | string[];
export type Json = Record<string, any>;

export interface CallOptions {
  add_special_tokens?: boolean;
  padding?: boolean | "longest" | "max_length" | "do_not_pad";
  truncation?: boolean | TruncationStrategy | "do_not_truncate";
  max_length?: number | null;
  stride?: number;
  pad_to_multiple_of?: number | null;
  padding_side?: Side;
  return_tensors?: "pt" | null;
  return_token_type_ids?: boolean;
  return_attention_mask?: boolean;
  return_special_tokens_mask?: boolean;
  return_offsets_mapping?: boolean;
  return_length?: boolean;
  is_split_into_words?: boolean;
  return_overflowing_tokens?: boolean;
}

export interface PadOptions {
  padding?: boolean | "longest" | "max_length" | "do_not_pad";
  max_length?: number | null;
  pad_to_multiple_of?: number | null;
  padding_side?: Side;
  return_attention_mask?: boolean;
  return_tensors?: "pt" | null;
}

export interface DecodeOptions {
  skip_special_tokens?: boolean;
  clean_up_tokenization_spaces?: boolean;
}

/** What tokenizer(...) returns: model inputs by name (lists, or tensors with return_tensors: 'pt'). */
export type BatchEncoding = Record<string, any>;

type Ids = number[] | EngineTensor | number;

export interface PreTrainedTokenizerFast {
  (text: TextInput, text_pair?: TextInput | null | CallOptions, options?: CallOptions): BatchEncoding;
}

export class PreTrainedTokenizerFast extends Callable<[TextInput, (TextInput | null | CallOptions)?, CallOptions?], BatchEncoding> {
  name_or_path: string;
  model_max_length: number;
  padding_side: Side;
  truncation_side: Side;
  model_input_names: string[];
  clean_up_tokenization_spaces: boolean;
  readonly init_kwargs: Json;
  pad_token_type_id = 0;

  bos_token?: string;
  eos_token?: string;
  unk_token?: string;
  sep_token?: string;
  pad_token?: string;
  cls_token?: string;
  mask_token?: string;
  additional_special_tokens: string[];

  /** @internal */ readonly _encoder: SequenceEncoder;
  private readonly tokenizer_json: Json;
  private readonly template: Template;

  constructor(tokenizer_json: Json, tokenizer_config: Json = {}, name_or_path = "") {
    super();
    this.tokenizer_json = tokenizer_json;
    this.init_kwargs = { ...tokenizer_config };
    this.name_or_path = name_or_path;
    this._encoder = new SequenceEncoder(tokenizer_json, tokenizer_config);
    this.template = template_from_json(tokenizer_json.post_processor ?? null, (t) => this._encoder.token_to_id(t) ?? -1);
    this.model_max_length = tokenizer_config.model_max_length ?? VERY_LARGE_INTEGER;
    this.padding_side = tokenizer_config.padding_side ?? "right";
    this.truncation_side = tokenizer_config.truncation_side ?? "right";
    this.clean_up_tokenization_spaces = tokenizer_config.clean_up_tokenization_spaces ?? false;
    const pair_types = new Set(this.template.pair.map((p) => p.type_id));
    this.model_input_names = tokenizer_config.model_input_names
      ?? (pair_types.size > 1 ? ["input_ids", "token_type_ids", "attention_mask"] : ["input_ids", "attention_mask"]);
    for (const key of SPECIAL_TOKEN_KEYS) {
      const value = token_content(tokenizer_config[key]);
      if (value !== undefined) this[key] = value;
    }
    this.additional_special_tokens = (tokenizer_config.additional_special_tokens ?? tokenizer_config.extra_special_tokens ?? [])
      .map(token_content).filter((t: string | undefined): t is string => t !== undefined);
  }

  get vocab_size(): number {
    return this.tokenizer_json.model?.vocab ? Object.keys(this.tokenizer_json.model.vocab).length : this._encoder.library.get_vocab(false).size;
  }

  get_vocab(): Record<string, number> {
    return Object.fromEntries(this._encoder.library.get_vocab(true));
  }

  private special_id(key: SpecialKey): number | undefined {
    const token = this[key];
    return token === undefined ? undefined : this._encoder.token_to_id(token);
  }
  get bos_token_id() { return this.special_id("bos_token"); }
  get eos_token_id() { return this.special_id("eos_token"); }
  get unk_token_id() { return this.special_id("unk_token"); }
  get sep_token_id() { return this.special_id("sep_token"); }
  get pad_token_id() { return this.special_id("pad_token"); }
  get cls_token_id() { return this.special_id("cls_token"); }
  get mask_token_id() { return this.special_id("mask_token"); }

  get special_tokens_map(): Record<string, string | string[]> {
    const map: Record<string, string | string[]> = {};
    for (const key of SPECIAL_TOKEN_KEYS) if (this[key] !== undefined) map[key] = this[key]!;
    if (this.additional_special_tokens.length) map.additional_special_tokens = this.additional_special_tokens;
    return map;
  }

  get all_special_tokens(): string[] {
    return [...new Set([...SPECIAL_TOKEN_KEYS.map((k) => this[k]).filter((t): t is string => !!t), ...this.additional_special_tokens])];
  }

  get all_special_ids(): number[] {
    return this.convert_tokens_to_ids(this.all_special_tokens);
  }

  num_special_tokens_to_add(pair = false): number {
    return num_special_tokens_to_add(this.template, pair);
  }

  protected _call(text: TextInput, text_pair?: TextInput | null | CallOptions, options?: CallOptions): BatchEncoding {
    if (text_pair !== null && typeof text_pair === "object" && !Array.isArray(text_pair)) {
      return this._call(text, null, text_pair);
    }
    const opts = options ?? {};
    if (opts.is_split_into_words) throw new Error("is_split_into_words is not supported yet; pass whole strings");
    if (opts.return_overflowing_tokens || (opts.stride ?? 0) !== 0) {
      throw new Error("return_overflowing_tokens / stride are not supported yet");
    }
    const batched = Array.isArray(text);
    const texts = batched ? text : [text];
    const pair = text_pair ?? null;
    if (pair !== null && Array.isArray(pair) !== batched) {
      throw new Error("text and text_pair must both be strings or both be lists of strings");
    }
    const pairs = pair === null ? null : Array.isArray(pair) ? pair : [pair];
    if (pairs && pairs.length !== texts.length) {
      throw new Error(`text has ${texts.length} entries but text_pair has ${pairs.length}; they must have the same length`);
    }
    for (const t of [...texts, ...(pairs ?? [])]) {
      if (typeof t !== "string") {
        throw new TypeError(`text input must be of type string or a list of strings (got ${inspect(t)})`);
      }
    }
    const encodings = texts.map((t, i) => this.encode_one(t, pairs ? pairs[i]! : null, opts));
    return this.finish(encodings, batched, opts);
  }

  private truncation_settings(opts: CallOptions): { strategy?: TruncationStrategy; max_length: number } {
    let truncation = opts.truncation;
    const padding = padding_strategy(opts.padding);
    if (truncation === undefined && opts.max_length != null && padding === "do_not_pad") truncation = "longest_first";
    const strategy = truncation === true ? "longest_first" : truncation === false || truncation === "do_not_truncate" ? undefined : truncation;
    const max_length = opts.max_length ?? this.model_max_length;
    return { strategy: max_length >= VERY_LARGE_INTEGER ? undefined : strategy, max_length };
  }

  private encode_one(a: string, b: string | null, opts: CallOptions): Assembled {
    const offsets = opts.return_offsets_mapping ?? false;
    const add_special = opts.add_special_tokens ?? true;
    const { strategy, max_length } = this.truncation_settings(opts);
    const stop_at = strategy ? max_length : Infinity;
    let first = this._encoder.encode(a, offsets, stop_at);
    let second = b === null ? null : this._encoder.encode(b, offsets, stop_at);
    if (strategy) {
      const budget = max_length - (add_special ? this.num_special_tokens_to_add(second !== null) : 0);
      [first, second] = truncate_pair(first, second, strategy, budget, this.truncation_side, max_length);
    }
    return assemble(this.template, first, second, add_special);
  }

  private finish(encodings: Assembled[], batched: boolean, opts: CallOptions): BatchEncoding {
    const want_types = opts.return_token_type_ids ?? this.model_input_names.includes("token_type_ids");
    const want_mask = opts.return_attention_mask ?? this.model_input_names.includes("attention_mask");
    const columns: Record<string, unknown[]> = { input_ids: encodings.map((e) => e.ids) };
    if (want_types) columns.token_type_ids = encodings.map((e) => e.type_ids);
    if (want_mask) columns.attention_mask = encodings.map((e) => e.ids.map(() => 1));
    if (opts.return_special_tokens_mask) columns.special_tokens_mask = encodings.map((e) => e.special_tokens_mask);
    if (opts.return_offsets_mapping) columns.offset_mapping = encodings.map((e) => e.offsets);
    pad_columns(columns, this.pad_settings({ ...opts, return_attention_mask: want_mask }));
    if (opts.return_length) columns.length = (columns.input_ids as unknown[][]).map((r) => r.length);
    const out: BatchEncoding = batched ? columns : Object.fromEntries(Object.entries(columns).map(([k, v]) => [k, v[0]]));
    if (opts.return_tensors === "pt") return as_tensors(batched ? out : columns);
    if (opts.return_tensors) throw new Error(`return_tensors='${opts.return_tensors}' is not supported; use 'pt'`);
    return out;
  }

  private pad_settings(opts: PadOptions): PadSettings {
    const strategy = padding_strategy(opts.padding);
    const max_length = opts.max_length ?? (strategy === "max_length" ? this.model_max_length : undefined);
    if (strategy === "max_length" && (max_length === undefined || max_length >= VERY_LARGE_INTEGER)) {
      throw new Error("padding='max_length' needs max_length (this tokenizer has no model_max_length)");
    }
    return {
      strategy, max_length: max_length ?? undefined, pad_to_multiple_of: opts.pad_to_multiple_of ?? undefined,
      side: opts.padding_side ?? this.padding_side, pad_token_id: this.pad_token_id,
      pad_token_type_id: this.pad_token_type_id, return_attention_mask: opts.return_attention_mask ?? true,
    };
  }

  /**
   * Pads already-encoded inputs (a list of examples or a dict of columns) to the same length, as
   * DataCollatorWithPadding needs; keys other than model inputs (labels, …) are passed through.
   */
  pad(
    encoded_inputs: Record<string, unknown>[] | Record<string, unknown>,
    options: PadOptions = {},
  ): BatchEncoding {
    const columns: Record<string, unknown[]> = {};
    if (Array.isArray(encoded_inputs)) {
      if (encoded_inputs.length === 0) return {};
      for (const key of Object.keys(encoded_inputs[0]!)) columns[key] = encoded_inputs.map((ex) => to_list(ex[key]));
    } else {
      for (const [key, value] of Object.entries(encoded_inputs)) {
        const list = to_list(value);
        columns[key] = Array.isArray(list) ? list : [list];
      }
    }
    const single = !Array.isArray(columns.input_ids?.[0]);
    if (single) for (const key of Object.keys(columns)) columns[key] = [columns[key]];
    const want_mask = options.return_attention_mask ?? this.model_input_names.includes("attention_mask");
    pad_columns(columns, this.pad_settings({ padding: true, ...options, return_attention_mask: want_mask }));
    const out: BatchEncoding = single ? Object.fromEntries(Object.entries(columns).map(([k, v]) => [k, v[0]])) : columns;
    if (options.return_tensors === "pt") return as_tensors(single ? out : columns);
    return out;
  }

  tokenize(text: string, pair: string | null = null, options: { add_special_tokens?: boolean } = {}): string[] {
    const enc = this.encode_one(text, pair, { add_special_tokens: options.add_special_tokens ?? false });
    return this.convert_ids_to_tokens(enc.ids);
  }

  encode(text: string, text_pair: string | null = null, options: CallOptions = {}): number[] {
    return this._call(text, text_pair, options).input_ids as number[];
  }

  convert_ids_to_tokens(ids: number, options?: { skip_special_tokens?: boolean }): string;
  convert_ids_to_tokens(ids: number[] | EngineTensor, options?: { skip_special_tokens?: boolean }): string[];
  convert_ids_to_tokens(ids: Ids, options: { skip_special_tokens?: boolean } = {}): string | string[] {
    if (typeof ids === "number") return this._encoder.id_to_token(ids)!;
    const special = new Set(options.skip_special_tokens ? this.all_special_ids : []);
    return (to_list(ids) as number[]).filter((id) => !special.has(id)).map((id) => this._encoder.id_to_token(id)!);
  }

  convert_tokens_to_ids(tokens: string): number;
  convert_tokens_to_ids(tokens: string[]): number[];
  convert_tokens_to_ids(tokens: string | string[]): number | number[] {
    const one = (t: string) => this._encoder.token_to_id(t) ?? this.unk_token_id ?? this._encoder.unk_token_id!;
    return typeof tokens === "string" ? one(tokens) : tokens.map(one);
  }

  decode(ids: Ids, options: DecodeOptions = {}): string {
    const list = (typeof ids === "number" ? [ids] : (to_list(ids) as unknown[]).flat()) as number[];
    if (list.length === 0) return "";
    return this._encoder.library.decode(list, {
      skip_special_tokens: options.skip_special_tokens ?? false,
      clean_up_tokenization_spaces: options.clean_up_tokenization_spaces ?? this.clean_up_tokenization_spaces,
    });
  }

  batch_decode(sequences: number[][] | EngineTensor, options: DecodeOptions = {}): string[] {
    return (to_list(sequences) as number[][]).map((ids) => this.decode(ids, options));
  }

  /** Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json; returns their paths. */
  save_pretrained(save_directory: string): string[] {
    fs.mkdirSync(save_directory, { recursive: true });
    const config = {
      ...this.init_kwargs, ...this.special_tokens_map,
      model_max_length: this.model_max_length, padding_side: this.padding_side, truncation_side: this.truncation_side,
      clean_up_tokenization_spaces: this.clean_up_tokenization_spaces, model_input_names: this.model_input_names,
      tokenizer_class: this.constructor.name,
    };
    const files: [string, unknown][] = [
      ["tokenizer_config.json", config], ["special_tokens_map.json", this.special_tokens_map], ["tokenizer.json", this.tokenizer_json],
    ];
    return files.map(([name, value]) => {
      const file = path.join(save_directory, name);
      fs.writeFileSync(file, JSON.stringify(value, null, 2) + "\n");
      return file;
    });
  }

  [inspect.custom](): string {
    const specials = Object.entries(this.special_tokens_map).map(([k, v]) => `'${k}': '${v}'`).join(", ");
    return `${this.constructor.name}(name_or_path='${this.name_or_path}', vocab_size=${this.vocab_size}, ` +
      `model_max_length=${this.model_max_length}, padding_side='${this.padding_side}', ` +
      `truncation_side='${this.truncation_side}', special_tokens={${specials}})`;
  }
}

/** The Python name for the same class: transformers 5 tokenizers are all backed by tokenizer.json. */
export const PreTrainedTokenizer = PreTrainedTokenizerFast;
export type PreTrainedTokenizer = PreTrainedTokenizerFast;

/** BERT's tokenizer: the special tokens default to [UNK] [SEP] [PAD] [CLS] [MASK], as transformers has them. */
export class BertTokenizerFast extends PreTrainedTokenizerFast {
  constructor(tokenizer_json: Json, tokenizer_config: Json = {}, name_or_path = "") {
    const defaults = { unk_token: "[UNK]", sep_token: "[SEP]", pad_token: "[PAD]", cls_token: "[CLS]", mask_token: "[MASK]" };
    super(tokenizer_json, { ...defaults, ...tokenizer_config }, name_or_path);
  }
}
export const BertTokenizer = BertTokenizerFast;

function token_content(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && "content" in value) return String((value as { content: unknown }).content);
  return undefined;
}

function to_list(value: unknown): unknown {
  if (is_tensor(value)) return value.tolist();
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>, Number);
  if (Array.isArray(value)) return value.map((v) => (is_tensor(v) || ArrayBuffer.isView(v) ? to_list(v) : v));
  return value;
}
