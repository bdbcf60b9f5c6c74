import { test } from "node:test";
import { rng as unitRng } from "../helpers/rng.js";
import { bf16ToNumber, numberToBf16 } from "../helpers/half_bits.js";
import assert from "node:assert/strict";
import { DTypeCode, native } from "../../src/backend/native.js";

type GemmFn = typeof native.sgemm;

/** Deterministic values in [-1, 1), so a failure reproduces. */
function rng(seed: number): () => number {
  const unit = unitRng(seed);
  return () => unit() * 2 - 1;
}

function filled(n: number, rand: () => number): ArrayBuffer {
  const buf = native.alloc(Math.max(1, n) * 4);
  const f = new Float32Array(buf);
  for (let i = 0; i < n; i++) f[i] = rand();
  return buf;
}

interface Case {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  beta: number;
  /** extra elements per row beyond the minimum leading dimension */
  pad?: number;
  batch?: number;
  offset?: number;
}

interface Laid {
  A: ArrayBuffer;
  B: ArrayBuffer;
  C: ArrayBuffer;
  C0: Float32Array;
  lda: number;
  ldb: number;
  ldc: number;
  strideA: number;
  strideB: number;
  strideC: number;
  off: number;
}

/** Operands with padded leading dimensions, gaps between batch elements and an offset, all filled with noise
 * that the GEMM must neither read into the result nor overwrite. */
function layOut(c: Case, rand: () => number): Laid {
  const pad = c.pad ?? 0, batch = c.batch ?? 1, off = c.offset ?? 0;
  const [rowsA, colsA] = c.transA ? [c.K, c.M] : [c.M, c.K];
  const [rowsB, colsB] = c.transB ? [c.N, c.K] : [c.K, c.N];
  const lda = colsA + pad, ldb = colsB + pad, ldc = c.N + pad;
  const strideA = rowsA * lda + 3, strideB = rowsB * ldb + 5, strideC = c.M * ldc + 7;
  const A = filled(off + batch * strideA, rand), B = filled(off + batch * strideB, rand);
  const C = filled(off + batch * strideC, rand);
  return { A, B, C, C0: new Float32Array(C).slice(), lda, ldb, ldc, strideA, strideB, strideC, off };
}

function run(fn: GemmFn, c: Case, l: Laid): void {
  fn(c.transA, c.transB, c.M, c.N, c.K, c.alpha, l.A, l.off, l.lda, l.strideA, l.B, l.off, l.ldb, l.strideB, c.beta,
    l.C, l.off, l.ldc, l.strideC, c.batch ?? 1);
}

/** Checks C against a double-precision reference at every element (or `samples` random ones), with the
 * worst-case float32 rounding bound of a K-term dot product, and checks that nothing outside the matrices of C
 * changed. */
function check(c: Case, l: Laid, label: string, samples?: number, rand: () => number = rng(7)): void {
  const a = new Float32Array(l.A), b = new Float32Array(l.B), out = new Float32Array(l.C);
  const batch = c.batch ?? 1;
  const inside = new Uint8Array(out.length);
  for (let bi = 0; bi < batch; bi++) {
    const oa = l.off + bi * l.strideA, ob = l.off + bi * l.strideB, oc = l.off + bi * l.strideC;
    for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) inside[oc + i * l.ldc + j] = 1;
    const count = samples ?? c.M * c.N;
    for (let s = 0; s < count; s++) {
      const [i, j] = samples === undefined
        ? [Math.floor(s / c.N), s % c.N]
        : [Math.floor(((rand() + 1) / 2) * c.M), Math.floor(((rand() + 1) / 2) * c.N)];
      let dot = 0, abs = 0;
      for (let k = 0; k < c.K; k++) {
        const x = c.transA ? a[oa + k * l.lda + i]! : a[oa + i * l.lda + k]!;
        const y = c.transB ? b[ob + j * l.ldb + k]! : b[ob + k * l.ldb + j]!;
        dot += x * y;
        abs += Math.abs(x * y);
      }
      const c0 = l.C0[oc + i * l.ldc + j]!;
      const ref = c.alpha * dot + (c.beta === 0 ? 0 : c.beta * c0);
      const tol = 2.4e-7 * (c.K + 3) * (Math.abs(c.alpha) * abs + Math.abs(c.beta * c0)) + 1e-30;
      const got = out[oc + i * l.ldc + j]!;
      if (!(Math.abs(got - ref) <= tol)) {
        assert.fail(`${label}: batch ${bi} C[${i}, ${j}] = ${got}, expected ${ref} (tolerance ${tol})`);
      }
    }
  }
  for (let e = 0; e < out.length; e++) {
    if (!inside[e] && !Object.is(out[e], l.C0[e])) assert.fail(`${label}: element ${e} outside C was written`);
  }
}

