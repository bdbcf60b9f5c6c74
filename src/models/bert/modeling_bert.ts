// BERT, block for block as transformers' modeling_bert.py, with the checkpoint's parameter names.
import { Tensor } from "../../tensor/tensor.js";
import { arange, zeros } from "../../tensor/creation.js";
import { float32, int64 } from "../../tensor/dtype.js";
import { Module } from "../../nn/module.js";
import { Parameter } from "../../nn/parameter.js";
import { Dropout, Embedding, LayerNorm, Linear, ModuleList } from "../../nn/layers.js";
import * as init from "../../nn/init.js";
import * as F from "../../nn/functional.js";
import { add, gelu, mul, relu, sub, tanh } from "../../ops/elementwise.js";
import { linear_gelu } from "../../ops/matmul.js";
import { packed_linear_attention, packedAttentionApplies } from "../../ops/attention.js";
import { PreTrainedModel } from "../modeling_utils.js";
import { dropout_add_layer_norm, embedding_sum } from "../../ops/functional.js";
import { cuda } from "../../backend/cuda.js";
import { BertConfig } from "./configuration_bert.js";
import {
  BaseModelOutputWithPooling,
  MaskedLMOutput,
  SequenceClassifierOutput,
  toInputs,
  type ModelInputs,
} from "../modeling_outputs.js";

type Activation = (x: Tensor) => Tensor;

function activation(name: string): Activation {
  switch (name) {
    case "gelu":
      return (x) => gelu(x);
    case "gelu_new":
    case "gelu_pytorch_tanh":
      return (x) => gelu(x, "tanh");
    case "relu":
      return relu;
    case "tanh":
      return tanh;
    default:
      throw new Error(`activation function ${name} not found in ACT2FN (supported: gelu, gelu_new, gelu_pytorch_tanh, relu, tanh)`);
  }
}

export class BertEmbeddings extends Module {
  word_embeddings: Embedding;
  position_embeddings: Embedding;
  token_type_embeddings: Embedding;
  LayerNorm: LayerNorm;
  dropout: Dropout;
  declare position_ids: Tensor;
  declare token_type_ids: Tensor;

  constructor(config: BertConfig) {
    super();
    this.word_embeddings = new Embedding(config.vocab_size, config.hidden_size, { padding_idx: config.pad_token_id });
    this.position_embeddings = new Embedding(config.max_position_embeddings, config.hidden_size);
    this.token_type_embeddings = new Embedding(config.type_vocab_size, config.hidden_size);
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.dropout = new Dropout(config.hidden_dropout_prob);
    this.register_buffer("position_ids", arange(config.max_position_embeddings).reshape([1, -1]), false);
    this.register_buffer("token_type_ids", zeros([1, config.max_position_embeddings], { dtype: int64 }), false);
  }

  forward(input_ids: Tensor, token_type_ids: Tensor | null = null, position_ids: Tensor | null = null): Tensor {
    const [batch, seq] = input_ids.shape;
    if (seq > this.position_ids.shape[1]) {
      throw new Error(`input_ids has ${seq} tokens, more than max_position_embeddings (${this.position_ids.shape[1]}): truncate the inputs (tokenizer truncation: true)`);
    }
    const positions = position_ids ?? this.position_ids.narrow(1, 0, seq);
    const types = token_type_ids ?? this.token_type_ids.narrow(1, 0, seq).expand([batch, seq]);
    // the three lookups added as transformers adds them ((word + token type) + position), in one kernel on CUDA
    const tables = [this.word_embeddings, this.token_type_embeddings, this.position_embeddings] as const;
    const embeddings = embedding_sum([input_ids, types, positions], [tables[0].weight, tables[1].weight, tables[2].weight],
      [tables[0].padding_idx, tables[1].padding_idx, tables[2].padding_idx]);
    return this.dropout(this.LayerNorm(embeddings));
  }
}

export class BertSelfAttention extends Module {
  readonly num_attention_heads: number;
  readonly attention_head_size: number;
  query: Linear;
  key: Linear;
  value: Linear;
  dropout: Dropout;

  constructor(config: BertConfig) {
    super();
    this.num_attention_heads = config.num_attention_heads;
    this.attention_head_size = config.hidden_size / config.num_attention_heads;
    this.query = new Linear(config.hidden_size, config.hidden_size);
    this.key = new Linear(config.hidden_size, config.hidden_size);
    this.value = new Linear(config.hidden_size, config.hidden_size);
    this.dropout = new Dropout(config.attention_probs_dropout_prob);
  }

  /** [B, S, H] -> [B, heads, S, head_size] (a view) */
  private heads(x: Tensor): Tensor {
    const [b, s] = x.shape;
    return x.view([b, s, this.num_attention_heads, this.attention_head_size]).permute([0, 2, 1, 3]);
  }

