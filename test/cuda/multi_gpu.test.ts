// Several GPU processes (accelerate's MULTI_GPU): `finetune launch` gives each process the GPU of its local rank,
// the Accelerator joins them in an "nccl" process group (met through MPI), and backward() averages the gradients
// with NCCL on the GPUs: two processes train as one on the batches they make together, with the Accelerator and with
// the Trainer. On a machine with two GPUs or more, or on the emulated toolkit (two fake GPUs, whose NCCL runs on
// MPI: test/helpers/fake_cuda/nccl.cc).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { torch } from "../../src/torch.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { is_nccl_available } from "../../src/distributed/process_group.js";
import { NO_MPI, assertCloseValues } from "../helpers/mpi.js";
import { REPO_ROOT } from "../helpers/paths.js";
import { TRAINER_WORKER, runTrainerAlone, trainerReport } from "../helpers/trainer_worker.js";

const EMULATED = process.env.FINETUNE_CUDA_EMULATED === "1";
const SKIP =
  (!torch.cuda.is_available() && `no CUDA device: ${cudaInfo().reason}`) || NO_MPI ||
  (!is_nccl_available() && "NCCL is not installed") ||
  (!EMULATED && torch.cuda.device_count() < 2 && "one GPU: two GPU processes need two");

/** Runs `lines` (an ES module; `dist` is dist/src) under `finetune launch --num_processes 2`; each process's JSON lines. */
function launch2(lines: string[], extraEnv: Record<string, string> = {}): Record<string, any>[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-multi-gpu-"));
  try {
    const script = path.join(dir, "worker.mjs");
    fs.writeFileSync(script, [`const dist = ${JSON.stringify(path.join(REPO_ROOT, "dist/src"))};`, ...lines].join("\n"));
    const env: NodeJS.ProcessEnv = { ...process.env, HF_HOME: path.join(dir, "hf"), ...extraEnv };
    if (EMULATED) env.FTEMU_DEVICE_COUNT = "2";
    delete env.CUDA_VISIBLE_DEVICES;
    const run = spawnSync(process.execPath, [path.join(REPO_ROOT, "dist/src/cli/main.js"), "launch", "--num_processes", "2", script],
      { env, encoding: "utf8", timeout: 600_000 });
    assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
    return run.stdout.trim().split("\n").filter((l) => l.startsWith('{"')).map((l) => JSON.parse(l) as Record<string, any>).sort((a, b) => a.rank - b.rank);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("two GPU processes: a GPU each, NCCL collectives on CUDA tensors (16-bit too), MPI's on CPU tensors", { skip: SKIP }, () => {
  const [p0, p1] = launch2([
    "const { torch } = await import(dist + '/torch.js');",
    "const { Accelerator } = await import(dist + '/index.js');",
    "const d = torch.distributed;",
    "const a = new Accelerator();",
    "const rank = a.process_index;",
    "const x = torch.tensor([rank + 1, 10 * rank], { dtype: torch.float32 }).to('cuda');",
    "d.all_reduce(x);",
    "const m = torch.tensor([rank, 5 - rank]).to('cuda'); d.all_reduce(m, d.ReduceOp.MAX);",
    "const h = torch.tensor([0.5 + rank, 1], { dtype: torch.bfloat16 }).to('cuda'); d.all_reduce(h);",
    "const b = (rank === 1 ? torch.tensor([7, 8]) : torch.zeros([2], { dtype: torch.int64 })).to('cuda'); d.broadcast(b, 1);",
    "const g = torch.zeros([4]).to('cuda'); d.all_gather_into_tensor(g, torch.tensor([rank, rank + 0.5], { dtype: torch.float32 }).to('cuda'));",
    "const c = torch.tensor([rank + 1.5], { dtype: torch.float32 }); d.all_reduce(c);",
    "console.log(JSON.stringify({ rank, type: a.distributed_type, device: String(a.device), backend: d.get_backend(), visible: process.env.CUDA_VISIBLE_DEVICES,",
    "  x: x.tolist(), m: m.tolist(), h: h.float().tolist(), b: b.tolist(), g: g.tolist(), c: c.tolist() }));",
  ]);
  assert.ok(p0 && p1);
  for (const [rank, r] of [p0, p1].entries()) {
    assert.deepEqual([r.rank, r.type, r.device, r.backend, r.visible], [rank, "MULTI_GPU", "cuda:0", "nccl", String(rank)]);
    assert.deepEqual(r.x, [3, 10]);
    assert.deepEqual(r.m, [1, 5]);
    assert.deepEqual(r.h, [2, 2]);
    assert.deepEqual(r.b, [7, 8]);
    assert.deepEqual(r.g, [0, 0.5, 1, 1.5]);
    assert.deepEqual(r.c, [4]);
  }
});

test("two GPU processes train as one on the joined batches: process 0's weights, gradients averaged by NCCL", { skip: SKIP }, () => {
  const [p0, p1] = launch2([
    "const { torch, nn, AdamW, Accelerator, DataLoader } = await import(dist + '/index.js');",
    "const data = Array.from({ length: 16 }, (_, i) => ({ x: [Math.sin(i), Math.cos(3 * i), i / 16], y: (i % 5) / 5 }));",
    "const build = () => new nn.Sequential(new nn.Linear(3, 8), new nn.Tanh(), new nn.Linear(8, 1));",
    "const train = (model, accelerator, batch_size) => {",
    "  const optimizer = new AdamW(model.parameters(), { lr: 0.05 });",
    "  const loader = new DataLoader(data, { batch_size });",
    "  const [m, opt, dl] = accelerator ? accelerator.prepare(model, optimizer, loader) : [model.to('cuda'), optimizer, loader];",
    "  for (const batch of dl) {",
    "    const x = batch.x.to('cuda'), y = batch.y.float().to('cuda');",
    "    const loss = torch.nn.functional.mse_loss(m(x).squeeze(-1), y);",
    "    if (accelerator) accelerator.backward(loss); else loss.backward();",
    "    opt.step();",
    "    opt.zero_grad();",
    "  }",
    "  return [...m.parameters()].map((p) => [...p.cpu().data()]);",
    "};",
    "const accelerator = new Accelerator();",
    "torch.manual_seed(10 + accelerator.process_index);",
    "const shared = train(build(), accelerator, 2);",
    "torch.manual_seed(10);",
    "const alone = accelerator.is_main_process ? train(build(), null, 4) : null;",
    "console.log(JSON.stringify({ rank: accelerator.process_index, shared, alone }));",
  ]);
  assert.ok(p0 && p1);
  assert.deepEqual(p0.shared, p1.shared, "both processes hold the same weights, to the bit");
  assertCloseValues(p0.shared.flat(), p0.alone.flat(), 1e-5, "parameter value");
});

test("two GPU processes under the Trainer: the losses and evaluation of one CPU process of twice the batch", { skip: SKIP }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-multi-gpu-trainer-"));
  try {
    launch2(TRAINER_WORKER.split("\n"), { BATCH: "4", OUT: path.join(dir, "two") });
    runTrainerAlone(dir, { FINETUNE_DISABLE_CUDA: "1" });
    const [one, p0, p1] = [trainerReport(dir, "one", 0), trainerReport(dir, "two", 0), trainerReport(dir, "two", 1)];
    assert.deepEqual([p0.world, p0.steps], [2, 8]);
    assert.deepEqual(p0.parameters, p1.parameters, "both GPU processes hold the same weights, to the bit");
    p0.logged.forEach((v: number, i: number) => assert.ok(Math.abs(v - one.logged[i]) <= 1e-4, `logged loss ${i}: ${v} against ${one.logged[i]} on the CPU`));
    assert.deepEqual(p0.evals.map((e: number[]) => e.slice(1)), one.evals.map((e: number[]) => e.slice(1)), "accuracy over the 16 samples, each once");
    assert.equal(p0.predictions.length, 14);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