function release(l: Laid): void {
  native.free(l.A);
  native.free(l.B);
  native.free(l.C);
}

function name(c: Case): string {
  return `${c.transA ? "T" : "N"}${c.transB ? "T" : "N"} ${c.M}x${c.N}x${c.K} alpha=${c.alpha} beta=${c.beta}` +
    ` batch=${c.batch ?? 1}`;
}

const TRANS: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]];
const SCALARS: Array<[number, number]> = [[1, 0], [0.5, -1.5], [-2, 1]];

test("sgemm matches a double-precision reference at edge sizes, every transpose, alpha and beta", () => {
  const rand = rng(1);
  const sizes: Array<[number, number, number]> = [
    [1, 1, 1], [1, 17, 7], [7, 1, 63], [7, 17, 63], [17, 7, 65], [63, 65, 129], [65, 129, 17], [129, 63, 7],
    [1, 129, 65], [130, 1, 300], [67, 67, 64], [33, 31, 257], [15, 16, 16], [14, 32, 1], [29, 48, 33],
  ];
  let n = 0;
  for (const [M, N, K] of sizes) {
    for (const [transA, transB] of TRANS) {
      const [alpha, beta] = SCALARS[n++ % SCALARS.length]!;
      const c: Case = { transA, transB, M, N, K, alpha, beta, pad: n % 3 === 0 ? 0 : 3, offset: n % 5 };
      const l = layOut(c, rand);
      run(native.sgemm, c, l);
      check(c, l, name(c));
      release(l);
    }
  }
});

test("sgemm crosses its cache blocks and thread split correctly", () => {
  const rand = rng(2);
  const sizes: Array<[number, number, number]> = [[600, 700, 530], [353, 1100, 300], [1000, 37, 600]];
  let n = 0;
  for (const [M, N, K] of sizes) {
    for (const [transA, transB] of TRANS) {
      const [alpha, beta] = SCALARS[n++ % SCALARS.length]!;
      const c: Case = { transA, transB, M, N, K, alpha, beta, pad: 1 + (n % 2) * 16, offset: 1 };
      const l = layOut(c, rand);
      run(native.sgemm, c, l);
      check(c, l, name(c), 1500, rand);
      release(l);
    }
  }
});

test("sgemm gives the same results on one thread", () => {
  const threads = native.getNumThreads();
  native.setNumThreads(1);
  try {
    const rand = rng(3);
    for (const [transA, transB] of TRANS) {
      const c: Case = { transA, transB, M: 300, N: 290, K: 280, alpha: 1, beta: 0.25, pad: 2 };
      const l = layOut(c, rand);
      run(native.sgemm, c, l);
      check(c, l, name(c), 1000, rand);
      release(l);
    }
  } finally {
    native.setNumThreads(threads);
  }
});