  /**
   * Where the fused attention takes the projections (CUDA, float32): one linear layer over the three layers'
   * stacked weights and biases (packed_linear) computes query, key and value together, [B, S, 3 * hidden], and its
   * gradient comes back from the attention in one piece. One GEMM three times as wide fills the GPU where BERT's
   * 768-wide ones do not, and the input is cast once under autocast. The parameters stay the three layers'.
   */
  private packs(hidden: Tensor): boolean {
    return packedAttentionApplies(hidden, this.attention_head_size) &&
      this.projections.every((l) => l.weight.dtype === float32 && l.bias?.dtype === float32);
  }

  private get projections(): Linear[] {
    return [this.query, this.key, this.value];
  }

  /**
   * `additiveMask` is [B, 1, 1, T]: the same for every head and query, which keeps the CPU on masked_softmax. With
   * `firstTokenOnly` only the first token's query attends: [B, 1, hidden].
   */
  forward(hidden: Tensor, additiveMask: Tensor | null, firstTokenOnly = false): Tensor {
    const options = { attn_mask: additiveMask, dropout_p: this.training ? this.dropout.p : 0 };
    const layers = this.projections;
    const [b, s] = hidden.shape;
    const queries = firstTokenOnly ? 1 : s!;
    const attention = this.packs(hidden)
      ? packed_linear_attention(hidden, layers.map((l) => l.weight), layers.map((l) => l.bias!), this.num_attention_heads, options, queries)
      : F.scaled_dot_product_attention(this.heads(this.query(hidden.narrow(1, 0, queries))), this.heads(this.key(hidden)),
        this.heads(this.value(hidden)), options);
    return attention.permute([0, 2, 1, 3]).reshape([b, queries, this.num_attention_heads * this.attention_head_size]);
  }
}

/** dense -> dropout -> + residual -> LayerNorm: the block after attention and after the feed-forward layer. */
abstract class BertResidualOutput extends Module {
  dense: Linear;
  LayerNorm: LayerNorm;
  dropout: Dropout;

  constructor(config: BertConfig, inFeatures: number) {
    super();
    this.dense = new Linear(inFeatures, config.hidden_size);
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.dropout = new Dropout(config.hidden_dropout_prob);
  }

  forward(hidden: Tensor, input: Tensor): Tensor {
    const norm = this.LayerNorm;
    return dropout_add_layer_norm(this.dense(hidden), input, this.dropout.p, this.dropout.training, norm.normalized_shape,
      norm.weight, norm.bias, norm.eps);
  }
}

export class BertSelfOutput extends BertResidualOutput {
  constructor(config: BertConfig) {
    super(config, config.hidden_size);
  }
}

export class BertAttention extends Module {
  self: BertSelfAttention;
  output: BertSelfOutput;

  constructor(config: BertConfig) {
    super();
    this.self = new BertSelfAttention(config);
    this.output = new BertSelfOutput(config);
  }

  /** With `firstTokenOnly` only the first token's query attends, and the output block takes its row: [B, 1, hidden]. */
  forward(hidden: Tensor, additiveMask: Tensor | null, firstTokenOnly = false): Tensor {
    const context = this.self(hidden, additiveMask, firstTokenOnly);
    return this.output(context, firstTokenOnly ? hidden.narrow(1, 0, 1).contiguous() : hidden);
  }
}

export class BertIntermediate extends Module {
  dense: Linear;
  private readonly act: Activation | null;

  constructor(config: BertConfig) {
    super();
    this.dense = new Linear(config.hidden_size, config.intermediate_size);
    this.act = config.hidden_act === "gelu" ? null : activation(config.hidden_act);
  }

  forward(hidden: Tensor): Tensor {
    // The erf GELU is fused with the bias add; other activations run after the linear layer.
    if (!this.act && this.dense.bias && hidden.dtype === float32) return linear_gelu(hidden, this.dense.weight, this.dense.bias);
    return (this.act ?? activation("gelu"))(this.dense(hidden));
  }
}

export class BertOutput extends BertResidualOutput {
  constructor(config: BertConfig) {
    super(config, config.intermediate_size);
  }
}

export class BertLayer extends Module {
  attention: BertAttention;
  intermediate: BertIntermediate;
  output: BertOutput;

  constructor(config: BertConfig) {
    super();
    this.attention = new BertAttention(config);
    this.intermediate = new BertIntermediate(config);
    this.output = new BertOutput(config);
  }

  /** With `firstTokenOnly` only the first token's query attends and the rest runs on its rows alone: [B, 1, hidden]. */
  forward(hidden: Tensor, additiveMask: Tensor | null, firstTokenOnly = false): Tensor {
    const attention = this.attention(hidden, additiveMask, firstTokenOnly);
    return this.output(this.intermediate(attention), attention);
  }
}

