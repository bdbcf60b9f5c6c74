// evaluate.load: the metrics are built in, so loading is a lookup; it stays async as in the spec, where
// loading is I/O in Python.
import { Glue } from "./glue.js";
import type { Metric } from "./metric.js";
import { Accuracy, F1, MatthewsCorrelation, Pearsonr, Precision, Recall, Spearmanr } from "./metrics.js";

const SIMPLE: Record<string, () => Metric> = {
  accuracy: () => new Accuracy(),
  f1: () => new F1(),
  precision: () => new Precision(),
  recall: () => new Recall(),
  matthews_correlation: () => new MatthewsCorrelation(),
  pearsonr: () => new Pearsonr(),
  spearmanr: () => new Spearmanr(),
};

export const AVAILABLE_METRICS = [...Object.keys(SIMPLE), "glue"];

export async function load(path: string, config_name?: string): Promise<Metric> {
  // Hub ids of the canonical metrics are "evaluate-metric/<name>"
  const name = path.replace(/^evaluate-metric\//, "");
  if (name === "glue") return new Glue(config_name);
  const make = SIMPLE[name];
  if (make === undefined) {
    throw new Error(`Couldn't find evaluation module '${path}'. Available metrics: ${AVAILABLE_METRICS.join(", ")}`);
  }
  if (config_name !== undefined && config_name !== "default") {
    throw new Error(`The ${name} metric has no configuration '${config_name}'; only 'default' is supported`);
  }
  return make();
}
