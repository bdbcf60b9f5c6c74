// `finetune train` and the course scripts (examples/), run as child processes against a local Hub where the
// tiny fixture stands in for bert-base-uncased and MRPC is cut to 64/32/32 rows.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { startHub, type TestHub } from "../helpers/hub-server.js";
import { REPO_ROOT } from "../helpers/paths.js";
import { makeTinyHub } from "./fixtures.js";
import { NO_MPI } from "../helpers/mpi.js";

let hubDir: string;
let hub: TestHub;

before(async () => {
  hubDir = await makeTinyHub();
  hub = await startHub(hubDir);
});

after(async () => {
  await hub.close();
  fs.rmSync(hubDir, { recursive: true, force: true });
});

/** Runs a compiled script in a fresh folder; resolves with its output once it exits. */
function runNode(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string; cwd: string }> {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-run-"));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "dist", script), ...args], {
      cwd,
      env: { ...process.env, HF_ENDPOINT: hub.endpoint, HF_HOME: path.join(cwd, "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS: "1", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr, cwd }));
  });
}

test("finetune train fine-tunes on glue/mrpc and prints eval_accuracy and eval_f1", async () => {
  const run = await runNode("src/cli/main.js", [
    "train", "--model", "bert-base-uncased", "--dataset", "glue", "--dataset_config", "mrpc",
    "--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1", "--output_dir", "out", "--disable_tqdm",
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /eval_accuracy\s+=\s+[\d.]+/);
  assert.match(run.stdout, /eval_f1\s+=\s+[\d.]+/);
  for (const f of ["model.safetensors", "config.json", "tokenizer.json", "training_args.json"]) assert.ok(fs.existsSync(path.join(run.cwd, "out", f)), f);
  fs.rmSync(run.cwd, { recursive: true, force: true });
});

test("finetune train explains a bad --label_column", async () => {
  const run = await runNode("src/cli/main.js", ["train", "--model", "bert-base-uncased", "--dataset", "glue", "--dataset_config", "mrpc", "--label_column", "score"]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /--label_column 'score' is not a column of the dataset/);
  fs.rmSync(run.cwd, { recursive: true, force: true });
});

test("examples/course-trainer.ts runs unchanged", async () => {
  const run = await runNode("examples/course-trainer.js", []);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /\[ 8, 67 \]|\[8, 67\]/);
  assert.match(run.stdout, /accuracy/);
  assert.match(run.stdout, /eval_f1/);
  assert.ok(fs.existsSync(path.join(run.cwd, "test-trainer", "checkpoint-24", "trainer_state.json")));
  fs.rmSync(run.cwd, { recursive: true, force: true });
});

test("examples/course-trainer.ts under finetune launch --num_processes 2: two CPU processes train, the first prints and saves", { skip: NO_MPI }, async () => {
  const run = await runNode("src/cli/main.js", ["launch", "--num_processes", "2", "--cpu", path.join(REPO_ROOT, "dist/examples/course-trainer.js")]);
  assert.equal(run.code, 0, run.stderr);
  const stdout = run.stdout.replace(/\x1b\[[0-9;]*m/g, "");
  // the whole script runs in each process: each prints the predictions gathered from both, every validation row once
  assert.equal(stdout.match(/\[ 32, 2 \] \[ 32 \]/g)?.length, 2, stdout);
  assert.equal(stdout.match(/eval_f1/g)?.length, 3, "three epochs' evaluations, logged by the first process only");
  assert.ok(fs.existsSync(path.join(run.cwd, "test-trainer", "checkpoint-12", "trainer_state.json")), "8 batches an epoch over 2 processes: 4 steps, 12 in all");
  fs.rmSync(run.cwd, { recursive: true, force: true });
});

test("examples/course-loop.ts runs unchanged", async () => {
  const run = await runNode("examples/course-loop.js", []);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /\n24\n/, "num_training_steps for 3 epochs of 8 batches");
  assert.match(run.stdout, /accuracy/);
  fs.rmSync(run.cwd, { recursive: true, force: true });
});

test("examples/course-accelerate.ts runs unchanged in a launch environment of one process", async () => {
  const run = await runNode("examples/course-accelerate.js", [], { WORLD_SIZE: "1", RANK: "0", LOCAL_RANK: "0", ACCELERATE_MIXED_PRECISION: "bf16" });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /accuracy/);
  assert.match(run.stdout, /f1/);
  fs.rmSync(run.cwd, { recursive: true, force: true });
});

test("examples/course-accelerate.ts runs unchanged: notebook_launcher starts 2 CPU processes under mpirun, the main one prints the metrics", { skip: NO_MPI }, async () => {
  const run = await runNode("examples/course-accelerate.js", []);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.match(/accuracy/g)?.length, 1, run.stdout);
  assert.match(run.stdout, /f1/);
  fs.rmSync(run.cwd, { recursive: true, force: true });
});