export class BertEncoder extends Module {
  layer: ModuleList;

  constructor(config: BertConfig) {
    super();
    this.layer = new ModuleList(Array.from({ length: config.num_hidden_layers }, () => new BertLayer(config)));
  }

  /** With `firstTokenOnly` (not with outputHiddenStates) the last layer gives only the first token's rows. */
  forward(hidden: Tensor, additiveMask: Tensor | null, outputHiddenStates = false, firstTokenOnly = false): { last_hidden_state: Tensor; hidden_states: Tensor[] | null } {
    const all: Tensor[] = outputHiddenStates ? [hidden] : [];
    let h = hidden;
    const last = this.layer.length - 1;
    for (const [i, layer] of [...this.layer].entries()) {
      h = layer(h, additiveMask, firstTokenOnly && !outputHiddenStates && i === last);
      if (outputHiddenStates) all.push(h);
    }
    return { last_hidden_state: h, hidden_states: outputHiddenStates ? all : null };
  }
}

export class BertPooler extends Module {
  dense: Linear;

  constructor(config: BertConfig) {
    super();
    this.dense = new Linear(config.hidden_size, config.hidden_size);
  }

  forward(hidden: Tensor): Tensor {
    return tanh(this.dense(hidden.select(1, 0)));
  }
}

export abstract class BertPreTrainedModel extends PreTrainedModel {
  static override config_class = BertConfig as never;
  static override base_model_prefix = "bert";
  declare readonly config: BertConfig;

  _init_weights(module: Module): void {
    const std = this.config.initializer_range;
    if (module instanceof Linear) {
      init.normal_(module.weight, 0, std);
      if (module.bias) init.zeros_(module.bias);
    } else if (module instanceof Embedding) {
      init.normal_(module.weight, 0, std);
      if (module.padding_idx !== null) init.zeros_(module.weight.select(0, module.padding_idx));
    } else if (module instanceof LayerNorm) {
      if (module.weight) init.ones_(module.weight);
      if (module.bias) init.zeros_(module.bias);
    } else if (module instanceof BertLMPredictionHead) {
      init.zeros_(module.bias);
    }
  }
}

/** (1 - mask) * float32 min, as [B, 1, 1, T] (transformers' extended mask): added to the scores of padding keys. */
function additiveAttentionMask(mask: Tensor | null): Tensor | null {
  if (!mask) return null;
  if (mask.ndim !== 2) throw new Error(`attention_mask must be [batch, seq], got shape [${mask.shape}]`);
  const [b, t] = mask.shape;
  return mul(sub(1, mask.to(float32)), -3.4028234663852886e38).reshape([b, 1, 1, t]);
}

export class BertModel extends BertPreTrainedModel {
  embeddings: BertEmbeddings;
  encoder: BertEncoder;
  pooler: BertPooler | null;

  constructor(config: BertConfig, add_pooling_layer = true) {
    super(config);
    this.embeddings = new BertEmbeddings(config);
    this.encoder = new BertEncoder(config);
    this.pooler = add_pooling_layer ? new BertPooler(config) : null;
    this.post_init();
  }

  get_input_embeddings(): Embedding {
    return this.embeddings.word_embeddings;
  }

  /**
   * `first_token_only` (finetune's, for heads that read the first token alone): the last layer computes only the
   * first token's query and rows after its attention, so last_hidden_state is [B, 1, hidden]; the pooled output is
   * the same. Ignored where hidden states are output.
   */
  forward(inputsOrIds: ModelInputs | Tensor, options: { output_hidden_states?: boolean; first_token_only?: boolean } = {}): BaseModelOutputWithPooling {
    const inputs = toInputs(inputsOrIds);
    const ids = inputs.input_ids;
    if (!ids) throw new Error("You have to specify input_ids");
    if (ids.ndim !== 2) throw new Error(`input_ids must be [batch, seq], got shape [${ids.shape}]`);
    const embedded = this.embeddings(ids, inputs.token_type_ids ?? null, inputs.position_ids ?? null);
    const outputHiddenStates = options.output_hidden_states ?? inputs.output_hidden_states ?? this.config.output_hidden_states;
    const out = this.encoder(embedded, additiveAttentionMask(inputs.attention_mask ?? null), outputHiddenStates, options.first_token_only ?? false);
    const pooled = this.pooler ? this.pooler(out.last_hidden_state) : null;
    return new BaseModelOutputWithPooling(out.last_hidden_state, pooled, out.hidden_states);
  }
}

export class BertForSequenceClassification extends BertPreTrainedModel {
  readonly num_labels: number;
  bert: BertModel;
  dropout: Dropout;
  classifier: Linear;

