// native/cuda/gemm.cc's plans: a new family's algorithm is the fastest of cuBLASLt's first choices, timed on the
// GPU; the chosen algorithms outlive the process in the disk cache, so a later process's first GEMMs skip the
// heuristic (a stale or damaged file costs queries, never a wrong product), and the workspace is what the chosen
// algorithms need. Against the emulating fake toolkit, whose cuBLASLt offers three algorithms (the last needing a
// workspace) and refuses any its heuristic did not make, and a workspace smaller than the algorithm needs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { cudaInfo } from "../../src/backend/cuda.js";
import { REPO_ROOT } from "../helpers/paths.js";
import { HAS_GXX, withFakeCuda } from "../helpers/fake_cuda.js";

const SKIP = (cudaInfo().available || !HAS_GXX) && "needs g++ and no real CUDA";
const NATIVE = JSON.stringify(pathToFileURL(path.join(REPO_ROOT, "dist/src/backend/native.js")).href);

// A script's prelude: product(M, N, K) multiplies two small integer matrices on the device and returns how much
// device memory the GEMM itself took (its workspace) and its largest difference from the host's exact product.
const PRODUCT = `
  import { native } from ${NATIVE};
  const c = native.cuda;
  const product = (M, N, K) => {
    const a = Float32Array.from({ length: M * K }, (_, i) => ((i * 7) % 5) - 2);
    const b = Float32Array.from({ length: K * N }, (_, i) => ((i * 3) % 7) - 3);
    const [da, db, dc] = [c.alloc(a.byteLength), c.alloc(b.byteLength), c.alloc(M * N * 4)];
    c.copyHostToDevice(a.buffer, 0, da, 0, a.byteLength);
    c.copyHostToDevice(b.buffer, 0, db, 0, b.byteLength);
    const before = c.memoryAllocated();
    c.sgemm(false, false, M, N, K, 1, da, 0, K, 0, db, 0, N, 0, 0, dc, 0, N, 0, 1);
    const grew = c.memoryAllocated() - before;
    const got = new Float32Array(M * N);
    c.copyDeviceToHost(dc, 0, got.buffer, 0, got.byteLength);
    let err = 0;
    for (let i = 0; i < M; ++i) for (let j = 0; j < N; ++j) {
      let want = 0;
      for (let k = 0; k < K; ++k) want += a[i * K + k] * b[k * N + j];
      err = Math.max(err, Math.abs(got[i * N + j] - want));
    }
    return { grew, err };
  };
`;

/** Runs `script` (PRODUCT's prelude, then code printing one JSON line) against the emulating fake in `home`. */
function runScript(home: string, script: string, extraEnv: NodeJS.ProcessEnv = {}): unknown {
  const env: NodeJS.ProcessEnv = { ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(home, "cache"), ...extraEnv };
  delete env.FINETUNE_DISABLE_CUDA;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", PRODUCT + script],
    { env, encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] }));
}

// Two products of one family (M = 24 and 40: the same token-count class)
const TWO_OF_A_FAMILY = `
  const err = Math.max(product(24, 12, 16).err, product(40, 12, 16).err);
  const s = c.gemmStats();
  console.log(JSON.stringify({ queries: s.heuristic_queries, disk: s.disk_algos, err }));
`;

test("cuBLASLt's chosen algorithms are kept on disk for the next process; a damaged file is replaced", { skip: SKIP }, () => {
  withFakeCuda((home) => {
    const cache = path.join(home, "cache");
    const run = () => runScript(home, TWO_OF_A_FAMILY) as { queries: number; disk: number; err: number };
    const file = () => {
      const names = fs.readdirSync(cache).filter((f) => f.startsWith("gemm-algos-"));
      assert.equal(names.length, 1, `one algorithm file: ${names.join(", ")}`);
      return path.join(cache, names[0]!);
    };

    assert.deepEqual(run(), { queries: 1, disk: 0, err: 0 }, "a cold cache: the first shape asks the heuristic, the second reuses its answer");
    const record = fs.statSync(file()).size;
    assert.ok(record > 64, "one record: the family and its algorithm");
    assert.deepEqual(run(), { queries: 0, disk: 1, err: 0 }, "the next process takes the family's algorithm from disk");

    // an algorithm cuBLASLt refuses (here: not one its heuristic made) is asked again and the file rewritten
    fs.writeFileSync(file(), Buffer.alloc(record, 0xab));
    assert.deepEqual(run(), { queries: 1, disk: 0, err: 0 });
    assert.deepEqual(run(), { queries: 0, disk: 1, err: 0 }, "the rewritten file serves again");

    // a file that is not whole records is ignored
    fs.writeFileSync(file(), Buffer.alloc(record - 1, 0));
    assert.deepEqual(run(), { queries: 1, disk: 0, err: 0 });
  }, { emulate: true });
});

