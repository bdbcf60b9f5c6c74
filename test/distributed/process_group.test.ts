// torch.distributed on MPI: the launch environment each launcher leaves, the errors before and without a process
// group, and the collectives across processes started by mpirun (skipped where no MPI is installed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { REPO_ROOT } from "../helpers/paths.js";
import * as dist from "../../src/distributed/process_group.js";
import { launchEnvironment } from "../../src/distributed/launch_environment.js";
import { NO_MPI, runMpi } from "../helpers/mpi.js";

test("launchEnvironment reads torchrun's, Open MPI's and MPICH's variables; none is one process; bad values are named", () => {
  assert.deepEqual(launchEnvironment({}), { world_size: 1, rank: 0, local_rank: 0, local_world_size: 1, source: "none" });
  assert.deepEqual(launchEnvironment({ WORLD_SIZE: "4", RANK: "3", LOCAL_RANK: "1", LOCAL_WORLD_SIZE: "2" }),
    { world_size: 4, rank: 3, local_rank: 1, local_world_size: 2, source: "torchrun" });
  assert.deepEqual(launchEnvironment({ OMPI_COMM_WORLD_SIZE: "2", OMPI_COMM_WORLD_RANK: "1", OMPI_COMM_WORLD_LOCAL_RANK: "1", OMPI_COMM_WORLD_LOCAL_SIZE: "2" }),
    { world_size: 2, rank: 1, local_rank: 1, local_world_size: 2, source: "Open MPI" });
  assert.deepEqual(launchEnvironment({ PMI_SIZE: "3", PMI_RANK: "2" }), { world_size: 3, rank: 2, local_rank: 2, local_world_size: 3, source: "MPICH" });
  assert.deepEqual(launchEnvironment({ WORLD_SIZE: "1" }).rank, 0, "a one-process launch needs no RANK");
  assert.throws(() => launchEnvironment({ WORLD_SIZE: "2" }), /the launch environment has no RANK/);
  assert.throws(() => launchEnvironment({ WORLD_SIZE: "2", RANK: "2" }), /RANK=2 in the launch environment is not below WORLD_SIZE=2/);
  assert.throws(() => launchEnvironment({ WORLD_SIZE: "two" }), /WORLD_SIZE=two in the launch environment: expected an integer >= 1/);
});

test("without init_process_group the collectives say so as torch does; gloo and unknown backends are refused, nccl without NCCL says what to install", () => {
  assert.equal(dist.is_initialized(), false);
  assert.throws(() => dist.get_rank(), /Default process group has not been initialized, please make sure to call init_process_group/);
  assert.throws(() => dist.barrier(), /Default process group has not been initialized/);
  assert.throws(() => dist.init_process_group("gloo"), /the gloo backend is not part of finetune; use backend "mpi" on CPU processes \(or "nccl" on GPUs\)/);
  assert.throws(() => dist.init_process_group("tcp"), /unknown backend "tcp"; finetune has "mpi" and "nccl"/);
  if (!dist.is_nccl_available()) {
    assert.throws(() => dist.init_process_group("nccl"), /init_process_group\("nccl"\): NCCL \(libnccl.so.2\) was not found: install it/);
  }
  assert.equal(dist.is_initialized(), false, "a refused call leaves no process group");
});

