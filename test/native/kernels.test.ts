// Every non-GEMM native kernel checked against a plain float64 JS reference on random data: strided and
// broadcast views, odd sizes, sizes above the threading grain, aliased outputs, and the error paths.
import { test } from "node:test";
import { rng } from "../helpers/rng.js";
import { bf16ToNumber, halfToNumber, numberToBf16, numberToHalf } from "../helpers/half_bits.js";
import assert from "node:assert/strict";
import { native, DTypeCode, BinaryOp, CompareOp, UnaryOp, UnaryGradOp, ReduceOp } from "../../src/backend/native.js";

// ---------------------------------------------------------------- helpers


function randArray(n: number, seed: number, lo = -3, hi = 3): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

function f32(data: ArrayLike<number> | number): ArrayBuffer {
  const n = typeof data === "number" ? data : data.length;
  const ab = native.alloc(n * 4);
  if (typeof data !== "number") new Float32Array(ab).set(data);
  return ab;
}

function i64(data: number[]): ArrayBuffer {
  const ab = native.alloc(data.length * 8);
  new BigInt64Array(ab).set(data.map((v) => BigInt(v)));
  return ab;
}

const F = (ab: ArrayBuffer) => new Float32Array(ab);

function close(got: ArrayLike<number>, want: ArrayLike<number>, rtol = 1e-6, atol = 1e-6, what = ""): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (Number.isNaN(w)) {
      assert.ok(Number.isNaN(g), `${what}[${i}]: got ${g}, want NaN`);
      continue;
    }
    if (!Number.isFinite(w)) {
      assert.equal(g, w, `${what}[${i}]`);
      continue;
    }
    assert.ok(Math.abs(g - w) <= atol + rtol * Math.abs(w), `${what}[${i}]: got ${g}, want ${w}`);
  }
}