test("the GEMM workspace is what the plans' algorithms need: none for most, grown for one that splits a long reduction", { skip: SKIP }, () => {
  const r = withFakeCuda((home) => runScript(home, `
    const r = {};
    r.short = product(5, 6, 16);
    r.long = product(2, 3, 4096);
    r.again = product(3, 2, 8192);
    r.shortAfter = product(4, 6, 16);
    console.log(JSON.stringify(r));
  `), { emulate: true }) as Record<string, { grew: number; err: number }>;
  assert.deepEqual(r["short"], { grew: 0, err: 0 }, "an algorithm that needs no workspace gets none");
  assert.deepEqual(r["long"], { grew: 16384, err: 0 }, "the fake's split-K algorithm needs 16 KiB");
  assert.deepEqual(r["again"], { grew: 0, err: 0 }, "the workspace serves later plans that need no more");
  assert.deepEqual(r["shortAfter"], { grew: 0, err: 0 });
});

test("a new family's algorithm is the fastest of cuBLASLt's choices timed on the GPU, without growing the workspace; not in a capture, nor with FINETUNE_CUDA_GEMM_AUTOTUNE=0", { skip: SKIP }, () => {
  const script = `
    const r = {};
    r.tuned = product(24, 12, 16);
    r.reused = product(40, 12, 16);
    const [da, db, dc] = [c.alloc(64 * 4), c.alloc(64 * 4), c.alloc(64 * 4)];
    const graph = c.graphCaptureBegin(0);
    c.sgemm(false, false, 2, 2, 3, 1, da, 0, 3, 0, db, 0, 2, 0, 0, dc, 0, 2, 0, 1);
    c.graphCaptureEnd(graph);
    const s = c.gemmStats();
    r.stats = { autotuned: s.autotuned, queries: s.heuristic_queries, ranked: s.autotune_ranks.reduce((a, b) => a + b, 0) };
    console.log(JSON.stringify(r));
  `;
  for (const [setting, autotuned] of [[undefined, 1], ["0", 0]] as const) {
    const r = withFakeCuda((home) => runScript(home, script, { FINETUNE_CUDA_GEMM_AUTOTUNE: setting }), { emulate: true });
    assert.deepEqual(r, {
      tuned: { grew: 0, err: 0 }, reused: { grew: 0, err: 0 }, stats: { autotuned, queries: 2, ranked: autotuned },
    }, `FINETUNE_CUDA_GEMM_AUTOTUNE=${setting}: the first family timed, the captured one not; no workspace kept for the choice`);
  }
});

test("GEMM tuning may take a faster algorithm that needs workspace (split-K), 4 MiB by default, none with FINETUNE_CUDA_GEMM_TUNE_WORKSPACE=0, each kept in a cache file of its own; a bad value is a clear error", { skip: SKIP }, () => {
  const script = `
    const tuned = product(24, 12, 16);
    const s = c.gemmStats();
    console.log(JSON.stringify({ tuned, workspace: s.workspace_bytes, ranks: s.autotune_ranks }));
  `;
  withFakeCuda((home) => {
    // the fake's split-K algorithm (the last of its three) is the fastest here; with 0 tuning leaves it out (it
    // would grow the workspace) and finds one of the others fastest, by default it takes it, and the algorithms
    // tuned each way are kept apart on disk (the third process tunes nothing)
    for (const [setting, grew] of [["0", 0], [undefined, 16384], ["0", 0]] as const) {
      const r = runScript(home, script, { FTEMU_SLOW_PLAIN_GEMMS: "1", FINETUNE_CUDA_GEMM_TUNE_WORKSPACE: setting }) as
        { tuned: unknown; workspace: number; ranks: number[] };
      const label = `FINETUNE_CUDA_GEMM_TUNE_WORKSPACE=${setting}`;
      assert.deepEqual({ tuned: r.tuned, workspace: r.workspace }, { tuned: { grew, err: 0 }, workspace: grew }, label);
      if (setting === undefined) assert.deepEqual(r.ranks, [0, 0, 1], `${label}: the fastest was cuBLASLt's third choice`);
    }
    assert.equal(fs.readdirSync(path.join(home, "cache")).filter((f) => f.startsWith("gemm-algos-")).length, 2);
    // 2^44 MiB would pass a check of the byte count: shifted into bytes it wraps to 0
    for (const bad of ["lots", "-1", "33", "17592186044416"]) {
      assert.throws(() => runScript(home, script, { FINETUNE_CUDA_GEMM_TUNE_WORKSPACE: bad }),
        new RegExp(`FINETUNE_CUDA_GEMM_TUNE_WORKSPACE=${bad}: give the MiB of workspace GEMM tuning may add, an integer from 0 to 32`));
    }
  }, { emulate: true });
});