test("batched sgemm computes every matrix of the batch, with strides and offsets", () => {
  const rand = rng(4);
  const shapes: Array<[number, number, number, number]> = [
    [67, 67, 64, 24], [67, 64, 67, 24], [5, 9, 3, 7], [200, 150, 120, 3], [1, 1, 1, 4],
  ];
  let n = 0;
  for (const [M, N, K, batch] of shapes) {
    for (const [transA, transB] of TRANS) {
      const [alpha, beta] = SCALARS[n++ % SCALARS.length]!;
      const c: Case = { transA, transB, M, N, K, alpha, beta, batch, pad: n % 2, offset: 2 };
      const l = layOut(c, rand);
      run(native.sgemm, c, l);
      check(c, l, name(c), M * N > 5000 ? 400 : undefined, rand);
      release(l);
    }
  }
});

test("a batch whose outputs overlap is applied in batch order", () => {
  // strideC = 0 with beta = 1 accumulates every product into one C.
  const rand = rng(5);
  const M = 40, N = 50, K = 30, batch = 6;
  const A = filled(batch * M * K, rand), B = filled(batch * K * N, rand), C = filled(M * N, rand);
  const c0 = new Float32Array(C).slice();
  native.sgemm(false, false, M, N, K, 1, A, 0, K, M * K, B, 0, N, K * N, 1, C, 0, N, 0, batch);
  const a = new Float32Array(A), b = new Float32Array(B), out = new Float32Array(C);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let ref = c0[i * N + j]!;
      for (let bi = 0; bi < batch; bi++)
        for (let k = 0; k < K; k++) ref += a[bi * M * K + i * K + k]! * b[bi * K * N + k * N + j]!;
      assert.ok(Math.abs(out[i * N + j]! - ref) < 1e-4, `C[${i}, ${j}] = ${out[i * N + j]}, expected ${ref}`);
    }
  }
  for (const buf of [A, B, C]) native.free(buf);
});

test("beta = 0 does not read C; alpha = 0 or K = 0 only scales C", () => {
  const rand = rng(6);
  const M = 20, N = 33, K = 17;
  const A = filled(M * K, rand), B = filled(K * N, rand), C = native.alloc(M * N * 4);
  const c = new Float32Array(C);
  c.fill(NaN);
  native.sgemm(false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 0, C, 0, N, 0, 1);
  assert.ok(c.every(Number.isFinite), "NaN in C leaked through beta = 0");

  c.fill(NaN);
  native.sgemm(false, false, M, N, K, 0, A, 0, K, 0, B, 0, N, 0, 0, C, 0, N, 0, 1);
  assert.ok(c.every((v) => v === 0), "alpha = 0, beta = 0 must zero C");

  c.fill(2);
  new Float32Array(A).fill(NaN);
  native.sgemm(false, false, M, N, K, 0, A, 0, K, 0, B, 0, N, 0, 0.5, C, 0, N, 0, 1);
  assert.ok(c.every((v) => v === 1), "alpha = 0 must only scale C by beta");

  c.fill(3);
  native.sgemm(false, false, M, N, 0, 1, A, 0, 0, 0, B, 0, N, 0, -1, C, 0, N, 0, 1);
  assert.ok(c.every((v) => v === -3), "K = 0 must only scale C by beta");

  // Empty outputs touch nothing, even with empty buffers.
  const empty = native.alloc(0);
  native.sgemm(false, false, 0, 5, 5, 1, empty, 0, 5, 0, empty, 0, 5, 0, 0, empty, 0, 5, 0, 1);
  native.sgemm(false, false, 5, 5, 5, 1, empty, 0, 5, 0, empty, 0, 5, 0, 0, empty, 0, 5, 0, 0);
  for (const buf of [A, B, C, empty]) native.free(buf);
});

test("a bias is added to every row after the products, with batch 1 and beta 0 only", () => {
  const rand = rng(8);
  const M = 5, N = 7, K = 3;
  const A = filled(M * K, rand), B = filled(K * N, rand), bias = filled(N + 2, rand);
  const withBias = native.alloc(M * N * 4), plain = native.alloc(M * N * 4);
  new Float32Array(withBias).fill(NaN);
  native.sgemm(false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 0, withBias, 0, N, 0, 1, undefined, bias, 2);
  native.sgemm(false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 0, plain, 0, N, 0, 1);
  const b = new Float32Array(bias), got = new Float32Array(withBias), sum = new Float32Array(plain);
  for (let i = 0; i < M * N; i++) assert.equal(got[i], Math.fround(sum[i] + b[2 + (i % N)]), `C[${i}]`);
  assert.throws(() => native.sgemm(false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 1, plain, 0, N, 0, 1, undefined, bias, 0),
    /a bias is added only with batch 1 and beta 0/);
  assert.throws(() => native.sgemm(false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 0, plain, 0, N, 0, 1, undefined, bias, 3),
    /bias/, "the bias runs past its buffer");
  for (const buf of [A, B, bias, withBias, plain]) native.free(buf);
});

