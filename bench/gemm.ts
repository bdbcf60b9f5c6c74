// GEMM throughput: the addon's sgemm against OpenBLAS's cblas_sgemm on square matrices and on the shapes of
// BERT-base training at batch 8 x sequence 67 (536 tokens, 12 heads of 64).
//
// OpenBLAS is measured in a child process whose environment drops OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: this
// machine pins those to an AVX2 (Haswell) kernel, and the comparison is against OpenBLAS at its best (its
// AVX-512 kernel). Ours runs in this process, in the normal environment.
//
// Run alone: node dist/bench/gemm.js
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
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

/** Operands of one shape, filled once; `time` gives the GFLOP/s of one timed window. */
class Operands {
  private readonly bufs: ArrayBuffer[];
  private readonly call: () => void;
  private readonly flops: number;

  constructor(fn: GemmFn, s: GemmShape) {
    const { M, N, K, batch } = s;
    const lda = s.transA ? M : K, ldb = s.transB ? K : N;
    const A = native.alloc(M * K * batch * 4), B = native.alloc(K * N * batch * 4);
    const C = native.alloc(M * N * batch * 4);
    for (const buf of [A, B]) {
      const f = new Float32Array(buf);
      for (let i = 0; i < f.length; i++) f[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
    }
    this.bufs = [A, B, C];
    this.call = () => fn(s.transA, s.transB, M, N, K, 1, A, 0, lda, M * K, B, 0, ldb, K * N, 0, C, 0, N, M * N, batch);
    this.flops = 2 * M * N * K * batch;
    this.call(); // warm-up: page faults, packing buffers, thread start
  }

  time(): number {
    const windowMs = this.flops > 2e10 ? 600 : 150;
    let calls = 0;
    let elapsed = 0;
    const t0 = performance.now();
    do {
      this.call();
      calls++;
      elapsed = performance.now() - t0;
    } while (elapsed < windowMs);
    return (this.flops * calls) / (elapsed * 1e6);
  }

  free(): void {
    for (const buf of this.bufs) native.free(buf);
  }
}

const CHILD_FLAG = "--openblas-child";
const ROUNDS = 3;

/** The OpenBLAS side: a child process with OpenBLAS's own kernel selection that times one window of a shape per
 * request line ("prepare i" / "time" / "free"), answering a JSON number (null without OpenBLAS). Windows of the
 * two sides alternate, so load from elsewhere on the machine falls on both alike. */
class OpenBlasChild {
  private readonly child: ChildProcess;
  private readonly lines: AsyncIterator<string>;

  constructor() {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    this.child = spawn(process.execPath, [fileURLToPath(import.meta.url), CHILD_FLAG], {
      env,
      stdio: ["pipe", "pipe", "inherit"],
    });
    this.lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]();
  }

  async ask(request: string): Promise<number> {
    this.child.stdin!.write(`${request}\n`);
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`the OpenBLAS benchmark child exited (code ${this.child.exitCode})`);
    return (JSON.parse(value as string) as number | null) ?? NaN;
  }

  close(): void {
    this.child.stdin!.end();
  }
}

async function serveOpenBlas(): Promise<void> {
  const available = native.openblasAvailable();
  let ops: Operands | undefined;
  for await (const line of createInterface({ input: process.stdin })) {
    const [verb, arg] = line.split(" ");
    let answer: number | null = null;
    if (verb === "prepare" && available) {
      const shape = GEMM_SHAPES[Number(arg)];
      if (shape === undefined) throw new Error(`no GEMM shape ${arg}`);
      ops = new Operands(native.openblasSgemm, shape);
    } else if (verb === "time" && ops !== undefined) {
      answer = ops.time();
    } else if (verb === "free" && ops !== undefined) {
      ops.free();
      ops = undefined;
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  }
}

function fmt(v: number, width: number): string {
  return (Number.isNaN(v) ? "-" : v.toFixed(1)).padStart(width);
}

export async function benchGemm(): Promise<GemmBenchResult> {
  const child = new OpenBlasChild();
  const rows: GemmRow[] = [];
  try {
    for (const [i, s] of GEMM_SHAPES.entries()) {
      const ours = new Operands(native.sgemm, s);
      await child.ask(`prepare ${i}`);
      let gflops = 0, ob = 0;
      for (let r = 0; r < ROUNDS; r++) {
        gflops = Math.max(gflops, ours.time());
        ob = Math.max(ob, await child.ask("time"));
      }
      ours.free();
      await child.ask("free");
      rows.push({ ...s, gflops, openblas_gflops: ob, ratio: gflops / ob });
    }
  } finally {
    child.close();
  }
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
    await serveOpenBlas();
  } else {
    await benchGemm();
  }
}
