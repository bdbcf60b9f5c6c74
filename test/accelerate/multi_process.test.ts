// The Accelerator over several CPU processes (MPI): each process's share of the batches as accelerate's
// BatchSamplerShard gives it, gradients averaged as DistributedDataParallel averages them (two processes train to
// the parameters one process reaches on the batches joined), gather_for_metrics seeing each sample once, and the
// `finetune launch` path. The Trainer's: test/training/trainer_multi_process.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { shardBatches } from "../../src/accelerate/data_loader.js";
import { NO_MPI, assertCloseValues, runMpi } from "../helpers/mpi.js";
import { REPO_ROOT } from "../helpers/paths.js";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const batchesOf = (n: number, size: number) => range(Math.ceil(n / size)).map((b) => range(n).slice(b * size, (b + 1) * size));

test("shardBatches: accelerate's batches per process, the last round completed from the first samples", () => {
  const shards = (n: number, size: number, processes: number, drop_last = false) =>
    range(processes).map((p) => shardBatches(batchesOf(n, size), size, drop_last, { num_processes: processes, process_index: p }));
  // a whole number of rounds
  assert.deepEqual(shards(24, 3, 2), [
    [[0, 1, 2], [6, 7, 8], [12, 13, 14], [18, 19, 20]],
    [[3, 4, 5], [9, 10, 11], [15, 16, 17], [21, 22, 23]],
  ]);
  // a round short of a batch, a short last batch in a whole round, a short batch in a short round
  assert.deepEqual(shards(21, 3, 2).map((s) => s.at(-1)), [[18, 19, 20], [0, 1, 2]]);
  assert.deepEqual(shards(22, 3, 2).map((s) => s.at(-1)), [[18, 19, 20], [21, 0, 1]]);
  assert.deepEqual(shards(20, 3, 2).map((s) => s.at(-1)), [[18, 19, 0], [1, 2, 3]]);
  assert.deepEqual(shards(7, 2, 3), [[[0, 1], [6, 0]], [[2, 3], [1, 2]], [[4, 5], [3, 4]]]);
  // fewer samples than one round: the first ones again, as often as needed
  assert.deepEqual(shards(2, 2, 3), [[[0, 1]], [[0, 1]], [[0, 1]]]);
  // drop_last: the incomplete round goes
  assert.deepEqual(shards(21, 3, 2, true).map((s) => s.length), [3, 3]);
  for (const [n, size, p] of [[21, 3, 2], [22, 3, 2], [3668, 8, 2], [408, 8, 3], [5, 4, 4]] as const) {
    const all = shards(n, size, p);
    assert.ok(all.every((s) => s.length === Math.ceil(Math.ceil(n / size) / p) && s.every((b) => b.length === size)), `${n}/${size}/${p}`);
    assert.deepEqual([...new Set(all.flat(2))].sort((a, b) => a - b), range(n), "every sample is some process's");
  }
});

test("two processes train as one on the joined batches: process 0's weights, averaged gradients, the same steps", { skip: NO_MPI }, () => {
  const run = runMpi(2, `
    const { torch, nn, AdamW, Accelerator, DataLoader } = await import(dist + "/index.js");
    const data = Array.from({ length: 16 }, (_, i) => ({ x: [Math.sin(i), Math.cos(3 * i), i / 16], y: (i % 5) / 5 }));
    const build = () => { const m = new nn.Sequential(new nn.Linear(3, 8), new nn.Tanh(), new nn.Linear(8, 1)); return m; };
    const train = (model, accelerator, batch_size) => {
      const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
      const loader = new DataLoader(data, { batch_size });
      const [m, opt, dl] = accelerator ? accelerator.prepare(model, optimizer, loader) : [model, optimizer, loader];
      for (let epoch = 0; epoch < 2; epoch++) {
        for (const batch of dl) {
          const loss = torch.nn.functional.mse_loss(m(batch.x).squeeze(-1), batch.y.float());
          if (accelerator) accelerator.backward(loss); else loss.backward();
          opt.step();
          opt.zero_grad();
        }
      }
      return [...m.parameters()].map((p) => [...p.data()]);
    };
    const accelerator = new Accelerator();
    torch.manual_seed(10 + accelerator.process_index); // different weights on each process until prepare
    const shared = train(build(), accelerator, 2);
    torch.manual_seed(10);
    const alone = accelerator.is_main_process ? train(build(), null, 4) : null;
    console.log(JSON.stringify({ rank: accelerator.process_index, type: accelerator.distributed_type, n: accelerator.num_processes,
      main: accelerator.is_main_process, batches: accelerator.prepare(new DataLoader(data, { batch_size: 2 })).length, shared, alone }));
  `);
  assert.equal(run.code, 0, run.stderr);
  const [p0, p1] = run.reports;
  assert.ok(p0 && p1, run.stderr);
  assert.deepEqual([p0.type, p0.n, p0.main, p1.main, p0.batches], ["MULTI_CPU", 2, true, false, 4]);
  assert.deepEqual(p0.shared, p1.shared, "both processes hold the same weights, to the bit");
  assertCloseValues(p0.shared.flat(), p0.alone.flat(), 1e-5, "parameter value");
});