test("sgemm rejects bad arguments with JS errors before touching memory", () => {
  const M = 8, N = 9, K = 10;
  const A = native.alloc(M * K * 4), B = native.alloc(K * N * 4), C = native.alloc(M * N * 4);
  type Args = Parameters<GemmFn>;
  const good: Args = [false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 0, C, 0, N, 0, 1];
  const call = (patch: Record<number, unknown>) => {
    const args = [...good] as unknown[];
    for (const [i, v] of Object.entries(patch)) args[Number(i)] = v;
    (native.sgemm as (...a: unknown[]) => void)(...args);
  };
  call({});
  // Buffers too small for the extent each operand spans.
  assert.throws(() => call({ 6: native.alloc(M * K * 4 - 4) }), RangeError);
  assert.throws(() => call({ 10: native.alloc(K * N * 4 - 4) }), RangeError);
  assert.throws(() => call({ 15: native.alloc(M * N * 4 - 4) }), RangeError);
  assert.throws(() => call({ 0: true, 8: M + 1 }), RangeError, "transposed A spans K rows of lda");
  assert.throws(() => call({ 7: 1 }), RangeError);
  assert.throws(() => call({ 11: 1 }), RangeError);
  assert.throws(() => call({ 16: 1 }), RangeError);
  assert.throws(() => call({ 8: K + 1 }), RangeError);
  assert.throws(() => call({ 8: K - 1 }), RangeError, "lda below the row length");
  assert.throws(() => call({ 17: N - 1 }), RangeError, "ldc below the row length");
  assert.throws(() => call({ 19: 2, 18: 1 }), RangeError, "a second batch element past the end");
  assert.throws(() => call({ 2: -1 }), RangeError);
  assert.throws(() => call({ 7: -1 }), RangeError);
  assert.throws(() => call({ 2: 2 ** 40 }), RangeError);
  assert.throws(() => call({ 19: 2, 9: 2 ** 52 }), RangeError);
  // Wrong types.
  assert.throws(() => call({ 0: 0 }), TypeError);
  assert.throws(() => call({ 1: "no" }), TypeError);
  assert.throws(() => call({ 2: "8" }), TypeError);
  assert.throws(() => call({ 4: 2.5 }), TypeError);
  assert.throws(() => call({ 5: null }), TypeError);
  assert.throws(() => call({ 6: new Float32Array(M * K) }), TypeError);
  assert.throws(() => call({ 15: undefined }), TypeError);
  assert.throws(() => (native.sgemm as (...a: unknown[]) => void)(false, false, 1, 1, 1), TypeError);
  // A released buffer has no elements left.
  const gone = native.alloc(M * K * 4);
  native.free(gone);
  assert.throws(() => call({ 6: gone }), RangeError);
  for (const buf of [A, B, C]) native.free(buf);
});

/** Rounds l's A and B to bfloat16 in place (to nearest, ties to even) and returns their bfloat16 copies, so that
 * check() reads the values the bfloat16 kernel multiplies. */
function toBf16(l: Laid): { A16: ArrayBuffer; B16: ArrayBuffer } {
  const convert = (buf: ArrayBuffer) => {
    const values = new Float32Array(buf);
    const out = native.alloc(Math.max(1, values.length) * 2);
    const half = new Uint16Array(out);
    for (let i = 0; i < values.length; i++) {
      half[i] = numberToBf16(values[i]!);
      values[i] = bf16ToNumber(half[i]!);
    }
    return out;
  };
  return { A16: convert(l.A), B16: convert(l.B) };
}

