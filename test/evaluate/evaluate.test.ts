import { test } from "node:test";
import assert from "node:assert/strict";
import { evaluate } from "../../src/training_api.js";

const close = (actual: unknown, expected: number, tol = 1e-12) =>
  assert.ok(typeof actual === "number" && Math.abs(actual - expected) <= tol, `${actual} != ${expected}`);

// Binary worked example, 10 rows:
//   refs  0 1 1 0 1 0 1 1 0 0
//   preds 0 1 0 0 1 1 1 0 0 0
// TP = 3 (rows 1,4,6), FP = 1 (row 5), FN = 2 (rows 2,7), TN = 4 (rows 0,3,8,9)
const refs = [0, 1, 1, 0, 1, 0, 1, 1, 0, 0];
const preds = [0, 1, 0, 0, 1, 1, 1, 0, 0, 0];

test("binary accuracy / precision / recall / f1 / matthews from the confusion matrix", async () => {
  // accuracy = (TP + TN) / 10 = 7/10
  assert.deepEqual((await evaluate.load("accuracy")).compute({ predictions: preds, references: refs }), { accuracy: 0.7 });
  // precision = TP / (TP + FP) = 3/4
  assert.deepEqual((await evaluate.load("precision")).compute({ predictions: preds, references: refs }), { precision: 0.75 });
  // recall = TP / (TP + FN) = 3/5
  assert.deepEqual((await evaluate.load("recall")).compute({ predictions: preds, references: refs }), { recall: 0.6 });
  // f1 = 2TP / (2TP + FP + FN) = 6/9
  close((await evaluate.load("f1")).compute({ predictions: preds, references: refs }).f1, 6 / 9);
  // mcc = (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 − 2) / sqrt(4·5·5·6) = 10/sqrt(600)
  close((await evaluate.load("matthews_correlation")).compute({ predictions: preds, references: refs }).matthews_correlation, 10 / Math.sqrt(600));
});

test("binary f1 average modes and pos_label", async () => {
  const f1 = await evaluate.load("f1");
  // class 0 as positive: TP0 = 4, predicted-0 = 6, true-0 = 5 → f1 = 8 / (5 + 6) = 8/11
  close(f1.compute({ predictions: preds, references: refs, pos_label: 0 }).f1, 8 / 11);
  // macro = (8/11 + 6/9) / 2 = 23/33; weighted with supports 5, 5 is the same
  close(f1.compute({ predictions: preds, references: refs, average: "macro" }).f1, 23 / 33);
  close(f1.compute({ predictions: preds, references: refs, average: "weighted" }).f1, 23 / 33);
  // micro pools the counts: 7 correct of 10 predictions and 10 references → 0.7
  close(f1.compute({ predictions: preds, references: refs, average: "micro" }).f1, 0.7);
  const perClass = f1.compute({ predictions: preds, references: refs, average: null }).f1 as number[];
  assert.equal(perClass.length, 2);
  close(perClass[0], 8 / 11);
  close(perClass[1], 6 / 9);
});

// Multiclass worked example:
//   refs  0 1 2 0 1 2 0 1 2 2
//   preds 0 2 1 0 0 2 0 1 2 1
// class 0: TP 3, predicted 4, true 3 → P 3/4, R 1,   F 6/7
// class 1: TP 1, predicted 3, true 3 → P 1/3, R 1/3, F 1/3
// class 2: TP 2, predicted 3, true 4 → P 2/3, R 1/2, F 4/7
const mrefs = [0, 1, 2, 0, 1, 2, 0, 1, 2, 2];
const mpreds = [0, 2, 1, 0, 0, 2, 0, 1, 2, 1];

test("multiclass averages", async () => {
  const precision = await evaluate.load("precision");
  const recall = await evaluate.load("recall");
  const f1 = await evaluate.load("f1");
  // macro precision = (3/4 + 1/3 + 2/3) / 3 = 7/12
  close(precision.compute({ predictions: mpreds, references: mrefs, average: "macro" }).precision, 7 / 12);
  // macro recall = (1 + 1/3 + 1/2) / 3 = 11/18
  close(recall.compute({ predictions: mpreds, references: mrefs, average: "macro" }).recall, 11 / 18);
  // macro f1 = (6/7 + 1/3 + 4/7) / 3 = 37/63
  close(f1.compute({ predictions: mpreds, references: mrefs, average: "macro" }).f1, 37 / 63);
  // weighted f1 = (3·6/7 + 3·1/3 + 4·4/7) / 10 = 41/70
  close(f1.compute({ predictions: mpreds, references: mrefs, average: "weighted" }).f1, 41 / 70);
  // weighted recall is the accuracy: 6/10
  close(recall.compute({ predictions: mpreds, references: mrefs, average: "weighted" }).recall, 0.6);
  close(f1.compute({ predictions: mpreds, references: mrefs, average: "micro" }).f1, 0.6);
  // labels restricts the classes averaged: (3/4 + 1/3) / 2 = 13/24
  close(precision.compute({ predictions: mpreds, references: mrefs, average: "macro", labels: [0, 1] }).precision, 13 / 24);
  const perClass = recall.compute({ predictions: mpreds, references: mrefs, average: null }).recall as number[];
  assert.deepEqual(perClass.map((v) => Math.round(v * 1e9) / 1e9), [1, 0.333333333, 0.5]);
  // multiclass mcc with sklearn's covariance form: t = [3,3,4], p = [4,3,3], correct 6, n 10
  // cov(t,p) = 6·10 − (12+9+12) = 27, cov(p,p) = 100 − 34 = 66, cov(t,t) = 66 → 27/66
  close((await evaluate.load("matthews_correlation")).compute({ predictions: mpreds, references: mrefs }).matthews_correlation, 27 / 66);
});