test("two processes accumulating two micro-batches of 2 take the steps of one process on batches of 8", { skip: NO_MPI }, () => {
  const run = runMpi(2, `
    const { torch, nn, AdamW, Accelerator, DataLoader } = await import(dist + "/index.js");
    const data = Array.from({ length: 16 }, (_, i) => ({ x: [Math.sin(i), Math.cos(3 * i), i / 16], y: (i % 5) / 5 }));
    const train = (accelerator, batch_size) => {
      torch.manual_seed(10);
      const model = new nn.Sequential(new nn.Linear(3, 8), new nn.Tanh(), new nn.Linear(8, 1));
      const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
      const [m, opt, dl] = accelerator.prepare(model, optimizer, new DataLoader(data, { batch_size }));
      for (const batch of dl) {
        accelerator.accumulate(m, () => {
          accelerator.backward(torch.nn.functional.mse_loss(m(batch.x).squeeze(-1), batch.y.float()));
          opt.step();
          opt.zero_grad();
        });
      }
      return [...m.parameters()].flatMap((p) => [...p.data()]);
    };
    const shared = train(new Accelerator({ gradient_accumulation_steps: 2 }), 2);
    console.log(JSON.stringify({ rank: torch.distributed.get_rank(), shared }));
  `);
  assert.equal(run.code, 0, run.stderr);
  const [p0, p1] = run.reports;
  assert.ok(p0 && p1, run.stderr);
  assert.deepEqual(p0.shared, p1.shared, "the same weights on both, to the bit");
  const alone = runMpi(1, `
    const { torch, nn, AdamW, DataLoader } = await import(dist + "/index.js");
    const data = Array.from({ length: 16 }, (_, i) => ({ x: [Math.sin(i), Math.cos(3 * i), i / 16], y: (i % 5) / 5 }));
    torch.manual_seed(10);
    const model = new nn.Sequential(new nn.Linear(3, 8), new nn.Tanh(), new nn.Linear(8, 1));
    const opt = new AdamW(model.parameters(), { lr: 0.05 });
    for (const batch of new DataLoader(data, { batch_size: 8 })) {
      torch.nn.functional.mse_loss(model(batch.x).squeeze(-1), batch.y.float()).backward();
      opt.step();
      opt.zero_grad();
    }
    console.log(JSON.stringify({ rank: 0, params: [...model.parameters()].flatMap((p) => [...p.data()]) }));
  `);
  assert.equal(alone.code, 0, alone.stderr);
  assertCloseValues(p0.shared, alone.reports[0]!.params, 1e-5, "parameter value");
});

test("shuffled batches: every process draws process 0's order; gather_for_metrics sees each evaluation sample once, in order", { skip: NO_MPI }, () => {
  const run = runMpi(2, `
    const { torch, Accelerator, DataLoader } = await import(dist + "/index.js");
    const accelerator = new Accelerator();
    torch.manual_seed(100 + accelerator.process_index);
    const ids = Array.from({ length: 12 }, (_, i) => ({ id: i }));
    const [train, evaluation] = accelerator.prepare(new DataLoader(ids, { batch_size: 3, shuffle: true }),
      new DataLoader(ids.slice(0, 7), { batch_size: 2 }));
    const seen = [];
    for (const batch of train) seen.push(...batch.id.tolist());
    const gathered = [];
    for (const batch of evaluation) gathered.push(...accelerator.gather_for_metrics(batch.id).tolist());
    const sums = accelerator.reduce(torch.tensor([accelerator.process_index + 1], { dtype: torch.float32 }), "mean").tolist();
    const padded = accelerator.pad_across_processes(torch.ones([accelerator.process_index + 1], { dtype: torch.int64 }), { pad_index: -1 }).tolist();
    accelerator.print("printed once");
    console.log(JSON.stringify({ rank: accelerator.process_index, seen, gathered, sums, padded }));
  `);
  assert.equal(run.code, 0, run.stderr);
  const [p0, p1] = run.reports;
  assert.ok(p0 && p1, run.stderr);
  assert.deepEqual([...p0.seen, ...p1.seen].sort((a, b) => a - b), range(12), "the processes split one permutation");
  assert.deepEqual(p0.gathered, range(7));
  assert.deepEqual(p1.gathered, range(7));
  assert.deepEqual(p0.sums, [1.5]);
  assert.deepEqual([p0.padded, p1.padded], [[1, -1], [1, 1]]);
});

test("finetune launch --num_processes 2 starts the script twice under mpirun, threads shared; the Trainer's arguments see the launch", { skip: NO_MPI }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-launch-"));
  try {
    const script = path.join(dir, "show.mjs");
    fs.writeFileSync(script, [
      `const { Accelerator, Trainer, nn } = await import(${JSON.stringify(path.join(REPO_ROOT, "dist", "src", "index.js"))});`,
      "const a = new Accelerator();",
      "const t = new Trainer(new nn.Linear(2, 2));",
      "const trainer = [t.args.world_size, t.args.process_index, t.args.should_save, t.state.is_world_process_zero];",
      "console.log(JSON.stringify({ rank: a.process_index, n: a.num_processes, mp: a.mixed_precision, args: process.argv.slice(2), trainer, threads: process.env.OMP_NUM_THREADS }));",
    ].join("\n"));
    const cli = path.join(REPO_ROOT, "dist", "src", "cli", "main.js");
    const env: NodeJS.ProcessEnv = { ...process.env, HF_HOME: path.join(dir, "hf"), FINETUNE_DISABLE_CUDA: "1" };
    delete env.OMP_NUM_THREADS;
    const run = spawnSync(process.execPath, [cli, "launch", "--num_processes", "2", "--mixed_precision", "bf16", script, "--x", "1"], { env, encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    const reports = run.stdout.trim().split("\n").map((l) => JSON.parse(l)).sort((a, b) => a.rank - b.rank);
    assert.deepEqual(reports.map((r) => [r.rank, r.n, r.mp, r.args]), [[0, 2, "bf16", ["--x", "1"]], [1, 2, "bf16", ["--x", "1"]]]);
    assert.deepEqual(reports.map((r) => r.trainer.slice(0, 3)), [[2, 0, true], [2, 1, false]], "the Trainer's arguments see the launch");
    assert.equal(reports[0].threads, String(Math.max(1, Math.floor(os.availableParallelism() / 2))), "each process its share of the cores");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
