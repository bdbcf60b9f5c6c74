// The Trainer launched as several processes (as transformers' under accelerate launch): two CPU processes of
// batch 4 train to the parameters, logged losses and evaluation one process of batch 8 reaches, each evaluation
// sample counted once; the first process alone prints and saves.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NO_MPI, assertCloseValues, runMpi } from "../helpers/mpi.js";
import { TRAINER_WORKER as WORKER, runTrainerAlone, trainerReport } from "../helpers/trainer_worker.js";

test("two Trainer processes of batch 4 train as one of batch 8: parameters, logged losses, evaluation; the first prints and saves", { skip: NO_MPI }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-trainer-ddp-"));
  try {
    const shared = runMpi(2, WORKER, { BATCH: "4", OUT: path.join(dir, "two") });
    assert.equal(shared.code, 0, shared.stderr);
    const aloneStdout = runTrainerAlone(dir);
    const [one, p0, p1] = [trainerReport(dir, "one", 0), trainerReport(dir, "two", 0), trainerReport(dir, "two", 1)];
    assert.deepEqual([p0.world, p0.steps, one.world, one.steps], [2, 8, 1, 8]);
    assert.deepEqual(p0.parameters, p1.parameters, "both processes hold the same weights, to the bit");
    assertCloseValues(p0.parameters.flat(), one.parameters.flat(), 1e-5, "parameter value");
    assertCloseValues(p0.logged, one.logged, 1e-5, "logged loss");
    assertCloseValues([p0.train_loss], [one.train_loss], 1e-5, "train_loss");
    assertCloseValues(p0.evals.map((e: number[]) => e[0]), one.evals.map((e: number[]) => e[0]), 1e-5, "eval_loss of epoch");
    p0.evals.forEach(([, acc, seen]: number[], i: number) => {
      assert.deepEqual([acc, seen], [one.evals[i][1], 16], "accuracy over the 16 evaluation samples, each once");
    });
    assert.equal(p0.predictions.length, 14, "predict: 14 samples, the last round's repeats dropped");
    assertCloseValues(p0.predictions.flat(), one.predictions.flat(), 1e-5, "prediction");
    assert.deepEqual(p1.predictions, p0.predictions);
    assert.deepEqual(p0.checkpoints, ["checkpoint-4", "checkpoint-8"]);
    assert.ok(fs.existsSync(path.join(dir, "two", "checkpoint-8", "trainer_state.json")));
    // printed logs (disable_tqdm: one dict a log) come from the first process only
    const printed = (text: string) => text.split("\n").filter((l) => l.startsWith("{'loss'")).length;
    assert.equal(printed(aloneStdout), 8);
    assert.equal(printed(shared.stdout), 8, "not once a process");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
