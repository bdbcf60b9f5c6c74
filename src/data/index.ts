// torch.utils.data and transformers' data collators
export { DataLoader, default_collate, fetchRows, type DataLoaderOptions, type DataSource } from "./dataloader.js";
export { Sampler, SequentialSampler, RandomSampler, BatchSampler, type RandomSamplerOptions } from "./samplers.js";
export { DataCollatorWithPadding, default_data_collator, type DataCollatorWithPaddingOptions } from "./data_collator.js";
export { DataCollatorForLanguageModeling, type DataCollatorForLanguageModelingOptions } from "./language_modeling.js";
