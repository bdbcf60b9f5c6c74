// GEMM throughput: the addon's sgemm against OpenBLAS's cblas_sgemm on square matrices and on the shapes of
// BERT-base training at batch 8 x sequence 67 (536 tokens, 12 heads of 64).
//
// OpenBLAS is measured in a child process whose environment drops OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: this
// machine pins those to an AVX2 (Haswell) kernel, and the comparison is against OpenBLAS at its best (its
// AVX-512 kernel). Ours runs in this process, in the normal environment.
//
// Run alone: node dist/bench/gemm.js
import { spawnSync } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { native } from "../src/backend/native.js";

export interface GemmShape {
  name: string;
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  batch: number;
}

export interface GemmRow extends GemmShape {
  gflops: number;
  /** NaN where OpenBLAS is not installed */
  openblas_gflops: number;
  /** gflops / openblas_gflops */
  ratio: number;
}

export interface GemmBenchResult {
  rows: GemmRow[];
  /** the best GFLOP/s of ours over the shapes */
  gemm_peak_gflops: number;
  /** the best GFLOP/s of OpenBLAS over the shapes; NaN without OpenBLAS */
  openblas_peak_gflops: number;
  /** geometric mean over the shapes of ours / OpenBLAS; NaN without OpenBLAS */
  gemm_vs_openblas: number;
}

const TOKENS = 536;
const HEADS = 8 * 12;
const SEQ = 67;
const HEAD_DIM = 64;

export const GEMM_SHAPES: GemmShape[] = [
  ...[512, 1024, 2048, 4096].map((s) => ({ name: `square ${s}`, transA: false, transB: false, M: s, N: s, K: s, batch: 1 })),
  { name: "qkv/out proj fwd  X@W^T", transA: false, transB: true, M: TOKENS, N: 768, K: 768, batch: 1 },
  { name: "qkv/out proj dW   dY^T@X", transA: true, transB: false, M: 768, N: 768, K: TOKENS, batch: 1 },
  { name: "ffn up fwd        X@W^T", transA: false, transB: true, M: TOKENS, N: 3072, K: 768, batch: 1 },
  { name: "ffn down fwd      X@W^T", transA: false, transB: true, M: TOKENS, N: 768, K: 3072, batch: 1 },
  { name: "ffn up bwd dX     dY@W", transA: false, transB: false, M: TOKENS, N: 768, K: 3072, batch: 1 },
  { name: "ffn down bwd dX   dY@W", transA: false, transB: false, M: TOKENS, N: 3072, K: 768, batch: 1 },
  { name: "ffn up bwd dW     dY^T@X", transA: true, transB: false, M: 3072, N: 768, K: TOKENS, batch: 1 },
  { name: "ffn down bwd dW   dY^T@X", transA: true, transB: false, M: 768, N: 3072, K: TOKENS, batch: 1 },
  { name: "attn scores       Q@K^T", transA: false, transB: true, M: SEQ, N: SEQ, K: HEAD_DIM, batch: HEADS },
  { name: "attn context      P@V", transA: false, transB: false, M: SEQ, N: HEAD_DIM, K: SEQ, batch: HEADS },
  { name: "attn bwd dV       P^T@dC", transA: true, transB: false, M: SEQ, N: HEAD_DIM, K: SEQ, batch: HEADS },
];

type GemmFn = typeof native.sgemm;

/** Best GFLOP/s of a few timed windows, after a warm-up call; the windows shrink for big shapes so the whole
 * table stays within about half a minute per side on two cores. */
