// evaluate's EvaluationModule: buffers predictions/references across add/add_batch and scores them on compute.
import { toNumbers, type MetricInput } from "./inputs.js";

export type MetricValue = number | number[];
export type MetricResult = Record<string, MetricValue>;

export interface BatchInputs {
  predictions?: MetricInput;
  references?: MetricInput;
}

/** compute()'s argument: the inputs plus the metric's own keyword options (average, sample_weight, ...). */
export type ComputeArgs = BatchInputs & Record<string, unknown>;

export abstract class Metric {
  /** The keyword options `_compute` accepts besides the inputs. */
  protected abstract readonly kwarg_names: readonly string[];
  private predictions: number[] = [];
  private references: number[] = [];

  constructor(
    readonly name: string,
    readonly config_name: string = "default",
  ) {}

  add_batch({ predictions, references }: BatchInputs): void {
    const missing = [predictions === undefined && "predictions", references === undefined && "references"].filter(Boolean);
    if (missing.length > 0) {
      throw new Error(
        `Evaluation module inputs are missing: [${missing.map((m) => `'${m}'`).join(", ")}]. ` +
          "All required inputs are ['predictions', 'references']",
      );
    }
    const preds = toNumbers(predictions, "predictions");
    const refs = toNumbers(references, "references");
    if (preds.length !== refs.length) {
      throw new Error(`Mismatch in the number of predictions (${preds.length}) and references (${refs.length})`);
    }
    this.predictions.push(...preds);
    this.references.push(...refs);
  }

  add({ prediction, reference }: { prediction: number | bigint | boolean; reference: number | bigint | boolean }): void {
    this.add_batch({ predictions: [prediction], references: [reference] });
  }

  /** Scores everything added so far plus the inputs given here, then empties the buffer (as evaluate does). */
  compute(args: ComputeArgs = {}): MetricResult {
    const { predictions, references, ...kwargs } = args;
    const unexpected = Object.keys(kwargs).filter((k) => !this.kwarg_names.includes(k));
    if (unexpected.length > 0) {
      const takes = this.kwarg_names.length > 0 ? this.kwarg_names.join(", ") : "no options";
      throw new TypeError(`${this.name}.compute() got an unexpected keyword argument '${unexpected[0]}' (it takes: ${takes})`);
    }
    if (predictions !== undefined || references !== undefined) this.add_batch({ predictions, references });
    else if (this.predictions.length === 0) {
      throw new Error(
        `${this.name}: nothing to compute. Call add() or add_batch() at least once, or pass predictions and references to compute().`,
      );
    }
    const [preds, refs] = [this.predictions, this.references];
    this.predictions = [];
    this.references = [];
    return this._compute(preds, refs, kwargs);
  }

  protected abstract _compute(predictions: number[], references: number[], kwargs: Record<string, unknown>): MetricResult;

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `EvaluationModule(name: "${this.name}", module_type: "metric", config_name: "${this.config_name}")`;
  }
}

/** An optional per-example weight column given as a keyword option. */
export function weightsOption(kwargs: Record<string, unknown>): number[] | null {
  const w = kwargs["sample_weight"];
  return w === undefined || w === null ? null : toNumbers(w, "sample_weight");
}
