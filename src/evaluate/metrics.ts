// The classification and correlation metrics of evaluate, one class per Hub metric script.
import { accuracy_score, matthews_corrcoef, precision_recall_fscore, type Average, type PrfOptions, type ZeroDivision } from "./classification.js";
import { pearsonr, spearmanr } from "./correlation.js";
import { Metric, weightsOption, type MetricResult, type MetricValue } from "./metric.js";

const AVERAGES: readonly (string | null)[] = ["binary", "micro", "macro", "weighted", null];

function prfOptions(kwargs: Record<string, unknown>): PrfOptions {
  const average = kwargs["average"] === undefined ? "binary" : kwargs["average"];
  if (!AVERAGES.includes(average as string | null)) {
    throw new Error(`average has to be one of (None, 'micro', 'macro', 'weighted', 'binary'), got ${JSON.stringify(average)}`);
  }
  const labels = kwargs["labels"];
  if (labels !== undefined && labels !== null && !Array.isArray(labels)) throw new TypeError("labels must be an array of class ids");
  return {
    average: average as Average,
    labels: labels as number[] | null | undefined,
    pos_label: (kwargs["pos_label"] as number | undefined) ?? 1,
    sample_weight: weightsOption(kwargs),
    zero_division: (kwargs["zero_division"] as ZeroDivision | undefined) ?? "warn",
  };
}

export class Accuracy extends Metric {
  protected readonly kwarg_names = ["normalize", "sample_weight"];
  constructor() {
    super("accuracy");
  }
  protected _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult {
    const normalize = (kwargs["normalize"] as boolean | undefined) ?? true;
    return { accuracy: accuracy_score(references, predictions, { normalize, sample_weight: weightsOption(kwargs) }) };
  }
}

export class F1 extends Metric {
  protected readonly kwarg_names = ["labels", "pos_label", "average", "sample_weight"];
  constructor() {
    super("f1");
  }
  protected _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult {
    return { f1: precision_recall_fscore(references, predictions, prfOptions(kwargs)).fscore };
  }
}

export class Precision extends Metric {
  protected readonly kwarg_names = ["labels", "pos_label", "average", "sample_weight", "zero_division"];
  constructor() {
    super("precision");
  }
  protected _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult {
    return { precision: precision_recall_fscore(references, predictions, prfOptions(kwargs)).precision };
  }
}

export class Recall extends Metric {
  protected readonly kwarg_names = ["labels", "pos_label", "average", "sample_weight", "zero_division"];
  constructor() {
    super("recall");
  }
  protected _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult {
    return { recall: precision_recall_fscore(references, predictions, prfOptions(kwargs)).recall };
  }
}

export class MatthewsCorrelation extends Metric {
  protected readonly kwarg_names = ["sample_weight"];
  constructor() {
    super("matthews_correlation");
  }
  protected _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult {
    return { matthews_correlation: matthews_corrcoef(references, predictions, { sample_weight: weightsOption(kwargs) }) };
  }
}

export class Pearsonr extends Metric {
  protected readonly kwarg_names = ["return_pvalue"];
  constructor() {
    super("pearsonr");
  }
  protected _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult {
    const r = pearsonr(references, predictions);
    const result: Record<string, MetricValue> = { pearsonr: r.statistic };
    if (kwargs["return_pvalue"]) result["p-value"] = r.pvalue;
    return result;
  }
}

export class Spearmanr extends Metric {
  protected readonly kwarg_names = ["return_pvalue"];
  constructor() {
    super("spearmanr");
  }
  protected _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult {
    const r = spearmanr(references, predictions);
    const result: Record<string, MetricValue> = { spearmanr: r.statistic };
    if (kwargs["return_pvalue"]) result["spearmanr_pvalue"] = r.pvalue;
    return result;
  }
}
