// transformers' model classes
export { PretrainedConfig } from "./configuration_utils.js";
export { PreTrainedModel, type FromPretrainedOptions, type LoadingInfo } from "./modeling_utils.js";
export { BertConfig } from "./bert/configuration_bert.js";
export { BertModel, BertForSequenceClassification, BertForMaskedLM, BertPreTrainedModel } from "./bert/modeling_bert.js";
export { BaseModelOutputWithPooling, SequenceClassifierOutput, MaskedLMOutput, type ModelInputs } from "./modeling_outputs.js";
export { AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForMaskedLM } from "./auto/auto_factory.js";
