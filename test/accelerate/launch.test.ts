// `finetune config` and `finetune launch`: accelerate's config file written and read where accelerate keeps it,
// the launch environment the script sees, and the refusals (several processes, TypeScript sources).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import YAML from "yaml";
import { REPO_ROOT } from "../helpers/paths.js";

const CLI = path.join(REPO_ROOT, "dist", "src", "cli", "main.js");

function finetune(args: string[], home: string, input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: home, env: { ...process.env, HF_HOME: home, FINETUNE_DISABLE_CUDA: "1" } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

const tmpHome = () => fs.mkdtempSync(path.join(os.tmpdir(), "finetune-accel-"));

test("finetune config default writes accelerate's JSON once; finetune config asks and writes its YAML", async () => {
  const home = tmpHome();
  const json = path.join(home, "accelerate", "default_config.json");
  let run = await finetune(["config", "default", "--mixed_precision", "bf16"], home);
  assert.equal(run.code, 0, run.stderr);
  const written = JSON.parse(fs.readFileSync(json, "utf8")) as Record<string, unknown>;
  assert.equal(written.mixed_precision, "bf16");
  assert.equal(written.distributed_type, "NO");
  assert.equal(written.num_processes, 1);
  run = await finetune(["config", "default", "--mixed_precision", "fp16"], home);
  assert.match(run.stdout, /Configuration already exists at .*default_config.json, will not override/);
  assert.equal((JSON.parse(fs.readFileSync(json, "utf8")) as Record<string, unknown>).mixed_precision, "bf16");

  const home2 = tmpHome();
  run = await finetune(["config"], home2, "maybe\nyes\n0\n2\nfp16\n");
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /Please answer one of no, yes/);
  assert.match(run.stdout, /How many CPU processes should be used for distributed training\? \[1\]: Please answer a positive integer/);
  const home3 = tmpHome();
  run = await finetune(["config"], home3, "no\n4\nbf16\n");
  assert.equal(run.code, 0, run.stderr);
  const gpus = YAML.parse(fs.readFileSync(path.join(home3, "accelerate", "default_config.yaml"), "utf8")) as Record<string, unknown>;
  assert.deepEqual([gpus.use_cpu, gpus.num_processes, gpus.distributed_type], [false, 4, "MULTI_GPU"]);
  fs.rmSync(home3, { recursive: true, force: true });
  const yaml = YAML.parse(fs.readFileSync(path.join(home2, "accelerate", "default_config.yaml"), "utf8")) as Record<string, unknown>;
  assert.equal(yaml.use_cpu, true);
  assert.equal(yaml.num_processes, 2);
  assert.equal(yaml.distributed_type, "MULTI_CPU");
  assert.equal(yaml.mixed_precision, "fp16");
  run = await finetune(["env"], home2);
  assert.match(run.stdout, /`Accelerate` default config:\n\t- compute_environment: LOCAL_MACHINE/);
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(home2, { recursive: true, force: true });
});

test("finetune launch runs the script in a one-process launch environment from the config, and passes its exit code", async () => {
  const home = tmpHome();
  const script = path.join(home, "show.mjs");
  fs.writeFileSync(script, [
    `const { Accelerator } = await import(${JSON.stringify(path.join(REPO_ROOT, "dist", "src", "index.js"))});`,
    "const a = new Accelerator();",
    "console.log(JSON.stringify({ mp: a.mixed_precision, device: String(a.device), world: process.env.WORLD_SIZE, args: process.argv.slice(2) }));",
    "process.exitCode = 3;",
  ].join("\n"));
  let run = await finetune(["config", "default", "--mixed_precision", "bf16"], home);
  run = await finetune(["launch", script, "--lr", "1"], home);
  assert.equal(run.code, 3, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), { mp: "bf16", device: "cpu", world: "1", args: ["--lr", "1"] });
  run = await finetune(["launch", "--mixed_precision=no", script], home);
  assert.equal((JSON.parse(run.stdout) as { mp: string }).mp, "no", "flags override the config");

  run = await finetune(["launch", "course-accelerate.ts"], home);
  assert.match(run.stderr, /course-accelerate.ts is TypeScript, which Node.js .* does not run: compile it \(tsc\) and launch the .js file/);
  run = await finetune(["launch", "--config_file", path.join(home, "nope.yaml"), script], home);
  assert.match(run.stderr, /--config_file .*nope.yaml does not exist/);
  fs.writeFileSync(path.join(home, "bad.yaml"), "mixed_precision: fp8\n");
  run = await finetune(["launch", "--config_file", path.join(home, "bad.yaml"), script], home);
  assert.match(run.stderr, /bad.yaml: mixed_precision must be "no", "fp16" or "bf16", got "fp8"/);
  fs.rmSync(home, { recursive: true, force: true });
});