test("MPI collectives across 3 processes: all_reduce (sum, max, min; float32, int64; a strided view), broadcast, all_gather, objects", { skip: NO_MPI }, () => {
  const run = runMpi(3, `
    const { torch } = await import(dist + "/torch.js");
    const d = await import(dist + "/distributed/process_group.js");
    d.init_process_group("mpi");
    const rank = d.get_rank(), size = d.get_world_size();
    const f = torch.tensor([rank + 0.5, -rank, 2]);
    d.all_reduce(f);
    const mx = torch.tensor([rank, 10 - rank]); d.all_reduce(mx, d.ReduceOp.MAX);
    const mn = torch.tensor([rank, 10 - rank]); d.all_reduce(mn, d.ReduceOp.MIN);
    const base = torch.arange(6).float().mul(rank + 1).reshape([2, 3]);
    const column = base.select(1, 1); // a strided view: written back into base
    d.all_reduce(column);
    const b = rank === 1 ? torch.tensor([7, 8, 9]) : torch.zeros([3], { dtype: torch.int64 });
    d.broadcast(b, 1);
    const parts = [0, 1, 2].map(() => torch.zeros([2]));
    d.all_gather(parts, torch.tensor([rank, rank * 10]));
    const objects = [null, null, null];
    d.all_gather_object(objects, { rank, name: "p" + rank });
    const sent = rank === 2 ? ["from two", 2] : [];
    d.broadcast_object_list(sent, 2);
    let refused = "";
    try { d.all_reduce(torch.zeros([2], { dtype: torch.bfloat16 })); } catch (e) { refused = e.message; }
    d.barrier();
    console.log(JSON.stringify({ rank, size, f: f.tolist(), mx: mx.tolist(), mn: mn.tolist(), base: base.tolist(), b: b.tolist(),
      parts: parts.map((p) => p.tolist()), objects, sent, refused }));
  `);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.reports.length, 3, run.stderr);
  for (const [rank, r] of run.reports.entries()) {
    assert.equal(r.rank, rank);
    assert.equal(r.size, 3);
    assert.deepEqual(r.f, [0.5 + 1.5 + 2.5, -3, 6]);
    assert.deepEqual(r.mx, [2, 10]);
    assert.deepEqual(r.mn, [0, 8]);
    assert.deepEqual(r.base, [[0 * (rank + 1), 6, 2 * (rank + 1)], [3 * (rank + 1), 24, 5 * (rank + 1)]], "only the view's column is summed");
    assert.deepEqual(r.b, [7, 8, 9]);
    assert.deepEqual(r.parts, [[0, 0], [1, 10], [2, 20]]);
    assert.deepEqual(r.objects, [{ rank: 0, name: "p0" }, { rank: 1, name: "p1" }, { rank: 2, name: "p2" }]);
    assert.deepEqual(r.sent, ["from two", 2]);
    assert.match(r.refused, /all_reduce: a bfloat16 tensor; MPI reduces float32, int64 and int32 tensors/);
  }
});

test("a process that fails leaves mpirun to stop the others, which wait in a collective, instead of a hang", { skip: NO_MPI }, () => {
  const run = runMpi(2, `
    const { torch } = await import(dist + "/torch.js");
    const d = await import(dist + "/distributed/process_group.js");
    d.init_process_group();
    if (d.get_rank() === 1) throw new Error("rank 1 fails");
    d.all_reduce(torch.zeros([4]));
    console.log(JSON.stringify({ rank: 0, reached: true }));
  `);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /rank 1 fails/);
  assert.deepEqual(run.reports, []);
});

test("without an MPI library: is_available() is false, init_process_group and finetune env say what to install", () => {
  const src = JSON.stringify(path.join(REPO_ROOT, "dist/src"));
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", `
    const d = await import(${src} + "/distributed/process_group.js");
    const { envReport } = await import(${src} + "/cli/env.js");
    let error = "";
    try { d.init_process_group("mpi"); } catch (e) { error = e.message; }
    console.log(JSON.stringify({ available: d.is_available(), error, env: envReport()["MPI (several processes)"] }));
  `], { env: { ...process.env, FINETUNE_MPI_LIBRARY: "libmpi-missing.so.7" }, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  const r = JSON.parse(run.stdout) as { available: boolean; error: string; env: string };
  assert.equal(r.available, false);
  assert.match(r.error, /init_process_group\("mpi"\): FINETUNE_MPI_LIBRARY=libmpi-missing.so.7 could not be loaded: .*libmpi-missing.so.7/);
  assert.match(r.env, /^not available \(FINETUNE_MPI_LIBRARY=libmpi-missing.so.7 could not be loaded/);
});