const BF16_KERNEL = native.cpuFeatures().avx512bf16;
const NO_BF16 = "no AVX512-BF16 on this CPU: ops widen bfloat16 operands to float32 for the float32 kernel";

test("bfloat16 A and B (AVX512-BF16) match the reference at edge sizes, odd K, every transpose, blocks and batches", (t) => {
  if (!BF16_KERNEL) return t.skip(NO_BF16);
  const rand = rng(9);
  const cases: Array<[number, number, number, number]> = [
    [1, 1, 1, 1], [7, 17, 63, 1], [17, 7, 65, 1], [63, 65, 129, 1], [14, 32, 1, 1], [29, 48, 33, 1], [15, 16, 2, 1],
    [600, 700, 530, 1], [353, 1100, 301, 1], [1000, 37, 600, 1], [67, 67, 64, 24], [5, 9, 3, 7],
  ];
  let n = 0;
  for (const [M, N, K, batch] of cases) {
    for (const [transA, transB] of TRANS) {
      const [alpha, beta] = SCALARS[n++ % SCALARS.length]!;
      const c: Case = { transA, transB, M, N, K, alpha, beta, batch, pad: n % 3, offset: n % 4 };
      const l = layOut(c, rand);
      const { A16, B16 } = toBf16(l);
      native.sgemm(transA, transB, M, N, K, alpha, A16, l.off, l.lda, l.strideA, B16, l.off, l.ldb, l.strideB, beta,
        l.C, l.off, l.ldc, l.strideC, batch, DTypeCode.BF16);
      check(c, l, `bf16 ${name(c)}`, M * N > 5000 ? 800 : undefined, rand);
      release(l);
      native.free(A16);
      native.free(B16);
    }
  }
});

test("bfloat16 operands: their buffers are bounded as bfloat16 elements, and the output stays float32", (t) => {
  if (!BF16_KERNEL) return t.skip(NO_BF16);
  const M = 4, N = 5, K = 6;
  const A16 = native.alloc(M * K * 2), B16 = native.alloc(K * N * 2), C = native.alloc(M * N * 4);
  const call = (a: ArrayBuffer, cDtype?: DTypeCode) => () =>
    native.sgemm(false, false, M, N, K, 1, a, 0, K, 0, B16, 0, N, 0, 0, C, 0, N, 0, 1, DTypeCode.BF16, undefined, undefined, cDtype);
  assert.doesNotThrow(call(A16));
  assert.throws(call(native.alloc(M * K * 2 - 2)), RangeError);
  assert.throws(call(A16, DTypeCode.BF16), /write float32/);
  for (const buf of [A16, B16, C]) native.free(buf);
});

test("openblasSgemm computes the same contract when OpenBLAS is installed", (t) => {
  if (!native.openblasAvailable()) {
    assert.throws(() => native.openblasSgemm(false, false, 1, 1, 1, 1, native.alloc(4), 0, 1, 0, native.alloc(4), 0, 1,
      0, 0, native.alloc(4), 0, 1, 0, 1), /OpenBLAS/);
    t.skip("no OpenBLAS on this machine");
    return;
  }
  const rand = rng(8);
  let n = 0;
  for (const [transA, transB] of TRANS) {
    const [alpha, beta] = SCALARS[n++ % SCALARS.length]!;
    const c: Case = { transA, transB, M: 37, N: 41, K: 29, alpha, beta, batch: 3, pad: 2, offset: 1 };
    const l = layOut(c, rand);
    run(native.openblasSgemm, c, l);
    check(c, l, `openblas ${name(c)}`);
    release(l);
  }
  assert.throws(() => native.openblasSgemm(false, false, 4, 4, 4, 1, native.alloc(4), 0, 4, 0, native.alloc(64), 0, 4,
    0, 0, native.alloc(64), 0, 4, 0, 1), RangeError);
});
