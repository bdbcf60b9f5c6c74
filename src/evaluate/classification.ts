// scikit-learn's classification scores (accuracy_score, precision_recall_fscore_support, matthews_corrcoef),
// which evaluate's metrics call, with the same averaging rules, label handling and error messages.

export type Average = "binary" | "micro" | "macro" | "weighted" | null;
/** sklearn's zero_division: "warn" behaves as 0 (the warning aside). */
export type ZeroDivision = "warn" | 0 | 1 | number;

export interface PrfOptions {
  labels?: number[] | null;
  pos_label?: number;
  average?: Average;
  sample_weight?: number[] | null;
  zero_division?: ZeroDivision;
}

function checkLengths(y_true: number[], y_pred: number[], sample_weight?: number[] | null): void {
  if (y_true.length !== y_pred.length) {
    throw new Error(`Found input variables with inconsistent numbers of samples: [${y_true.length}, ${y_pred.length}]`);
  }
  if (sample_weight && sample_weight.length !== y_true.length) {
    throw new Error(`Found input variables with inconsistent numbers of samples: [${y_true.length}, ${sample_weight.length}]`);
  }
}

function checkDiscrete(values: number[]): void {
  for (const v of values) {
    if (!Number.isInteger(v)) {
      throw new Error(
        `Classification metrics can't handle continuous values (got ${v}); pass class ids, e.g. the argmax of the logits`,
      );
    }
  }
}

function weightOf(sample_weight: number[] | null | undefined, i: number): number {
  return sample_weight ? sample_weight[i]! : 1;
}

function sortedUnique(...arrays: number[][]): number[] {
  return [...new Set(arrays.flat())].sort((a, b) => a - b);
}

export function accuracy_score(
  y_true: number[],
  y_pred: number[],
  options: { normalize?: boolean; sample_weight?: number[] | null } = {},
): number {
  checkLengths(y_true, y_pred, options.sample_weight);
  let correct = 0;
  let total = 0;
  for (let i = 0; i < y_true.length; i++) {
    const w = weightOf(options.sample_weight, i);
    if (y_true[i] === y_pred[i]) correct += w;
    total += w;
  }
  return options.normalize ?? true ? correct / total : correct;
}

/** sklearn's _check_set_wise_labels: which labels the scores cover. */
function setWiseLabels(y_true: number[], y_pred: number[], average: Average, labels: number[] | null | undefined, pos_label: number): number[] | null | undefined {
  if (average !== "binary") return labels;
  const present = sortedUnique(y_true, y_pred);
  if (present.length > 2) {
    throw new Error(
      "Target is multiclass but average='binary'. Please choose another average setting, one of [None, 'micro', 'macro', 'weighted'].",
    );
  }
  if (!present.includes(pos_label) && present.length >= 2) {
    throw new Error(`pos_label=${pos_label} is not a valid label. It should be one of [${present.join(", ")}]`);
  }
  return [pos_label];
}

interface PerLabel {
  tp: number[];
  pred: number[];
  true_: number[];
}

function perLabelCounts(y_true: number[], y_pred: number[], labels: number[], sample_weight?: number[] | null): PerLabel {
  const index = new Map(labels.map((l, i) => [l, i]));
  const tp = new Array<number>(labels.length).fill(0);
  const pred = new Array<number>(labels.length).fill(0);
  const true_ = new Array<number>(labels.length).fill(0);
  for (let i = 0; i < y_true.length; i++) {
    const w = weightOf(sample_weight, i);
    const t = index.get(y_true[i]!);
    const p = index.get(y_pred[i]!);
    if (t !== undefined) true_[t]! += w;
    if (p !== undefined) pred[p]! += w;
    if (t !== undefined && y_true[i] === y_pred[i]) tp[t]! += w;
  }
  return { tp, pred, true_ };
}

function zeroDivisionValue(zero_division: ZeroDivision): number {
  return zero_division === "warn" ? 0 : zero_division;
}

function divide(num: number[], den: number[], zero_division: ZeroDivision): number[] {
  return num.map((n, i) => (den[i] === 0 ? zeroDivisionValue(zero_division) : n / den[i]!));
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** np.average(values, weights); with zero_division=NaN, NaN scores are left out as sklearn's _nanaverage does. */
function average(values: number[], weights: number[] | null, zero_division: ZeroDivision): number {
  const keep = values.map((v) => !Number.isNaN(v));
  const vs = values.filter((_, i) => keep[i]);
  if (weights === null) return vs.length === 0 ? NaN : sum(vs) / vs.length;
  const ws = weights.filter((_, i) => keep[i]);
  const total = sum(ws);
  if (total === 0) return zeroDivisionValue(zero_division);
  return sum(vs.map((v, i) => v * ws[i]!)) / total;
}

export interface Prf {
  precision: number | number[];
  recall: number | number[];
  fscore: number | number[];
}

/** precision_recall_fscore_support with beta = 1. A scalar per score unless average is null. */
export function precision_recall_fscore(y_true: number[], y_pred: number[], options: PrfOptions = {}): Prf {
  const averageMode = options.average === undefined ? "binary" : options.average;
  const zero_division = options.zero_division ?? "warn";
  checkLengths(y_true, y_pred, options.sample_weight);
  checkDiscrete(y_true);
  checkDiscrete(y_pred);
  const chosen = setWiseLabels(y_true, y_pred, averageMode, options.labels, options.pos_label ?? 1);
  const labels = chosen ?? sortedUnique(y_true, y_pred);
  let { tp, pred, true_ } = perLabelCounts(y_true, y_pred, labels, options.sample_weight);
  if (averageMode === "micro") {
    tp = [sum(tp)];
    pred = [sum(pred)];
    true_ = [sum(true_)];
  }
  const precision = divide(tp, pred, zero_division);
  const recall = divide(tp, true_, zero_division);
  // (1 + β²)·tp / (β²·(tp + fn) + (tp + fp)), as sklearn computes it from the counts
  const fscore = divide(tp.map((t) => 2 * t), true_.map((t, i) => t + pred[i]!), zero_division);
  if (averageMode === null) return { precision, recall, fscore };
  const weights = averageMode === "weighted" ? true_ : null;
  return {
    precision: average(precision, weights, zero_division),
    recall: average(recall, weights, zero_division),
    fscore: average(fscore, weights, zero_division),
  };
}

export function matthews_corrcoef(y_true: number[], y_pred: number[], options: { sample_weight?: number[] | null } = {}): number {
  checkLengths(y_true, y_pred, options.sample_weight);
  checkDiscrete(y_true);
  checkDiscrete(y_pred);
  const labels = sortedUnique(y_true, y_pred);
  const { tp, pred, true_ } = perLabelCounts(y_true, y_pred, labels, options.sample_weight);
  const n_samples = sum(pred);
  const n_correct = sum(tp);
  const dot = (a: number[], b: number[]) => sum(a.map((v, i) => v * b[i]!));
  const cov_ytyp = n_correct * n_samples - dot(true_, pred);
  const cov_ypyp = n_samples * n_samples - dot(pred, pred);
  const cov_ytyt = n_samples * n_samples - dot(true_, true_);
  if (cov_ypyp * cov_ytyt === 0) return 0.0;
  return cov_ytyp / Math.sqrt(cov_ytyt * cov_ypyp);
}
