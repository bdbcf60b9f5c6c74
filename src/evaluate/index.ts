// The `evaluate` namespace, as `import evaluate` gives in Python.
import { GLUE_CONFIGS, Glue } from "./glue.js";
import { AVAILABLE_METRICS, load } from "./load.js";
import { Metric } from "./metric.js";
import { Accuracy, F1, MatthewsCorrelation, Pearsonr, Precision, Recall, Spearmanr } from "./metrics.js";

export type { MetricInput, TensorLike } from "./inputs.js";
export type { BatchInputs, ComputeArgs, MetricResult, MetricValue } from "./metric.js";

export const evaluate = {
  load,
  list_evaluation_modules: () => [...AVAILABLE_METRICS],
  Metric,
  EvaluationModule: Metric,
  Accuracy,
  F1,
  Precision,
  Recall,
  MatthewsCorrelation,
  Pearsonr,
  Spearmanr,
  Glue,
  GLUE_CONFIGS,
};