function measure(fn: GemmFn, s: GemmShape): number {
  const { M, N, K, batch } = s;
  const lda = s.transA ? M : K, ldb = s.transB ? K : N;
  const A = native.alloc(M * K * batch * 4), B = native.alloc(K * N * batch * 4), C = native.alloc(M * N * batch * 4);
  for (const buf of [A, B]) {
    const f = new Float32Array(buf);
    for (let i = 0; i < f.length; i++) f[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  }
  const call = () => fn(s.transA, s.transB, M, N, K, 1, A, 0, lda, M * K, B, 0, ldb, K * N, 0, C, 0, N, M * N, batch);
  const flops = 2 * M * N * K * batch;
  call();
  const windowMs = flops > 2e10 ? 600 : 150;
  let best = 0;
  for (let w = 0; w < 3; w++) {
    let calls = 0;
    const t0 = performance.now();
    let elapsed = 0;
    do {
      call();
      calls++;
      elapsed = performance.now() - t0;
    } while (elapsed < windowMs);
    best = Math.max(best, (flops * calls) / (elapsed * 1e6));
  }
  for (const buf of [A, B, C]) native.free(buf);
  return best;
}

const CHILD_FLAG = "--openblas-child";

/** OpenBLAS's figures, from a child process with OpenBLAS's own kernel selection; NaNs when it is not installed. */
function measureOpenBlas(): number[] {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), CHILD_FLAG], {
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 1 << 20,
  });
  if (child.status !== 0) throw new Error(`the OpenBLAS benchmark child failed (exit ${child.status})`);
  const figures = JSON.parse(child.stdout) as Array<number | null>;
  return figures.map((v) => v ?? NaN);
}

function fmt(v: number, width: number): string {
  return (Number.isNaN(v) ? "-" : v.toFixed(1)).padStart(width);
}

export async function benchGemm(): Promise<GemmBenchResult> {
  const openblas = measureOpenBlas();
  const rows: GemmRow[] = GEMM_SHAPES.map((s, i) => {
    const gflops = measure(native.sgemm, s);
    const ob = openblas[i]!;
    return { ...s, gflops, openblas_gflops: ob, ratio: gflops / ob };
  });
  console.log(`GEMM float32, ${native.getNumThreads()} threads: ours vs OpenBLAS (its best kernel), GFLOP/s`);
  console.log(`${"shape".padEnd(26)} ${"M x N x K".padEnd(16)} ${"batch".padStart(5)} ${"ours".padStart(8)}` +
    ` ${"openblas".padStart(8)} ${"ratio".padStart(6)}`);
  for (const r of rows) {
    const dims = `${r.transA ? "T" : "N"}${r.transB ? "T" : "N"} ${r.M}x${r.N}x${r.K}`;
    console.log(`${r.name.padEnd(26)} ${dims.padEnd(16)} ${String(r.batch).padStart(5)} ${fmt(r.gflops, 8)}` +
      ` ${fmt(r.openblas_gflops, 8)} ${(Number.isNaN(r.ratio) ? "-" : r.ratio.toFixed(2)).padStart(6)}`);
  }
  const gemmPeak = Math.max(...rows.map((r) => r.gflops));
  const haveOpenBlas = rows.every((r) => !Number.isNaN(r.openblas_gflops));
  const openblasPeak = haveOpenBlas ? Math.max(...rows.map((r) => r.openblas_gflops)) : NaN;
  const geomean = haveOpenBlas
    ? Math.exp(rows.reduce((sum, r) => sum + Math.log(r.ratio), 0) / rows.length)
    : NaN;
  console.log(`peak: ours ${gemmPeak.toFixed(1)}, OpenBLAS ${fmt(openblasPeak, 0)} GFLOP/s;` +
    ` ours / OpenBLAS (geometric mean over shapes): ${Number.isNaN(geomean) ? "-" : geomean.toFixed(3)}`);
  return { rows, gemm_peak_gflops: gemmPeak, openblas_peak_gflops: openblasPeak, gemm_vs_openblas: geomean };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes(CHILD_FLAG)) {
    const available = native.openblasAvailable();
    const figures = GEMM_SHAPES.map((s) => (available ? measure(native.openblasSgemm, s) : null));
    process.stdout.write(JSON.stringify(figures));
  } else {
    await benchGemm();
  }
}