test("binary average on multiclass data is refused, as sklearn does", async () => {
  const f1 = await evaluate.load("f1");
  assert.throws(() => f1.compute({ predictions: mpreds, references: mrefs }), /Target is multiclass but average='binary'/);
  assert.throws(() => f1.compute({ predictions: [0, 2], references: [2, 0] }), /pos_label=1 is not a valid label/);
  assert.throws(() => f1.compute({ predictions: [0, 1], references: [1, 0], average: "mean" }), /average has to be one of/);
});

test("zero_division: precision with no positive predictions", async () => {
  const precision = await evaluate.load("precision");
  assert.deepEqual(precision.compute({ predictions: [0, 0], references: [1, 0] }), { precision: 0 });
  assert.deepEqual(precision.compute({ predictions: [0, 0], references: [1, 0], zero_division: 1 }), { precision: 1 });
});

test("accuracy normalize and sample_weight", async () => {
  const accuracy = await evaluate.load("accuracy");
  // weights 1, 2, 3; rows 0 and 2 correct → (1 + 3) / 6
  close(accuracy.compute({ predictions: [1, 1, 1], references: [1, 0, 1], sample_weight: [1, 2, 3] }).accuracy, 4 / 6);
  assert.deepEqual(accuracy.compute({ predictions: [1, 1, 1], references: [1, 0, 1], normalize: false }), { accuracy: 2 });
  // recall with weights: TP weight 3 (row 2), FN weight 1 (row 0) → 3/4
  close((await evaluate.load("recall")).compute({ predictions: [0, 1, 1], references: [1, 0, 1], sample_weight: [1, 2, 3] }).recall, 0.75);
});

test("add, add_batch, tensor-like and typed-array inputs", async () => {
  const accuracy = await evaluate.load("accuracy");
  accuracy.add_batch({ predictions: { tolist: () => [1, 0] }, references: new Int32Array([1, 1]) });
  accuracy.add({ prediction: 1, reference: 1 });
  accuracy.add_batch({ predictions: { tolist: () => [[0], [1]] }, references: [BigInt(0), BigInt(0)] });
  // rows: (1,1) ok, (0,1) no, (1,1) ok, (0,0) ok, (1,0) no → 3/5
  assert.deepEqual(accuracy.compute(), { accuracy: 0.6 });
  // the buffer was emptied by compute
  assert.throws(() => accuracy.compute(), /nothing to compute/);
  // compute with inputs adds them to what was added before
  accuracy.add({ prediction: 0, reference: 1 });
  assert.deepEqual(accuracy.compute({ predictions: [1], references: [1] }), { accuracy: 0.5 });
});

test("input errors", async () => {
  const accuracy = await evaluate.load("accuracy");
  assert.throws(() => accuracy.compute({ predictions: [1, 0, 1], references: [1, 0] }), {
    message: "Mismatch in the number of predictions (3) and references (2)",
  });
  assert.throws(() => accuracy.compute({ predictions: [1] }), /inputs are missing: \['references'\]/);
  assert.throws(() => accuracy.compute({ predictions: { tolist: () => [[0.1, 0.9]] }, references: [1] }), /argmax/);
  assert.throws(() => accuracy.compute({ predictions: [1], references: [1], average: "macro" }), /unexpected keyword argument 'average'/);
  const f1 = await evaluate.load("f1");
  assert.throws(() => f1.compute({ predictions: [0.2, 0.9], references: [0, 1] }), /continuous/);
});

