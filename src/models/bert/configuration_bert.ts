// BertConfig, with transformers' defaults (those of bert-base-uncased).
import { PretrainedConfig } from "../configuration_utils.js";

export class BertConfig extends PretrainedConfig {
  static override model_type = "bert";
  vocab_size = 30522;
  hidden_size = 768;
  num_hidden_layers = 12;
  num_attention_heads = 12;
  intermediate_size = 3072;
  hidden_act = "gelu";
  hidden_dropout_prob = 0.1;
  attention_probs_dropout_prob = 0.1;
  max_position_embeddings = 512;
  type_vocab_size = 2;
  initializer_range = 0.02;
  layer_norm_eps = 1e-12;
  override pad_token_id: number | null = 0;
  position_embedding_type = "absolute";
  use_cache = true;
  classifier_dropout: number | null = null;

  constructor(kwargs: Record<string, unknown> = {}) {
    super();
    this.update(kwargs);
    if (this.hidden_size % this.num_attention_heads !== 0) {
      throw new Error(`The hidden size (${this.hidden_size}) is not a multiple of the number of attention heads (${this.num_attention_heads})`);
    }
  }
}
