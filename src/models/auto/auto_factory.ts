// AutoConfig / AutoModel*: pick the classes for a checkpoint's model_type from the registry.
import { PretrainedConfig, loadConfigDict } from "../configuration_utils.js";
import type { PreTrainedModel, FromPretrainedOptions } from "../modeling_utils.js";
import { BertConfig } from "../bert/configuration_bert.js";
import { BertForMaskedLM, BertForSequenceClassification, BertModel } from "../bert/modeling_bert.js";
import type { ResolveOptions } from "../resolve.js";

type ConfigClass = new (kwargs?: Record<string, unknown>) => PretrainedConfig;
type ModelClass = { new (config: never): PreTrainedModel; from_pretrained(id: string, o?: FromPretrainedOptions): Promise<PreTrainedModel>; from_config(c: PretrainedConfig): PreTrainedModel };
type Task = "base" | "sequence_classification" | "masked_lm";

interface Entry {
  config: ConfigClass;
  models: Partial<Record<Task, ModelClass>>;
}

const REGISTRY = new Map<string, Entry>([
  ["bert", { config: BertConfig, models: { base: BertModel as unknown as ModelClass, sequence_classification: BertForSequenceClassification as unknown as ModelClass, masked_lm: BertForMaskedLM as unknown as ModelClass } }],
]);

function entryFor(modelType: unknown, source: string): Entry {
  const entry = typeof modelType === "string" ? REGISTRY.get(modelType) : undefined;
  if (!entry) {
    throw new Error(
      `Unrecognized model in ${source}. Should have a \`model_type\` key in its config.json, or contain one of the following strings in its name: ${[...REGISTRY.keys()].join(", ")} (got model_type ${JSON.stringify(modelType)})`,
    );
  }
  return entry;
}

export class AutoConfig {
  static async from_pretrained(idOrPath: string, options: Record<string, unknown> & ResolveOptions = {}): Promise<PretrainedConfig> {
    const dict = await loadConfigDict(idOrPath, options);
    const entry = entryFor(dict.model_type, idOrPath);
    return (entry.config as unknown as typeof PretrainedConfig).from_pretrained(idOrPath, options);
  }

  static for_model(model_type: string, kwargs: Record<string, unknown> = {}): PretrainedConfig {
    return new (entryFor(model_type, "for_model()").config)(kwargs);
  }
}

function autoModel(task: Task, label: string) {
  const classFor = (config: PretrainedConfig, source: string): ModelClass => {
    const cls = entryFor(config.model_type, source).models[task];
    if (!cls) throw new Error(`Unrecognized configuration class ${config.constructor.name} for this kind of ${label}`);
    return cls;
  };
  return class {
    static async from_pretrained(idOrPath: string, options: FromPretrainedOptions = {}): Promise<PreTrainedModel> {
      const config = options.config ?? (await AutoConfig.from_pretrained(idOrPath, Object.fromEntries(Object.entries(options).filter(([k]) => k !== "ignore_mismatched_sizes"))));
      return classFor(config, idOrPath).from_pretrained(idOrPath, { ...options, config });
    }

    static from_config(config: PretrainedConfig): PreTrainedModel {
      return classFor(config, "from_config()").from_config(config);
    }
  };
}

export const AutoModel = autoModel("base", "AutoModel");
export const AutoModelForSequenceClassification = autoModel("sequence_classification", "AutoModelForSequenceClassification");
export const AutoModelForMaskedLM = autoModel("masked_lm", "AutoModelForMaskedLM");