test("unknown metric and config", async () => {
  await assert.rejects(evaluate.load("bleu-ish"), /Couldn't find evaluation module 'bleu-ish'. Available metrics: accuracy, f1/);
  await assert.rejects(evaluate.load("glue", "mrcp"), /You should supply a configuration name selected in \["sst2", "mnli",.*"hans"\]/);
  await assert.rejects(evaluate.load("glue"), /configuration name/);
  await assert.rejects(evaluate.load("accuracy", "multilabel"), /no configuration 'multilabel'/);
  assert.equal((await evaluate.load("evaluate-metric/accuracy")).name, "accuracy");
});

test("pearsonr and spearmanr", async () => {
  // x = 1..5, y = 2 4 5 4 5: deviations (-2,-1,0,1,2) and (-2,0,1,0,1), Σxy = 6, Σx² = 10, Σy² = 6 → 6/√60
  const x = [1, 2, 3, 4, 5];
  const y = [2, 4, 5, 4, 5];
  close((await evaluate.load("pearsonr")).compute({ predictions: x, references: y }).pearsonr, 6 / Math.sqrt(60));
  // spearman: ranks of 5 6 7 8 7 are 1 2 3.5 5 3.5; deviations (-2,-1,.5,2,.5): Σxy = 8, Σy² = 9.5 → 8/√95
  close((await evaluate.load("spearmanr")).compute({ predictions: [5, 6, 7, 8, 7], references: x }).spearmanr, 8 / Math.sqrt(95));
  // n = 4: r ~ Beta(1, 1) on [-1, 1], i.e. uniform, so the two-sided p-value is 1 − |r|
  const r4 = (await evaluate.load("pearsonr")).compute({ predictions: [1, 2, 3, 4], references: [1, 3, 2, 4], return_pvalue: true });
  // deviations (-1.5,-.5,.5,1.5) and (-1.5,.5,-.5,1.5): Σxy = 2.25 − .25 − .25 + 2.25 = 4, Σx² = Σy² = 5 → r = 0.8
  close(r4.pearsonr, 0.8);
  close(r4["p-value"], 0.2, 1e-10);
  // spearman with 2 dof: t-distribution with 2 dof, p = 1 − |t|/√(2 + t²); here t² = r²·2/(1 − r²) = 1.28/.36
  const s4 = (await evaluate.load("spearmanr")).compute({ predictions: [1, 2, 3, 4], references: [1, 3, 2, 4], return_pvalue: true });
  const t = Math.sqrt(1.28 / 0.36);
  close(s4.spearmanr, 0.8);
  close(s4["spearmanr_pvalue"], 1 - t / Math.sqrt(2 + t * t), 1e-10);
  assert.ok(Number.isNaN((await evaluate.load("pearsonr")).compute({ predictions: [1, 1, 1], references: [1, 2, 3] }).pearsonr));
  assert.throws(() => evaluate.Pearsonr.prototype.compute.call(new evaluate.Pearsonr(), { predictions: [1], references: [2] }), /length at least 2/);
});

test("glue: every config", async () => {
  const ab = { predictions: preds, references: refs };
  for (const config of ["sst2", "mnli", "mnli_mismatched", "mnli_matched", "qnli", "rte", "wnli", "hans"]) {
    assert.deepEqual((await evaluate.load("glue", config)).compute(ab), { accuracy: 0.7 }, config);
  }
  for (const config of ["mrpc", "qqp"]) {
    const r = (await evaluate.load("glue", config)).compute(ab);
    assert.deepEqual(Object.keys(r), ["accuracy", "f1"]);
    assert.equal(r.accuracy, 0.7);
    close(r.f1, 6 / 9);
  }
  const cola = (await evaluate.load("glue", "cola")).compute(ab);
  assert.deepEqual(Object.keys(cola), ["matthews_correlation"]);
  close(cola.matthews_correlation, 10 / Math.sqrt(600));
  const stsb = (await evaluate.load("glue", "stsb")).compute({ predictions: [1.5, 2, 3.25, 4, 5], references: [2, 4, 5, 4, 5] });
  assert.deepEqual(Object.keys(stsb), ["pearson", "spearmanr"]);
  // pearson: the predictions' mean is 3.15, deviations (-1.65,-1.15,.1,.85,1.85); the references' as before,
  // Σxy = 3.3 + 0 + .1 + 0 + 1.85 = 5.25, Σx² = 2.7225 + 1.3225 + .01 + .7225 + 3.4225 = 8.2 → 5.25/√(8.2·6)
  close(stsb.pearson, 5.25 / Math.sqrt(8.2 * 6), 1e-12);
  // spearman: the predictions rank 1..5; references 2 4 5 4 5 rank as 1, 2.5, 4.5, 2.5, 4.5: deviations (-2,-.5,1.5,-.5,1.5), Σxy = 4+.5+0−.5+3 = 7, Σy² = 4+.25+2.25+.25+2.25 = 9 → 7/√90
  close(stsb.spearmanr, 7 / Math.sqrt(90));
});

test("glue mrpc reproduces the golden trainer run's eval accuracy and f1", async () => {
  // 64 validation rows, all predicted positive, 43 of them positive: accuracy 43/64, f1 = 86/107
  const references = [...new Array<number>(43).fill(1), ...new Array<number>(21).fill(0)];
  const predictions = new Array<number>(64).fill(1);
  const r = (await evaluate.load("glue", "mrpc")).compute({ predictions, references });
  assert.equal(r.accuracy, 0.671875);
  assert.equal(r.f1, 0.8037383177570093);
});