  constructor(config: BertConfig) {
    super(config);
    this.num_labels = config.num_labels;
    this.bert = new BertModel(config);
    this.dropout = new Dropout(config.classifier_dropout ?? config.hidden_dropout_prob);
    this.classifier = new Linear(config.hidden_size, config.num_labels);
    this.post_init();
  }

  forward(inputsOrIds: ModelInputs | Tensor): SequenceClassifierOutput {
    const inputs = toInputs(inputsOrIds);
    // The classifier reads the pooler, which reads the first token: the last layer's other rows would be unused work
    const out = this.bert(inputs, { first_token_only: true });
    const logits = this.classifier(this.dropout(out.pooler_output));
    const labels = inputs.labels ?? null;
    const loss = labels ? this.classificationLoss(logits, labels) : null;
    return new SequenceClassifierOutput(loss, logits, out.hidden_states);
  }

  /** The loss transformers picks from num_labels and the labels' dtype (and remembers in config.problem_type). */
  private classificationLoss(logits: Tensor, labels: Tensor): Tensor {
    if (this.config.problem_type === null) {
      if (this.num_labels === 1) this.config.problem_type = "regression";
      else if (labels.dtype === int64 || labels.dtype.name === "int32") this.config.problem_type = "single_label_classification";
      else this.config.problem_type = "multi_label_classification";
    }
    switch (this.config.problem_type) {
      case "regression":
        return this.num_labels === 1 ? F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype)) : F.mse_loss(logits, labels.to(logits.dtype));
      case "single_label_classification": {
        const flat = labels.reshape([-1]);
        checkLabels(flat, this.num_labels);
        return F.cross_entropy(logits.view([-1, this.num_labels]), flat);
      }
      default:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype));
    }
  }
}

function checkLabels(labels: Tensor, numLabels: number): void {
  // A CUDA graph capture cannot read the labels back; the captured cross-entropy checks them on the device and
  // reports a bad one at the next sync after the replay.
  if (labels.device.type === "cuda" && cuda.is_current_stream_capturing()) return;
  const bad = (labels.tolist() as number[]).find((v) => v !== -100 && (v < 0 || v >= numLabels));
  if (bad !== undefined) {
    throw new RangeError(`label ${bad} is outside [0, ${numLabels}): the model was created with num_labels=${numLabels}; pass num_labels matching the dataset's labels to from_pretrained`);
  }
}

export class BertPredictionHeadTransform extends Module {
  dense: Linear;
  LayerNorm: LayerNorm;
  private readonly act: Activation;

  constructor(config: BertConfig) {
    super();
    this.dense = new Linear(config.hidden_size, config.hidden_size);
    this.act = activation(config.hidden_act);
    this.LayerNorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
  }

  forward(hidden: Tensor): Tensor {
    return this.LayerNorm(this.act(this.dense(hidden)));
  }
}

export class BertLMPredictionHead extends Module {
  transform: BertPredictionHeadTransform;
  bias: Parameter;
  decoder: Linear;

  constructor(config: BertConfig) {
    super();
    this.transform = new BertPredictionHeadTransform(config);
    this.bias = new Parameter(zeros([config.vocab_size]));
    this.decoder = new Linear(config.hidden_size, config.vocab_size);
    this.decoder.bias = this.bias;
  }

  forward(hidden: Tensor): Tensor {
    return this.decoder(this.transform(hidden));
  }
}

export class BertOnlyMLMHead extends Module {
  predictions: BertLMPredictionHead;

  constructor(config: BertConfig) {
    super();
    this.predictions = new BertLMPredictionHead(config);
  }

  forward(hidden: Tensor): Tensor {
    return this.predictions(hidden);
  }
}

export class BertForMaskedLM extends BertPreTrainedModel {
  bert: BertModel;
  cls: BertOnlyMLMHead;

  constructor(config: BertConfig) {
    super(config);
    this.bert = new BertModel(config, false);
    this.cls = new BertOnlyMLMHead(config);
    this.post_init();
  }

  override tie_weights(): void {
    if (this.config.tie_word_embeddings) this.cls.predictions.decoder.weight = this.bert.embeddings.word_embeddings.weight;
  }

  forward(inputsOrIds: ModelInputs | Tensor): MaskedLMOutput {
    const inputs = toInputs(inputsOrIds);
    const out = this.bert(inputs);
    const logits = this.cls(out.last_hidden_state);
    const labels = inputs.labels ?? null;
    const vocab = this.config.vocab_size;
    const loss = labels ? F.cross_entropy(logits.view([-1, vocab]), labels.reshape([-1])) : null;
    return new MaskedLMOutput(loss, logits, out.hidden_states);
  }
}