/** exact equality with a short message (assert.deepEqual on big arrays prints every element) */
function assertSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++)
    if (!Object.is(got[i], want[i]) && !(Number.isNaN(got[i]) && Number.isNaN(want[i])))
      assert.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]}`);
}

// erf in float64: Taylor series near 0, continued fraction for the tail.
function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const z = Math.abs(x);
  if (z < 2.5) {
    let term = z, sum = z;
    for (let n = 1; n < 200; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * sum * (2 / Math.sqrt(Math.PI));
  }
  return Math.sign(x) * (1 - erfcTail(z));
}

function erfcTail(z: number): number {
  // Lentz's continued fraction for erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + 1/2/(z + 1/(z + 3/2/(z + ...))))
  let f = z, C = z, D = 0;
  for (let n = 1; n < 300; n++) {
    const a = n / 2;
    D = z + a * D;
    C = z + a / C;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}

function erfc(x: number): number {
  return x >= 2.5 ? erfcTail(x) : 1 - erf(x);
}

const geluErf = (x: number) => 0.5 * x * erfc(-x / Math.SQRT2);
const K = Math.sqrt(2 / Math.PI);
const geluTanh = (x: number) => x / (1 + Math.exp(-2 * K * (x + 0.044715 * x ** 3))); // 0.5 x (1 + tanh(u))

function expectThrows(fn: () => unknown, type: ErrorConstructor, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof type && pattern.test((e as Error).message));
}

// ---------------------------------------------------------------- copy and fill

test("copy: contiguous, transposed, broadcast and sliced float32 views", () => {
  const shape = [67, 513];
  const n = shape[0] * shape[1];
  const src = randArray(n, 1);
  const sab = f32(src);
  // contiguous (memcpy path, above the grain)
  const d1 = f32(n);
  native.copy(shape, sab, DTypeCode.F32, 0, [513, 1], d1, DTypeCode.F32, 0, [513, 1]);
  assertSame(F(d1), src, "contiguous copy");
  // transposed source
  const d2 = f32(n);
  native.copy([513, 67], sab, DTypeCode.F32, 0, [1, 513], d2, DTypeCode.F32, 0, [67, 1]);
  for (let i = 0; i < 513; i++) for (let j = 0; j < 67; j++) assert.equal(F(d2)[i * 67 + j], src[j * 513 + i]);
  // broadcast row into a strided destination with an offset
  const d3 = f32(3 + 2 * 5 * 7);
  native.copy([5, 7], sab, DTypeCode.F32, 2, [0, 1], d3, DTypeCode.F32, 3, [14, 2]);
  for (let i = 0; i < 5; i++) for (let j = 0; j < 7; j++) assert.equal(F(d3)[3 + i * 14 + j * 2], src[2 + j]);
  // rank 0 scalar
  const d4 = f32(1);
  native.copy([], sab, DTypeCode.F32, 9, [], d4, DTypeCode.F32, 0, []);
  assert.equal(F(d4)[0], src[9]);
});

test("copy: casts between every dtype pair", () => {
  const values = [0, 1, -1, 2.5, -2.75, 1 / 3, 65504, -0.0001, 3e9, 7];
  const codes = [DTypeCode.F32, DTypeCode.F16, DTypeCode.BF16, DTypeCode.I64, DTypeCode.I32, DTypeCode.Bool];
  const size = [4, 2, 2, 8, 4, 1];
  const read = (ab: ArrayBuffer, dt: DTypeCode, i: number): number => {
    switch (dt) {
      case DTypeCode.F32: return new Float32Array(ab)[i];
      case DTypeCode.F16: return halfToNumber(new Uint16Array(ab)[i]);
      case DTypeCode.BF16: return bf16ToNumber(new Uint16Array(ab)[i]);
      case DTypeCode.I64: return Number(new BigInt64Array(ab)[i]);
      case DTypeCode.I32: return new Int32Array(ab)[i];
      default: return new Uint8Array(ab)[i];
    }
  };
  const src = f32(values);
  for (const s of codes) {
    // bring the values into dtype s first (from float32), then cast to every d and compare with the JS rule
    const sab = native.alloc(values.length * size[s]);
    native.copy([values.length], src, DTypeCode.F32, 0, [1], sab, s, 0, [1]);
    for (const d of codes) {
      const dab = native.alloc(values.length * size[d]);
      native.copy([values.length], sab, s, 0, [1], dab, d, 0, [1]);
      for (let i = 0; i < values.length; i++) {
        const v = read(sab, s, i);
        let want: number;
        if (d === DTypeCode.Bool) want = v !== 0 ? 1 : 0;
        else if (d === DTypeCode.I64) want = Math.abs(v) < 2 ** 63 ? Math.trunc(v) + 0 : -(2 ** 63); // x86's indefinite
        else if (d === DTypeCode.I32 && s === DTypeCode.I64) want = Number(BigInt.asIntN(32, BigInt(v))); // wraps
        else if (d === DTypeCode.I32) want = Math.abs(v) < 2 ** 31 ? Math.trunc(v) + 0 : -(2 ** 31);
        else if (d === DTypeCode.F32) want = Math.fround(v);
        else if (d === DTypeCode.F16) want = halfToNumber(numberToHalf(Math.fround(v)));
        else want = bf16ToNumber(numberToBf16(Math.fround(v)));
        assert.equal(read(dab, d, i), want, `${s} -> ${d} of ${v}`);
      }
      native.free(dab);
    }
    native.free(sab);
  }
});


test("copy: bf16 and f16 round to nearest even (1/3 -> 0x3eab, 0x3555), int64 stays exact", () => {
  const src = f32([1 / 3, -1 / 3, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1e-7, 70000]);
  const bf = native.alloc(16), hf = native.alloc(16);
  native.copy([8], src, DTypeCode.F32, 0, [1], bf, DTypeCode.BF16, 0, [1]);
  native.copy([8], src, DTypeCode.F32, 0, [1], hf, DTypeCode.F16, 0, [1]);
  const b = new Uint16Array(bf), h = new Uint16Array(hf);
  assert.equal(b[0], 0x3eab);
  assert.equal(b[1], 0xbeab);
  assert.equal(b[2], 0x3f80); // tie rounds to even (down)
  assert.equal(b[3], 0x3f82); // tie rounds to even (up)
  assert.equal(h[0], 0x3555);
  assert.equal(h[4], 0x3c00);
  assert.equal(h[5], 0x3c02);
  assert.equal(h[6], 2); // subnormal half: 1e-7 / 2^-24 = 1.68 -> 2
  assert.equal(h[7], 0x7c00); // overflow to inf
  // round trip back to float32
  const back = f32(8);
  native.copy([8], bf, DTypeCode.BF16, 0, [1], back, DTypeCode.F32, 0, [1]);
  assert.equal(F(back)[0], bf16ToNumber(0x3eab));
  const big = i64([2 ** 53 - 1, -(2 ** 53) + 3, 123456789012345]);
  const big2 = native.alloc(24);
  native.copy([3], big, DTypeCode.I64, 0, [1], big2, DTypeCode.I64, 0, [1]);
  assert.deepEqual([...new BigInt64Array(big2)], [...new BigInt64Array(big)]);
  const asI32 = native.alloc(12);
  native.copy([3], big, DTypeCode.I64, 0, [1], asI32, DTypeCode.I32, 0, [1]);
  assert.equal(new Int32Array(asI32)[2], Number(BigInt.asIntN(32, 123456789012345n)));
});

test("fill: strided views of several dtypes", () => {
  const a = f32(20);
  native.fill([3, 2], a, DTypeCode.F32, 1, [6, 2], 2.5);
  const want = new Float32Array(20);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) want[1 + i * 6 + j * 2] = 2.5;
  assert.deepEqual(F(a), want);
  const l = native.alloc(8 * 4);
  native.fill([4], l, DTypeCode.I64, 0, [1], 2 ** 53 - 1);
  assert.equal(new BigInt64Array(l)[3], BigInt(2 ** 53 - 1));
  const h = native.alloc(2 * 3);
  native.fill([3], h, DTypeCode.BF16, 0, [1], 1 / 3);
  assert.equal(new Uint16Array(h)[2], 0x3eab);
  const big = f32(100_000);
  native.fill([100_000], big, DTypeCode.F32, 0, [1], -1);
  assert.ok(F(big).every((v) => v === -1));
});

// ---------------------------------------------------------------- elementwise

const binaryRef: Record<number, (a: number, b: number) => number> = {
  [BinaryOp.Add]: (a, b) => a + b,
  [BinaryOp.Sub]: (a, b) => a - b,
  [BinaryOp.Mul]: (a, b) => a * b,
  [BinaryOp.Div]: (a, b) => a / b,
  [BinaryOp.Max]: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)),
  [BinaryOp.Min]: (a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)),
  [BinaryOp.Pow]: (a, b) => Math.pow(a, b),
};

test("binary: every op with transposed, broadcast, large and aliased views", () => {
  const R = 129, C = 301; // > 32K elements: threaded
  const a = randArray(R * C, 2), b = randArray(R * C, 3, 0.5, 2);
  a[5] = NaN;
  const aab = f32(a), bab = f32(b);
  for (const op of [BinaryOp.Add, BinaryOp.Sub, BinaryOp.Mul, BinaryOp.Div, BinaryOp.Max, BinaryOp.Min, BinaryOp.Pow]) {
    const ref = binaryRef[op];
    // contiguous
    const o = f32(R * C);
    native.binary(op, [R, C], aab, 0, [C, 1], bab, 0, [C, 1], o, 0, [C, 1]);
    close(F(o), Array.from(a, (v, i) => Math.fround(ref(v, b[i]))), 1e-6, 0, `op ${op} contiguous`);
    // a transposed ([C, R] view of a), b broadcast along rows ([1, R] -> stride 0)
    const o2 = f32(C * R);
    native.binary(op, [C, R], aab, 0, [1, C], bab, 7, [0, 1], o2, 0, [R, 1]);
    const want2: number[] = [];
    for (let i = 0; i < C; i++) for (let j = 0; j < R; j++) want2.push(Math.fround(ref(a[j * C + i], b[7 + j])));
    close(F(o2), want2, 1e-6, 0, `op ${op} transposed/broadcast`);
  }
  // out aliases a exactly (in-place add)
  const x = randArray(1000, 4), y = randArray(1000, 5);
  const xab = f32(x), yab = f32(y);
  native.binary(BinaryOp.Add, [1000], xab, 0, [1], yab, 0, [1], xab, 0, [1]);
  close(F(xab), Array.from(x, (v, i) => Math.fround(v + y[i])), 0, 0, "aliased add");
});

test("binaryScalar and compare", () => {
  const a = randArray(777, 6);
  a[3] = NaN;
  const aab = f32(a);
  const o = f32(777);
  native.binaryScalar(BinaryOp.Sub, [777], aab, 0, [1], 2, true, o, 0, [1]);
  close(F(o), Array.from(a, (v) => Math.fround(2 - v)), 0, 0, "2 - a");
  native.binaryScalar(BinaryOp.Div, [777], aab, 0, [1], 4, false, o, 0, [1]);
  close(F(o), Array.from(a, (v) => Math.fround(v / 4)), 0, 0, "a / 4");
  native.binaryScalar(BinaryOp.Pow, [777], aab, 0, [1], 2, false, o, 0, [1]);
  close(F(o), Array.from(a, (v) => Math.fround(v * v)), 1e-7, 0, "a ** 2");
  const b = randArray(777, 7);
  b[10] = a[10];
  const bab = f32(b);
  const cmp: Record<number, (x: number, y: number) => boolean> = {
    [CompareOp.Eq]: (x, y) => x === y, [CompareOp.Ne]: (x, y) => x !== y, [CompareOp.Lt]: (x, y) => x < y,
    [CompareOp.Le]: (x, y) => x <= y, [CompareOp.Gt]: (x, y) => x > y, [CompareOp.Ge]: (x, y) => x >= y,
  };
  for (const op of [CompareOp.Eq, CompareOp.Ne, CompareOp.Lt, CompareOp.Le, CompareOp.Gt, CompareOp.Ge]) {
    const out = native.alloc(777);
    native.compare(op, [7, 111], aab, 0, [111, 1], bab, 0, [111, 1], out, 0, [111, 1]);
    assert.deepEqual([...new Uint8Array(out)], Array.from(a, (v, i) => (cmp[op](v, b[i]) ? 1 : 0)), `compare ${op}`);
  }
});

const unaryRef: Record<number, (x: number, alpha: number) => number> = {
  [UnaryOp.Neg]: (x) => -x,
  [UnaryOp.Exp]: Math.exp,
  [UnaryOp.Log]: Math.log,
  [UnaryOp.Tanh]: Math.tanh,
  [UnaryOp.Relu]: (x) => (x < 0 ? 0 : x),
  [UnaryOp.GeluErf]: geluErf,
  [UnaryOp.GeluTanh]: geluTanh,
  [UnaryOp.Sigmoid]: (x) => 1 / (1 + Math.exp(-x)),
  [UnaryOp.Sqrt]: Math.sqrt,
  [UnaryOp.Rsqrt]: (x) => 1 / Math.sqrt(x),
  [UnaryOp.Abs]: Math.abs,
  [UnaryOp.Square]: (x) => x * x,
  [UnaryOp.Reciprocal]: (x) => 1 / x,
  [UnaryOp.Softplus]: (x) => (x > 20 ? x : Math.log1p(Math.exp(x))),
  [UnaryOp.Log1p]: Math.log1p,
  [UnaryOp.PowScalar]: (x, a) => Math.pow(x, Math.fround(a)),
  [UnaryOp.Sign]: (x) => Math.sign(x) + 0,
  [UnaryOp.Erf]: erf,
};

test("unary: every op against float64 references, incl. tails and special values", () => {
  const n = 40_001;
  const x = randArray(n, 8, -9, 9);
  const specials = [0, -0, 1e-30, -1e-8, 0.5, 0.625, 0.84375, -0.85, 2.5, -5, 10, -10, 30, -30, 88, 88.7, 89, -87,
    -100, -104, -110, Infinity, -Infinity, NaN];
  x.set(specials, 0);
  const xab = f32(x);
  // positive inputs for log / sqrt / pow
  const px = Float32Array.from(x, (v) => Math.abs(v));
  const pxab = f32(px);
  for (const [opStr, ref] of Object.entries(unaryRef)) {
    const op = Number(opStr) as UnaryOp;
    const positive = op === UnaryOp.Log || op === UnaryOp.Sqrt || op === UnaryOp.Rsqrt || op === UnaryOp.PowScalar ||
      op === UnaryOp.Log1p;
    const input = positive ? px : x;
    const alpha = op === UnaryOp.PowScalar ? 1.7 : 0;
    const o = f32(n);
    native.unary(op, alpha, [n], positive ? pxab : xab, 0, [1], o, 0, [1]);
    const want = Array.from(input, (v) => ref(v, alpha));
    // a couple of float ulp for the hand-written approximations, plus an absolute floor at the underflow
    // threshold; erfc's far tail (so GELU's negative side) is within 6e-7, and tanh-GELU's negative tail
    // amplifies the float rounding of its inner polynomial u by |2u|
    const got = F(o);
    for (let i = 0; i < n; i++) {
      const w = want[i];
      const u = K * (input[i] + 0.044715 * input[i] ** 3);
      const rtol = op === UnaryOp.GeluErf || op === UnaryOp.Erf ? 6e-7
        : op === UnaryOp.GeluTanh ? 2e-7 * (2 + Math.abs(2 * u)) : 3e-7;
      if (Number.isNaN(w)) assert.ok(Number.isNaN(got[i]), `op ${op} at ${input[i]}: got ${got[i]}, want NaN`);
      else if (!Number.isFinite(Math.fround(w))) assert.equal(got[i], Math.fround(w), `op ${op} at ${input[i]}`);
      else assert.ok(Math.abs(got[i] - w) <= 1.2e-38 + rtol * Math.abs(w), `op ${op} at ${input[i]}: ${got[i]}, ${w}`);
    }
  }
  // strided input and output
  const o = f32(2 * 5 * 3);
  native.unary(UnaryOp.Exp, 0, [5, 3], xab, 100, [7, 2], o, 1, [6, 2]);
  for (let i = 0; i < 5; i++)
    for (let j = 0; j < 3; j++)
      close([F(o)[1 + i * 6 + j * 2]], [Math.exp(x[100 + i * 7 + j * 2])], 3e-7, 0, "strided exp");
});

test("unaryGrad: derivatives of gelu (erf, tanh), tanh, sigmoid, relu", () => {
  const n = 50_003;
  const x = randArray(n, 9, -7, 7);
  const dy = randArray(n, 10);
  const xab = f32(x), dyab = f32(dy);
  const pdf = (v: number) => Math.exp(-v * v / 2) / Math.sqrt(2 * Math.PI);
  const refs: [UnaryGradOp, (v: number) => number][] = [
    [UnaryGradOp.GeluErf, (v) => 0.5 * erfc(-v / Math.SQRT2) + v * pdf(v)],
    [UnaryGradOp.GeluTanh, (v) => {
      const t = Math.tanh(K * (v + 0.044715 * v ** 3));
      return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * K * (1 + 3 * 0.044715 * v * v);
    }],
    [UnaryGradOp.TanhFromOutput, (y) => 1 - y * y],
    [UnaryGradOp.SigmoidFromOutput, (y) => y * (1 - y)],
    [UnaryGradOp.Relu, (v) => (v > 0 ? 1 : 0)],
  ];
  for (const [op, d] of refs) {
    const dx = f32(n);
    native.unaryGrad(op, n, xab, 0, dyab, 0, dx, 0);
    close(F(dx), Array.from(x, (v, i) => dy[i] * d(v)), 2e-6, 2e-6, `grad op ${op}`);
  }
  // in place on dy
  const dy2 = f32(dy);
  native.unaryGrad(UnaryGradOp.TanhFromOutput, n, xab, 0, dy2, 0, dy2, 0);
  close(F(dy2), Array.from(x, (v, i) => dy[i] * (1 - v * v)), 1e-6, 1e-6, "in place grad");
});

test("where and biasGelu", () => {
  const R = 40, C = 1000;
  const cond = native.alloc(C);
  const cv = new Uint8Array(cond);
  const r = rng(11);
  for (let i = 0; i < C; i++) cv[i] = r() < 0.5 ? 1 : 0;
  const a = randArray(R * C, 12), b = randArray(C, 13);
  const aab = f32(a), bab = f32(b);
  const o = f32(R * C);
  // cond broadcast over rows, b broadcast over rows
  native.where([R, C], cond, 0, [0, 1], aab, 0, [C, 1], bab, 0, [0, 1], o, 0, [C, 1]);
  const want: number[] = [];
  for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) want.push(cv[j] ? a[i * C + j] : b[j]);
  assertSame(F(o), want, "where");

  const rows = 65, cols = 771;
  const h = randArray(rows * cols, 14, -6, 6), bias = randArray(cols, 15);
  const hab = f32(h), biasab = f32(bias), y = f32(rows * cols);
  native.biasGelu(rows, cols, hab, 0, biasab, 0, y, 0);
  const hb = Array.from(h, (v, i) => Math.fround(v + bias[i % cols]));
  close(F(hab), hb, 0, 0, "h + bias");
  close(F(y), hb.map(geluErf), 6e-7, 1e-30, "gelu(h + bias)");
});

// ---------------------------------------------------------------- reductions

function reduceRef(op: ReduceOp, src: Float32Array, outer: number, n: number, inner: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let acc = op === ReduceOp.Sum ? 0 : src[o * n * inner + i];
      for (let k = 0; k < n; k++) {
        const v = src[(o * n + k) * inner + i];
        if (op === ReduceOp.Sum) acc += v;
        else if (Number.isNaN(v) || Number.isNaN(acc)) acc = NaN;
        else acc = op === ReduceOp.Max ? Math.max(acc, v) : Math.min(acc, v);
      }
      out.push(op === ReduceOp.Sum ? Math.fround(acc) : acc);
    }
  return out;
}

test("reduce: sum (double accumulation), max, min over [outer, n, inner], NaN propagation", () => {
  for (const [outer, n, inner] of [[3, 1001, 1], [1, 200_003, 1], [5, 37, 300], [2, 7, 1], [4, 1, 9]]) {
    const src = randArray(outer * n * inner, outer * 1000 + n);
    if (outer === 5) src[2 * n * inner + 5 * inner + 17] = NaN; // o = 2, k = 5, i = 17
    const sab = f32(src);
    for (const op of [ReduceOp.Sum, ReduceOp.Max, ReduceOp.Min]) {
      const dst = f32(outer * inner);
      native.reduce(op, outer, n, inner, sab, 0, dst, 0);
      close(F(dst), reduceRef(op, src, outer, n, inner), 1e-7, 1e-9, `reduce ${op} [${outer},${n},${inner}]`);
    }
  }
  // a sum that float accumulation gets badly wrong: 1 + 2^24 small terms
  const big = new Float32Array(1 << 24).fill(1);
  big[0] = 2 ** 24;
  const bab = f32(big), out = f32(1);
  native.reduce(ReduceOp.Sum, 1, big.length, 1, bab, 0, out, 0);
  assert.equal(F(out)[0], 2 ** 25 - 1 + 1);
  native.free(bab);
});

test("argmax: first maximum, NaN wins, int64 output", () => {
  const src = f32([1, 5, 5, 2, /**/ 0, NaN, 9, NaN, /**/ -1, -1, -1, -1]);
  const dst = native.alloc(3 * 8);
  native.argmax(3, 4, 1, src, 0, dst, 0);
  assert.deepEqual([...new BigInt64Array(dst)], [1n, 1n, 0n]);
  const outer = 3, n = 50, inner = 40;
  const x = randArray(outer * n * inner, 16);
  const d2 = native.alloc(outer * inner * 8);
  native.argmax(outer, n, inner, f32(x), 0, d2, 0);
  const want: bigint[] = [];
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let best = 0;
      for (let k = 1; k < n; k++) if (x[(o * n + k) * inner + i] > x[(o * n + best) * inner + i]) best = k;
      want.push(BigInt(best));
    }
  assert.deepEqual([...new BigInt64Array(d2)], want);
});

test("sumSquares and scaleMany over lists of buffers", () => {
  const a = randArray(100_000, 17), b = randArray(33, 18);
  const aab = f32(a), bab = f32(b);
  let want = 0;
  for (const v of a.subarray(10)) want += v * v;
  for (const v of b.subarray(0, 20)) want += v * v;
  const got = native.sumSquares([aab, bab], [10, 0], [a.length - 10, 20]);
  assert.ok(Math.abs(got - want) <= 1e-12 * want, `${got} vs ${want}`);
  native.scaleMany([aab, bab], [0, 3], [a.length, 30], 0.5);
  close(F(aab), Array.from(a, (v) => Math.fround(v * 0.5)), 0, 0, "scaled a");
  close(F(bab), Array.from(b, (v, i) => (i >= 3 ? Math.fround(v * 0.5) : v)), 0, 0, "scaled b");
});

// ---------------------------------------------------------------- softmax

function softmaxRef(row: ArrayLike<number>): number[] {
  const m = Math.max(...Array.from(row));
  const e = Array.from(row, (v) => Math.exp(v - m));
  const s = e.reduce((p, q) => p + q, 0);
  return e.map((v) => v / s);
}

test("softmax / log-softmax forward and backward", () => {
  const rows = 70, cols = 515;
  const x = randArray(rows * cols, 19, -10, 10);
  const dy = randArray(rows * cols, 20);
  const xab = f32(x), dyab = f32(dy);
  const y = f32(rows * cols), ly = f32(rows * cols);
  native.softmaxForward(rows, cols, xab, 0, y, 0, false);
  native.softmaxForward(rows, cols, xab, 0, ly, 0, true);
  const wantY: number[] = [], wantL: number[] = [], wantDx: number[] = [], wantLDx: number[] = [];
  for (let r = 0; r < rows; r++) {
    const p = softmaxRef(x.subarray(r * cols, (r + 1) * cols));
    const dyr = dy.subarray(r * cols, (r + 1) * cols);
    const dot = p.reduce((acc, v, i) => acc + v * dyr[i], 0);
    const sdy = dyr.reduce((acc, v) => acc + v, 0);
    p.forEach((v, i) => {
      wantY.push(v);
      wantL.push(Math.log(v));
      wantDx.push(v * (dyr[i] - dot));
      wantLDx.push(dyr[i] - v * sdy);
    });
  }
  close(F(y), wantY, 2e-6, 1e-12, "softmax");
  close(F(ly), wantL, 1e-6, 2e-6, "log-softmax");
  const dx = f32(rows * cols), ldx = f32(rows * cols);
  native.softmaxBackward(rows, cols, y, 0, dyab, 0, dx, 0, false);
  native.softmaxBackward(rows, cols, ly, 0, dyab, 0, ldx, 0, true);
  close(F(dx), wantDx, 1e-5, 1e-6, "softmax backward");
  close(F(ldx), wantLDx, 1e-5, 1e-5, "log-softmax backward");
  // in place forward
  native.softmaxForward(rows, cols, xab, 0, xab, 0, false);
  close(F(xab), wantY, 2e-6, 1e-12, "in-place softmax");
});

test("maskedSoftmaxForward: scale, [B, T] mask broadcast over heads and rows, fully masked rows uniform", () => {
  const B = 3, H = 4, S = 5, T = 37;
  const scores = randArray(B * H * S * T, 21, -5, 5);
  const mask = new Float32Array(B * T);
  for (let t = 0; t < T; t++) {
    mask[t] = t < 20 ? 0 : -1e9; // batch 0: padded tail
    mask[T + t] = -Infinity; // batch 1: everything masked with -inf
    mask[2 * T + t] = -3.4028234663852886e38; // batch 2: everything masked with finfo.min
  }
  const sab = f32(scores), mab = f32(mask), y = f32(scores.length);
  native.maskedSoftmaxForward(B, H, S, T, sab, 0, 0.125, mab, 0, y, 0);
  const got = F(y);
  assert.ok(got.every((v) => Number.isFinite(v)), "no NaN");
  for (let r = 0; r < B * H * S; r++) {
    const b = Math.floor(r / (H * S));
    const row = got.subarray(r * T, (r + 1) * T);
    if (b === 0) {
      const want = softmaxRef(Array.from({ length: 20 }, (_, t) => scores[r * T + t] * 0.125));
      close(row.subarray(0, 20), want, 2e-6, 1e-12, `row ${r}`);
      assert.ok(row.subarray(20).every((v) => v === 0));
    } else {
      close(row, new Array(T).fill(1 / T), 1e-6, 0, `fully masked row ${r}`);
    }
  }
  // null mask
  const y2 = f32(scores.length);
  native.maskedSoftmaxForward(B, H, S, T, sab, 0, 0.5, null, 0, y2, 0);
  close(F(y2).subarray(0, T), softmaxRef(Array.from(scores.subarray(0, T), (v) => v * 0.5)), 2e-6, 1e-12, "no mask");
});

// ---------------------------------------------------------------- layer norm

test("layerNorm forward and backward, with and without affine, aliased dx = dy", () => {
  const rows = 97, cols = 389, eps = 1e-12;
  const x = randArray(rows * cols, 22, -2, 4), w = randArray(cols, 23), b = randArray(cols, 24);
  const dy = randArray(rows * cols, 25);
  const xab = f32(x), wab = f32(w), bab = f32(b), dyab = f32(dy);
  for (const affine of [true, false]) {
    const y = f32(rows * cols), mean = f32(rows), rstd = f32(rows);
    native.layerNormForward(rows, cols, xab, 0, affine ? wab : null, 0, affine ? bab : null, 0, eps, y, 0, mean, rstd);
    const wantY: number[] = [], wantDx: number[] = [], wantMean: number[] = [], wantRstd: number[] = [];
    const dwRef = new Float64Array(cols), dbRef = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      const xr = x.subarray(r * cols, (r + 1) * cols), dyr = dy.subarray(r * cols, (r + 1) * cols);
      const mu = xr.reduce((p, q) => p + q, 0) / cols;
      const v = xr.reduce((p, q) => p + (q - mu) ** 2, 0) / cols;
      const rs = 1 / Math.sqrt(v + eps);
      wantMean.push(mu);
      wantRstd.push(rs);
      const xhat = Array.from(xr, (q) => (q - mu) * rs);
      const g = Array.from(dyr, (q, i) => (affine ? q * w[i] : q));
      const mg = g.reduce((p, q) => p + q, 0) / cols;
      const mgx = g.reduce((p, q, i) => p + q * xhat[i], 0) / cols;
      xhat.forEach((h, i) => {
        wantY.push(affine ? h * w[i] + b[i] : h);
        wantDx.push(rs * (g[i] - mg - h * mgx));
        dwRef[i] += dyr[i] * h;
        dbRef[i] += dyr[i];
      });
    }
    close(F(mean), wantMean, 1e-6, 1e-7, "mean");
    close(F(rstd), wantRstd, 1e-6, 0, "rstd");
    close(F(y), wantY, 1e-5, 1e-5, "layer norm y");
    const dx = f32(rows * cols), dw = f32(cols), db = f32(cols);
    native.layerNormBackward(rows, cols, xab, 0, dyab, 0, affine ? wab : null, 0, mean, rstd, dx, 0, dw, db);
    close(F(dx), wantDx, 1e-4, 1e-5, "layer norm dx");
    close(F(dw), dwRef, 1e-4, 1e-4, "dw");
    close(F(db), dbRef, 1e-4, 1e-4, "db");
    // dx written over dy, no dw / db
    const dyCopy = f32(dy);
    native.layerNormBackward(rows, cols, xab, 0, dyCopy, 0, affine ? wab : null, 0, mean, rstd, dyCopy, 0, null, null);
    close(F(dyCopy), F(dx), 0, 0, "aliased dx");
  }
});

// ---------------------------------------------------------------- embedding, cross-entropy

test("embedding forward / backward with repeated ids and padding; bad ids throw RangeError", () => {
  const V = 50, D = 97, n = 600;
  const table = randArray(V * D, 26), dy = randArray(n * D, 27);
  const r = rng(28);
  const ids = Array.from({ length: n }, () => Math.floor(r() * V));
  const idsab = i64(ids), tab = f32(table), out = f32(n * D);
  native.embeddingForward(n, idsab, 0, V, D, tab, 0, out, 0);
  for (let i = 0; i < n; i++)
    assertSame(F(out).subarray(i * D, (i + 1) * D), table.subarray(ids[i] * D, (ids[i] + 1) * D), `row ${i}`);
  const dtable = f32(V * D);
  native.embeddingBackward(n, idsab, 0, V, D, f32(dy), 0, dtable, 3);
  const want = new Float64Array(V * D);
  for (let i = 0; i < n; i++) if (ids[i] !== 3) for (let c = 0; c < D; c++) want[ids[i] * D + c] += dy[i * D + c];
  close(F(dtable), want, 1e-5, 1e-5, "dtable");
  expectThrows(() => native.embeddingForward(2, i64([1, 50]), 0, V, D, tab, 0, out, 0), RangeError, /50.*V = 50/);
  expectThrows(() => native.embeddingBackward(1, i64([-1]), 0, V, D, f32(D), 0, dtable, -1), RangeError, /-1/);
});

test("cross entropy forward / backward with ignore_index; bad targets throw RangeError", () => {
  const N = 37, C = 1011;
  const logits = randArray(N * C, 29, -8, 8);
  const r = rng(30);
  const targets = Array.from({ length: N }, (_, i) => (i % 5 === 0 ? -100 : Math.floor(r() * C)));
  const lab = f32(logits), tab = i64(targets), loss = f32(N), lse = f32(N);
  native.crossEntropyForward(N, C, lab, 0, tab, 0, -100, loss, lse);
  const g = randArray(N, 31), gab = f32(g), dl = f32(N * C);
  native.crossEntropyBackward(N, C, lab, 0, tab, 0, -100, lse, gab, dl);
  const wantLoss: number[] = [], wantLse: number[] = [], wantD: number[] = [];
  for (let i = 0; i < N; i++) {
    const row = logits.subarray(i * C, (i + 1) * C);
    const m = Math.max(...row);
    const l = m + Math.log(row.reduce((p, q) => p + Math.exp(q - m), 0));
    wantLse.push(l);
    wantLoss.push(targets[i] === -100 ? 0 : l - row[targets[i]]);
    for (let c = 0; c < C; c++)
      wantD.push(targets[i] === -100 ? 0 : g[i] * (Math.exp(row[c] - l) - (c === targets[i] ? 1 : 0)));
  }
  close(F(lse), wantLse, 1e-6, 1e-6, "lse");
  close(F(loss), wantLoss, 1e-5, 1e-5, "loss");
  close(F(dl), wantD, 1e-5, 1e-7, "dlogits");
  expectThrows(() => native.crossEntropyForward(1, C, lab, 0, i64([C]), 0, -100, loss, lse), RangeError,
    new RegExp(`target ${C}`));
  expectThrows(() => native.crossEntropyBackward(1, C, lab, 0, i64([-5]), 0, -100, lse, gab, dl), RangeError,
    /target -5/);
});

// ---------------------------------------------------------------- optimizer

test("adamw matches torch.optim.AdamW's float32 update over several steps and tensors", () => {
  const sizes = [1000, 40_000, 3];
  const lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wds = [0.01, 0, 0.1];
  const p = sizes.map((n, i) => randArray(n, 40 + i)), m = sizes.map((n) => new Float32Array(n));
  const v = sizes.map((n) => new Float32Array(n));
  const pab = p.map((a) => f32(a)), mab = sizes.map((n) => f32(n)), vab = sizes.map((n) => f32(n));
  const fr = Math.fround;
  for (let step = 1; step <= 3; step++) {
    const g = sizes.map((n, i) => randArray(n, 100 * step + i));
    native.adamw(pab, g.map((a) => f32(a)), mab, vab, sizes, wds, lr, b1, b2, eps, step);
    const stepSize = fr(-(lr / (1 - b1 ** step)));
    const bc2 = fr(Math.sqrt(1 - b2 ** step));
    sizes.forEach((n, t) => {
      const decay = fr(1 - lr * wds[t]);
      for (let i = 0; i < n; i++) {
        const gi = g[t][i];
        const pi = fr(p[t][i] * decay);
        m[t][i] = fr(m[t][i] + fr(fr(1 - b1) * fr(gi - m[t][i])));
        v[t][i] = fr(fr(v[t][i] * fr(b2)) + fr(fr(fr(1 - b2) * gi) * gi));
        const denom = fr(fr(fr(Math.sqrt(v[t][i])) / bc2) + fr(eps));
        p[t][i] = fr(pi + fr(fr(stepSize * m[t][i]) / denom));
      }
    });
  }
  // every step is rounded to float32 like torch's kernels, so the results are bit-identical
  sizes.forEach((_, t) => {
    assertSame(F(pab[t]), p[t], `param ${t}`);
    assertSame(F(mab[t]), m[t], `exp_avg ${t}`);
    assertSame(F(vab[t]), v[t], `exp_avg_sq ${t}`);
  });
});

test("adamw writes each parameter's 16-bit copy, where given, as the cast of its new values", () => {
  const sizes = [1000, 40_000, 3];
  const wds = [0.01, 0, 0.1];
  const dtypes = [DTypeCode.BF16, DTypeCode.F32, DTypeCode.F16];
  const lists = () => [sizes.map((n, i) => f32(randArray(n, 40 + i))), sizes.map((n) => f32(n)), sizes.map((n) => f32(n))];
  const [p, m, v] = lists(), [pRef, mRef, vRef] = lists();
  const copies = sizes.map((n, i) => (i === 1 ? null : native.alloc(n * 2)));
  for (let step = 1; step <= 2; step++) {
    const g = sizes.map((n, i) => f32(randArray(n, 100 * step + i)));
    native.adamw(p, g, m, v, sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step, copies, dtypes);
    native.adamw(pRef, g, mRef, vRef, sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step);
  }
  sizes.forEach((n, t) => {
    assertSame(F(p[t]), F(pRef[t]), `param ${t}`);
    const copy = copies[t];
    if (copy === null) return;
    const cast = native.alloc(n * 2);
    native.copy([n], p[t], DTypeCode.F32, 0, [1], cast, dtypes[t], 0, [1]);
    assertSame(new Uint16Array(copy), new Uint16Array(cast), `copy ${t}`);
  });
  const one = [f32(4)];
  const run = (copyList: (ArrayBuffer | null)[], codes: DTypeCode[]) => () =>
    native.adamw(one, one, one, one, [4], [0], 1e-3, 0.9, 0.999, 1e-8, 1, copyList, codes);
  expectThrows(run([native.alloc(6)], [DTypeCode.BF16]), RangeError, /copies\[0\]/);
  expectThrows(run([native.alloc(8)], [DTypeCode.F32]), RangeError, /copyDtypes/);
  expectThrows(run([native.alloc(8), null], [DTypeCode.BF16, DTypeCode.BF16]), RangeError, /copies/);
  expectThrows(run([native.alloc(8)], []), RangeError, /copyDtypes/);
  expectThrows(run([3 as unknown as ArrayBuffer], [DTypeCode.BF16]), TypeError, /copies/);
});

// ---------------------------------------------------------------- random

test("random: counter-based, independent of thread count and chunking, with sane statistics", () => {
  const n = 200_000, seed = 2 ** 53 - 11;
  const threads = native.getNumThreads();
  const u1 = f32(n), u2 = f32(n), part = f32(n);
  native.setNumThreads(1);
  native.uniform(n, seed, 17, -2, 3, u1, 0);
  native.setNumThreads(Math.max(2, threads));
  native.uniform(n, seed, 17, -2, 3, u2, 0);
  assertSame(F(u1), F(u2), "1 vs 2 threads");
  // resuming the stream at offset 17 + 1000 gives the tail
  native.uniform(n - 1000, seed, 17 + 1000, -2, 3, part, 0);
  assertSame(F(part).subarray(0, n - 1000), F(u1).subarray(1000), "resumed stream");
  const uv = F(u1);
  assert.ok(uv.every((v) => v >= -2 && v < 3));
  const umean = uv.reduce((a, b) => a + b, 0) / n;
  assert.ok(Math.abs(umean - 0.5) < 0.02, `uniform mean ${umean}`);
  // a different seed gives different numbers
  native.uniform(n, seed - 1, 17, -2, 3, u2, 0);
  assert.notDeepEqual(F(u2).subarray(0, 10), uv.subarray(0, 10));

  const z = f32(n);
  native.normal(n, 7, 0, 1.5, 2, z, 0);
  const zv = F(z);
  const mean = zv.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(zv.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  assert.ok(zv.every(Number.isFinite));
  assert.ok(Math.abs(mean - 1.5) < 0.03 && Math.abs(sd - 2) < 0.03, `normal mean ${mean} sd ${sd}`);

  const x = randArray(n, 50), xab = f32(x), y = f32(n), mask = native.alloc(n);
  native.dropout(n, 99, 5, 0.1, xab, 0, y, 0, mask);
  const mk = new Uint8Array(mask);
  const kept = mk.reduce((a, b) => a + b, 0) / n;
  assert.ok(Math.abs(kept - 0.9) < 0.01, `kept ${kept}`);
  close(F(y), Array.from(x, (v, i) => (mk[i] ? Math.fround(v * Math.fround(1 / 0.9)) : 0)), 1e-7, 0, "dropout y");
  native.setNumThreads(threads);
  const y1 = f32(n), m1 = native.alloc(n);
  native.dropout(n, 99, 5, 0.1, xab, 0, y1, 0, m1);
  assertSame(new Uint8Array(m1), mk, "dropout mask across thread counts");
  native.dropout(n, 99, 5, 1, xab, 0, y1, 0, m1);
  assert.ok(F(y1).every((v) => v === 0));
});

// Random123's Philox4x32-10 in BigInt, the reference for the native kernels' (and the CUDA ones') streams
function philox(key: bigint, ctr: bigint): number[] {
  const M = 0xffffffffn;
  let c0 = ctr & M, c1 = (ctr >> 32n) & M, c2 = 0n, c3 = 0n, k0 = key & M, k1 = key >> 32n;
  for (let r = 0; r < 10; r++) {
    const p0 = 0xd2511f53n * c0, p1 = 0xcd9e8d57n * c2;
    [c0, c1, c2, c3] = [(p1 >> 32n) ^ c1 ^ k0, p1 & M, (p0 >> 32n) ^ c3 ^ k1, p0 & M];
    k0 = (k0 + 0x9e3779b9n) & M;
    k1 = (k1 + 0xbb67ae85n) & M;
  }
  return [c0, c1, c2, c3].map(Number);
}

test("random: uniform and dropout match a Philox reference at unaligned, short and huge offsets", () => {
  const x = f32(Array.from({ length: 300 }, (_, i) => i - 150)), out = f32(300), y = f32(300), mask = native.alloc(300);
  for (const [seed, offset, n] of [[7, 0, 300], [2 ** 53 - 11, 3, 5], [2 ** 53 - 11, 13, 270], [1, 2 ** 34 - 7, 200],
    [2 ** 40 + 3, 2 ** 53 - 299, 298], [5, 2 ** 60 + 2 ** 20, 1]]) {
    const want = Array.from({ length: n }, (_, i) => {
      const e = BigInt(offset) + BigInt(i);
      return (philox(BigInt(seed), e / 4n)[Number(e % 4n)] >>> 8) / 2 ** 24;
    });
    native.uniform(n, seed, offset, 0, 1, out, 0);
    assertSame(F(out).subarray(0, n), want, `uniform at ${offset}`);
    native.dropout(n, seed, offset, 0.5, x, 0, y, 0, mask);
    assertSame(new Uint8Array(mask, 0, n), want.map((u) => (u >= 0.5 ? 1 : 0)), `dropout mask at ${offset}`);
    assertSame(F(y).subarray(0, n), want.map((u, i) => (i - 150) * (u >= 0.5 ? 2 : 0)), `dropout y at ${offset}`);
  }
});

test("dropoutAdd: dropout's mask, its y plus the residual; dropoutBackward: where(mask, g * scale, 0)", () => {
  // Above the threading grain, with offsets that start mid-block and x holding NaN and inf (dropped or not).
  const n = 70001, p = 0.3, scale = Math.fround(1 / (1 - p));
  const x = randArray(n + 1, 81), r = randArray(n + 2, 82), g = randArray(n + 3, 83);
  for (let i = 0; i < 40; i++) {
    x[37 * i + 1] = i % 2 ? NaN : -Infinity;
    g[41 * i + 3] = NaN;
  }
  const xab = f32(x), rab = f32(r), gab = f32(g);
  for (const offset of [0, 3, 2 ** 40 + 1]) {
    const y = f32(n), mask = native.alloc(n), sum = f32(n + 1), sumMask = native.alloc(n);
    native.dropout(n, 11, offset, p, xab, 1, y, 0, mask);
    native.dropoutAdd(n, 11, offset, p, xab, 1, rab, 2, sum, 1, sumMask);
    const keep = new Uint8Array(mask);
    assertSame(new Uint8Array(sumMask), keep, `dropoutAdd mask at ${offset}`);
    assertSame(F(sum).subarray(1), Array.from(F(y), (v, i) => Math.fround(v + r[i + 2])), `dropoutAdd y at ${offset}`);
    const dx = f32(n + 1);
    native.dropoutBackward(n, 1 / (1 - p), gab, 3, mask, dx, 1);
    assertSame(F(dx).subarray(1), Array.from(keep, (k, i) => (k ? Math.fround(g[i + 3] * scale) : 0)),
      `dropoutBackward at ${offset}`);
  }
  const small = f32(10), bytes = native.alloc(10);
  expectThrows(() => native.dropoutAdd(10, 1, 0, 0.5, small, 0, small, 1, small, 0, bytes), RangeError, /residual/);
  expectThrows(() => native.dropoutAdd(10, 1, 0, 0.5, small, 0, small, 0, small, 0, native.alloc(9)), RangeError, /mask/);
  expectThrows(() => native.dropoutBackward(10, 2, small, 0, native.alloc(9), small, 0), RangeError, /mask/);
  expectThrows(() => native.dropoutBackward(10, 2, small, 0, bytes, small, 1), RangeError, /dx/);
});

// ---------------------------------------------------------------- argument validation

test("bad arguments throw TypeError / RangeError naming the argument, never crash", () => {
  const small = f32(10), big = f32(100);
  expectThrows(() => native.binary(BinaryOp.Add, [20], small, 0, [1], big, 0, [1], big, 0, [1]), RangeError, /a:/);
  expectThrows(() => native.unary(UnaryOp.Exp, 0, [10], big, 95, [1], big, 0, [1]), RangeError, /a:/);
  expectThrows(() => native.unary(UnaryOp.Exp, 0, [10], big, 0, [1], {} as ArrayBuffer, 0, [1]), TypeError, /out/);
  expectThrows(() => native.unary(99 as UnaryOp, 0, [10], big, 0, [1], big, 0, [1]), RangeError, /op/);
  expectThrows(() => native.copy([4], big, 9 as DTypeCode, 0, [1], big, DTypeCode.F32, 0, [1]), RangeError, /srcDtype/);
  expectThrows(() => native.copy([30], small, DTypeCode.I64, 0, [1], big, DTypeCode.F32, 0, [1]), RangeError, /src/);
  expectThrows(() => native.copy([4, 4], big, DTypeCode.F32, 0, [1], big, DTypeCode.F32, 0, [4, 1]), RangeError,
    /rank/);
  expectThrows(() => native.copy([4], big, DTypeCode.F32, 0, [-1], big, DTypeCode.F32, 0, [1]), RangeError, /negative/);
  expectThrows(() => native.softmaxForward(10, 11, big, 0, big, 0, false), RangeError, /x:/);
  expectThrows(() => native.softmaxForward(10, 10, big, 0, big, 0, 1 as unknown as boolean), TypeError, /log/);
  expectThrows(() => native.reduce(ReduceOp.Sum, 2, 2 ** 40, 2 ** 40, big, 0, big, 0), RangeError, /overflow/);
  expectThrows(() => native.layerNormForward(10, 10, big, 0, small, 5, null, 0, 1e-5, big, 0, small, small),
    RangeError, /w:/);
  expectThrows(() => native.sumSquares([big, 3 as unknown as ArrayBuffer], [0, 0], [1, 1]), TypeError, /bufs/);
  expectThrows(() => native.sumSquares([big], [0, 0], [1]), RangeError, /offs/);
  expectThrows(() => native.adamw([small], [small], [small], [big], [20], [0], 1e-3, 0.9, 0.999, 1e-8, 1), RangeError,
    /params\[0\]/);
  expectThrows(() => native.uniform(5, -1, 0, 0, 1, big, 0), RangeError, /seed/);
  expectThrows(() => native.dropout(5, 1, 0, 1.5, big, 0, big, 0, big), RangeError, /p/);
  expectThrows(() => native.embeddingForward(1.5, big, 0, 1, 1, big, 0, big, 0), TypeError, /n/);
  // a released buffer is empty: any access is a RangeError
  const gone = f32(10);
  native.free(gone);
  expectThrows(() => native.fill([10], gone, DTypeCode.F32, 0, [1], 0), RangeError, /released/);
});
