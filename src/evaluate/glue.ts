// evaluate's "glue" metric: each GLUE task's official scores.
import { matthews_corrcoef, precision_recall_fscore } from "./classification.js";
import { pearsonr, spearmanr } from "./correlation.js";
import { Metric, type MetricResult } from "./metric.js";

export const GLUE_CONFIGS = [
  "sst2", "mnli", "mnli_mismatched", "mnli_matched", "cola", "stsb", "mrpc", "qqp", "qnli", "rte", "wnli", "hans",
] as const;

export type GlueConfig = (typeof GLUE_CONFIGS)[number];

function simpleAccuracy(preds: number[], labels: number[]): number {
  let correct = 0;
  for (let i = 0; i < preds.length; i++) if (preds[i] === labels[i]) correct++;
  return correct / preds.length;
}

export class Glue extends Metric {
  protected readonly kwarg_names = [];

  constructor(config_name?: string) {
    if (!(GLUE_CONFIGS as readonly (string | undefined)[]).includes(config_name)) {
      throw new Error(
        `You should supply a configuration name selected in [${GLUE_CONFIGS.map((c) => `"${c}"`).join(", ")}]` +
          (config_name === undefined ? ": evaluate.load(\"glue\", \"mrpc\")" : ` (got "${config_name}")`),
      );
    }
    super("glue", config_name);
  }

  protected _compute(predictions: number[], references: number[]): MetricResult {
    switch (this.config_name as GlueConfig) {
      case "cola":
        return { matthews_correlation: matthews_corrcoef(references, predictions) };
      case "stsb":
        return { pearson: pearsonr(predictions, references).statistic, spearmanr: spearmanr(predictions, references).statistic };
      case "mrpc":
      case "qqp":
        return {
          accuracy: simpleAccuracy(predictions, references),
          f1: precision_recall_fscore(references, predictions).fscore,
        };
      default:
        return { accuracy: simpleAccuracy(predictions, references) };
    }
  }
}
