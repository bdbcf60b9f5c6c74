// transformers' DataCollatorForLanguageModeling: pads, then picks tokens for masked-language-model training
// (80% [MASK], 10% a random token, 10% unchanged); labels are -100 everywhere the loss should not look.
import { Tensor } from "../tensor/tensor.js";
import { fromFlat } from "../tensor/creation.js";
import { int64 } from "../tensor/dtype.js";
import { Generator, default_generator, rand } from "../ops/random.js";
import { Callable } from "../tokenizers/callable.js";
import type { PreTrainedTokenizerFast } from "../tokenizers/tokenization.js";
import type { Batch } from "./data_collator.js";
import type { Example, Features } from "./features.js";

export interface DataCollatorForLanguageModelingOptions {
  tokenizer: PreTrainedTokenizerFast;
  mlm?: boolean;
  mlm_probability?: number;
  mask_replace_prob?: number;
  random_replace_prob?: number;
  pad_to_multiple_of?: number | null;
  return_tensors?: "pt";
  /** Seeds a generator of the collator's own, so masking does not depend on (or move) the global RNG. */
  seed?: number | null;
}

export interface DataCollatorForLanguageModeling {
  (features: Features): Batch;
}

export class DataCollatorForLanguageModeling extends Callable<[Features], Batch> {
  readonly tokenizer: PreTrainedTokenizerFast;
  readonly mlm: boolean;
  readonly mlm_probability: number;
  readonly mask_replace_prob: number;
  readonly random_replace_prob: number;
  readonly pad_to_multiple_of: number | null;
  readonly generator: Generator;

  constructor(options: DataCollatorForLanguageModelingOptions) {
    super();
    const { tokenizer } = options;
    this.tokenizer = tokenizer;
    this.mlm = options.mlm ?? true;
    this.mlm_probability = options.mlm_probability ?? 0.15;
    this.mask_replace_prob = options.mask_replace_prob ?? 0.8;
    this.random_replace_prob = options.random_replace_prob ?? 0.1;
    this.pad_to_multiple_of = options.pad_to_multiple_of ?? null;
    this.generator = options.seed == null ? default_generator : new Generator().manual_seed(options.seed);
    if (this.mlm && tokenizer.mask_token === undefined) {
      throw new Error(
        "This tokenizer does not have a mask token which is necessary for masked language modeling. " +
          "You should pass `mlm: false` to train on causal language modeling instead.",
      );
    }
    for (const [name, p] of [["mlm_probability", this.mlm_probability], ["mask_replace_prob", this.mask_replace_prob], ["random_replace_prob", this.random_replace_prob]] as const) {
      if (p < 0 || p > 1) throw new RangeError(`${name} should be between 0 and 1, got ${p}`);
    }
    if (this.mask_replace_prob + this.random_replace_prob > 1) {
      throw new RangeError("The sum of mask_replace_prob and random_replace_prob should not exceed 1");
    }
  }

  protected _call(features: Features): Batch {
    const batch = this.tokenizer.pad(features as Example[], {
      padding: true,
      pad_to_multiple_of: this.pad_to_multiple_of,
      return_tensors: "pt",
    }) as Record<string, Tensor>;
    const special = batch["special_tokens_mask"];
    delete batch["special_tokens_mask"];
    const input_ids = batch["input_ids"]!;
    const ids = Array.from(input_ids.data() as BigInt64Array, Number);
    const labels = [...ids];
    if (this.mlm) {
      const specialFlags = special ? Array.from(special.data() as BigInt64Array, (v) => Number(v) !== 0) : this.specialTokenFlags(ids);
      this.maskTokens(ids, labels, specialFlags);
      input_ids.dispose();
      batch["input_ids"] = fromFlat(ids, input_ids.shape, int64);
    } else {
      const pad = this.tokenizer.pad_token_id;
      for (let i = 0; i < labels.length; i++) if (labels[i] === pad) labels[i] = -100;
    }
    special?.dispose();
    batch["labels"] = fromFlat(labels, batch["input_ids"]!.shape, int64);
    return batch;
  }

  private specialTokenFlags(ids: number[]): boolean[] {
    const special = new Set(this.tokenizer.all_special_ids);
    return ids.map((id) => special.has(id));
  }

  /** Uniform draws in [0, 1) from the collator's generator. */
  private uniform(n: number): Float32Array {
    const t = rand([n], { generator: this.generator });
    const values = (t.data() as Float32Array).slice();
    t.dispose();
    return values;
  }

  /** In place: ids get [MASK] / random tokens, labels keep the original id only where a token was picked. */
  private maskTokens(ids: number[], labels: number[], special: boolean[]): void {
    const n = ids.length;
    const pick = this.uniform(n);
    const replace = this.uniform(n);
    const randomize = this.uniform(n);
    const words = this.uniform(n);
    const mask_id = this.tokenizer.mask_token_id!;
    const vocab = this.tokenizer.vocab_size;
    const remaining = 1 - this.mask_replace_prob;
    // Of the tokens not turned into [MASK], the share that gets a random word
    const random_share = remaining === 0 ? 0 : this.random_replace_prob / remaining;
    for (let i = 0; i < n; i++) {
      const masked = !special[i] && pick[i]! < this.mlm_probability;
      if (!masked) {
        labels[i] = -100;
        continue;
      }
      if (replace[i]! < this.mask_replace_prob) ids[i] = mask_id;
      else if (randomize[i]! < random_share) ids[i] = Math.min(vocab - 1, Math.floor(words[i]! * vocab));
    }
  }
}
