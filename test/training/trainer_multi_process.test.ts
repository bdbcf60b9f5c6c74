// The Trainer launched as several processes (as transformers' under accelerate launch): two CPU processes of
// batch 4 train to the parameters, logged losses and evaluation one process of batch 8 reaches, each evaluation
// sample counted once; the first process alone prints and saves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NO_MPI, runMpi } from "../helpers/mpi.js";
import { REPO_ROOT } from "../helpers/paths.js";
import { TRAINER_WORKER as WORKER } from "../helpers/trainer_worker.js";

test("two Trainer processes of batch 4 train as one of batch 8: parameters, logged losses, evaluation; the first prints and saves", { skip: NO_MPI }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-trainer-ddp-"));
  try {
    const shared = runMpi(2, WORKER, { BATCH: "4", OUT: path.join(dir, "two") });
    assert.equal(shared.code, 0, shared.stderr);
    const script = path.join(dir, "alone.mjs");
    fs.writeFileSync(script, `const dist = ${JSON.stringify(path.join(REPO_ROOT, "dist/src"))};\n${WORKER}`);
    const alone = spawnSync(process.execPath, [script], { env: { ...process.env, BATCH: "8", OUT: path.join(dir, "one") }, encoding: "utf8" });
    assert.equal(alone.status, 0, alone.stderr);
    const report = (run: string, rank: number) => JSON.parse(fs.readFileSync(path.join(dir, `${run}.${rank}.json`), "utf8"));
    const [one, p0, p1] = [report("one", 0), report("two", 0), report("two", 1)];
    assert.deepEqual([p0.world, p0.steps, one.world, one.steps], [2, 8, 1, 8]);
    assert.deepEqual(p0.parameters, p1.parameters, "both processes hold the same weights, to the bit");
    const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-5 * (1 + Math.abs(b)), `${what}: ${a} against ${b} in one process`);
    const expected = one.parameters.flat();
    p0.parameters.flat().forEach((v: number, i: number) => close(v, expected[i], `parameter value ${i}`));
    p0.logged.forEach((v: number, i: number) => close(v, one.logged[i], `logged loss ${i}`));
    close(p0.train_loss, one.train_loss, "train_loss");
    p0.evals.forEach(([loss, acc, seen]: number[], i: number) => {
      close(loss!, one.evals[i][0], `eval_loss of epoch ${i + 1}`);
      assert.deepEqual([acc, seen], [one.evals[i][1], 16], "accuracy over the 16 evaluation samples, each once");
    });
    assert.equal(p0.predictions.length, 14, "predict: 14 samples, the last round's repeats dropped");
    const predicted = one.predictions.flat();
    p0.predictions.flat().forEach((v: number, i: number) => close(v, predicted[i], `prediction ${i}`));
    assert.deepEqual(p1.predictions, p0.predictions);
    assert.deepEqual(p0.checkpoints, ["checkpoint-4", "checkpoint-8"]);
    assert.ok(fs.existsSync(path.join(dir, "two", "checkpoint-8", "trainer_state.json")));
    // printed logs (disable_tqdm: one dict a log) come from the first process only
    const printed = (text: string) => text.split("\n").filter((l) => l.startsWith("{'loss'")).length;
    assert.equal(printed(alone.stdout), 8);
    assert.equal(printed(shared.stdout), 8, "not once a process");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
