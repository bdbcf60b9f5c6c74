// native.cuda's kernels against the CPU kernels they mirror (native/cuda/kernels/ vs native/cpu/), on random data
// with the awkward values included (NaN, infinities, subnormals, out-of-range casts, strided and broadcast views),
// plus their argument checks. Where the CUDA kernel rounds every step as the CPU does (casts, fills, comparisons,
// embedding, AdamW, uniform, dropout, layer norm's dw / db, scaleMany) the results must be identical; elsewhere
// within float32 round-off. Runs only where a GPU is usable; elsewhere every test skips with the reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { native, UnaryOp, type DTypeCode } from "../../src/backend/native.js";
import { rng } from "../helpers/rng.js";
import { launches, NO_LAUNCH_TRACE } from "../helpers/launch_trace.js";

const info = native.cudaInfo();
const SKIP: string | false = info.available ? false : `CUDA is not usable here: ${info.reason}`;
const NO_TRACE = SKIP || NO_LAUNCH_TRACE;

type AB = ArrayBuffer;
type Typed = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

/** Device handles made by one test, freed at its end. */
class Device {
  private handles: AB[] = [];
  alloc(nbytes: number): AB {
    const h = native.cuda.alloc(nbytes, true);
    this.handles.push(h);
    return h;
  }
  /** a device copy of a host array */
  put(a: Typed): AB {
    const h = this.alloc(a.byteLength);
    native.cuda.copyHostToDevice(a.buffer as AB, a.byteOffset, h, 0, a.byteLength);
    return h;
  }
  /** `nbytes` of a device buffer, as a host ArrayBuffer */
  get(h: AB, nbytes: number): AB {
    const out = new ArrayBuffer(nbytes);
    native.cuda.copyDeviceToHost(h, 0, out, 0, nbytes);
    return out;
  }
  f32(h: AB, n: number): Float32Array {
    return new Float32Array(this.get(h, n * 4));
  }
  free(): void {
    for (const h of this.handles) native.cuda.free(h);
    this.handles = [];
  }
}

/** The host arrays' buffers, as the CPU kernels take them. */
const bufs = (hs: Float32Array[]) => hs.map((h) => h.buffer as AB);

function withDevice(body: (d: Device) => void): () => void {
  return () => {
    const d = new Device();
    try {
      body(d);
    } finally {
      d.free();
    }
  };
}

/** host memory from native.alloc viewed as float32, filled by `f` */
function hostF32(n: number, f: (i: number) => number): Float32Array {
  const a = new Float32Array(native.alloc(n * 4, false), 0, n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return a;
}

function hostI64(values: number[]): BigInt64Array {
  const a = new BigInt64Array(native.alloc(values.length * 8, false), 0, values.length);
  values.forEach((v, i) => (a[i] = BigInt(v)));
  return a;
}

function randomF32(n: number, seed: number, scale = 4): Float32Array {
  const r = rng(seed);
  return hostF32(n, () => (r() * 2 - 1) * scale);
}

/** the same floats, bit for bit (NaN payloads included) */
function assertBitsEqual(actual: ArrayBufferView, expected: ArrayBufferView, label: string): void {
  const a = new Uint8Array(actual.buffer, actual.byteOffset, actual.byteLength);
  const e = new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength);
  assert.equal(a.length, e.length, `${label}: lengths differ`);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${label}: byte ${i} differs (${a[i]} vs ${e[i]})`);
  }
}

/** the same float values: -0 is not 0, and any NaN matches any NaN (the GPU's arithmetic returns the canonical NaN,
 * x86 the operand's or its "default NaN", so NaN bits are not compared) */
function assertSameFloats(actual: Float32Array, expected: Float32Array, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: lengths differ`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) assert.fail(`${label}[${i}]: ${a} vs ${e}`);
  }
}

/** |a - e| <= atol + rtol * |e| everywhere; NaN must meet NaN and infinities their equal */
function assertClose(actual: Float32Array, expected: Float32Array, rtol: number, atol: number, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: lengths differ`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e) || !Number.isFinite(e)) {
      if (!Object.is(a, e) && !(Number.isNaN(a) && Number.isNaN(e))) assert.fail(`${label}[${i}]: ${a} vs ${e}`);
      continue;
    }
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) assert.fail(`${label}[${i}]: ${a} vs ${e}`);
  }
}

const SPECIAL = [0, -0, 1, -1, 0.5, -2.5, 1e-40, -3e-39, 65504, 70000, -1e6, 3e9, -3e9, 1e20, NaN, Infinity, -Infinity];

// ---- copies and fills

const DTYPES = [
  { code: 0, size: 4 }, { code: 1, size: 2 }, { code: 2, size: 2 },
  { code: 3, size: 8 }, { code: 4, size: 4 }, { code: 5, size: 1 },
];

/** random bytes for a dtype: floats from SPECIAL and random values, integers small and large */
function randomBytes(code: number, n: number, seed: number): AB {
  const r = rng(seed);
  const size = DTYPES[code].size;
  const buf = native.alloc(n * size, false);
  if (code === 0) {
    const a = new Float32Array(buf);
    for (let i = 0; i < n; i++) a[i] = i < SPECIAL.length ? SPECIAL[i] : (r() * 2 - 1) * 10 ** Math.floor(r() * 12 - 4);
  } else if (code === 1 || code === 2) {
    const a = new Uint16Array(buf);
    for (let i = 0; i < n; i++) a[i] = Math.floor(r() * 65536);
  } else if (code === 3) {
    const a = new BigInt64Array(buf);
    for (let i = 0; i < n; i++) a[i] = BigInt(Math.floor((r() * 2 - 1) * 2 ** (r() < 0.5 ? 20 : 53)));
  } else if (code === 4) {
    const a = new Int32Array(buf);
    for (let i = 0; i < n; i++) a[i] = Math.floor((r() * 2 - 1) * 2 ** 31);
  } else {
    const a = new Uint8Array(buf);
    for (let i = 0; i < n; i++) a[i] = r() < 0.5 ? 0 : 1;
  }
  return buf;
}

test("copy: every dtype pair, contiguous, transposed and broadcast views, bit for bit", { skip: SKIP },
  withDevice((d) => {
    const shape = [5, 7, 3];
    const n = 5 * 7 * 3;
    const views: { src: number[]; dst: number[]; srcOff: number; dstOff: number }[] = [
      { src: [21, 3, 1], dst: [21, 3, 1], srcOff: 0, dstOff: 0 },
      { src: [1, 5, 35], dst: [21, 3, 1], srcOff: 2, dstOff: 1 },  // transposed source
      { src: [3, 0, 1], dst: [1, 15, 5], srcOff: 1, dstOff: 0 },   // broadcast source, permuted destination
    ];
    for (const s of DTYPES) {
      const src = randomBytes(s.code, n + 4, 100 + s.code);
      const srcDev = d.put(new Uint8Array(src));
      for (const t of DTYPES) {
        for (const v of views) {
          const dstBytes = (n + 2) * t.size;
          const cpu = native.alloc(dstBytes, true);
          const gpu = d.alloc(dstBytes);
          native.copy(shape, src, s.code, v.srcOff, v.src, cpu, t.code, v.dstOff, v.dst);
          native.cuda.copy(shape, srcDev, s.code, v.srcOff, v.src, gpu, t.code, v.dstOff, v.dst);
          assertBitsEqual(new Uint8Array(d.get(gpu, dstBytes)), new Uint8Array(cpu),
            `copy ${s.code} -> ${t.code} strides ${v.src} -> ${v.dst}`);
        }
      }
    }
  }));

// Contiguous views take the vector path when both addresses are aligned to four elements (offsets 0 and 4),
// one element at a time when not (offsets 1 and 3); 3 and 67 elements leave a tail past the last four. Strided
// views whose innermost dimension is contiguous in both, a multiple of four long, with every other stride a
// multiple of four, move in groups of four as well (a permutation, a broadcast); a row pitch of 10 or an
// innermost stride of 2 does not.
test("copy: contiguous and strided views, aligned or not, odd sizes, every dtype pair, bit for bit", { skip: SKIP },
  withDevice((d) => {
    const cases: { shape: number[]; src: number[]; dst: number[] }[] = [
      { shape: [3], src: [1], dst: [1] }, { shape: [4], src: [1], dst: [1] }, { shape: [67], src: [1], dst: [1] },
      { shape: [3, 1, 23], src: [23, 5, 1], dst: [23, 5, 1] },  // coalesces to one dimension
      { shape: [2, 3, 8], src: [8, 16, 1], dst: [24, 8, 1] },    // permuted source
      { shape: [2, 3, 8], src: [0, 8, 1], dst: [8, 16, 1] },     // broadcast source, permuted destination
      { shape: [3, 8], src: [10, 1], dst: [8, 1] },              // row pitch 10
      { shape: [3, 4], src: [8, 2], dst: [4, 1] },               // innermost stride 2
    ];
    const offsets = [[0, 0], [4, 4], [1, 0], [0, 3]];
    for (const s of DTYPES) {
      const src = randomBytes(s.code, 80, 200 + s.code);
      const srcDev = d.put(new Uint8Array(src));
      for (const t of DTYPES) {
        for (const { shape, src: srcStrides, dst: dstStrides } of cases) {
          for (const [srcOff, dstOff] of offsets) {
            const dstBytes = 80 * t.size;
            const cpu = native.alloc(dstBytes, true);
            const gpu = d.alloc(dstBytes);
            native.copy(shape, src, s.code, srcOff, srcStrides, cpu, t.code, dstOff, dstStrides);
            native.cuda.copy(shape, srcDev, s.code, srcOff, srcStrides, gpu, t.code, dstOff, dstStrides);
            assertBitsEqual(new Uint8Array(d.get(gpu, dstBytes)), new Uint8Array(cpu),
              `copy ${s.code} -> ${t.code} shape ${shape} strides ${srcStrides} -> ${dstStrides} offsets ${srcOff}, ` +
              `${dstOff}`);
          }
        }
      }
    }
  }));

test("fill: every dtype, strided, bit for bit", { skip: SKIP }, withDevice((d) => {
  for (const t of DTYPES) {
    for (const value of [0, -1.5, 3.3e9, 1e-40, NaN, -Infinity, 2 ** 40 + 3]) {
      const bytes = 40 * t.size;
      const cpu = native.alloc(bytes, true);
      const gpu = d.alloc(bytes);
      native.fill([4, 3], cpu, t.code, 1, [9, 2], value);
      native.cuda.fill([4, 3], gpu, t.code, 1, [9, 2], value);
      assertBitsEqual(new Uint8Array(d.get(gpu, bytes)), new Uint8Array(cpu), `fill dtype ${t.code} with ${value}`);
    }
  }
}));

// ---- elementwise

test("binary, binaryScalar, compare, where: strided and broadcast views", { skip: SKIP }, withDevice((d) => {
  const shape = [6, 5, 4];
  const n = 120;
  const a = randomF32(n + 8, 1);
  const b = randomF32(n + 8, 2);
  a.set([NaN, Infinity, -0, 0], 0);
  b.set([1, NaN, 0, -0], 0);
  const aDev = d.put(a), bDev = d.put(b);
  const aStr = [20, 4, 1], bStr = [1, 0, 6], oStr = [1, 6, 30];  // b broadcast along dim 1, out transposed
  for (let op = 0; op <= 6; op++) {
    const cpu = hostF32(n, () => 0);
    const gpu = d.alloc(n * 4);
    native.binary(op, shape, a.buffer as AB, 2, aStr, b.buffer as AB, 1, bStr, cpu.buffer as AB, 0, oStr);
    native.cuda.binary(op, shape, aDev, 2, aStr, bDev, 1, bStr, gpu, 0, oStr);
    if (op === 6) assertClose(d.f32(gpu, n), cpu, 4e-7, 0, `binary pow`);
    else assertSameFloats(d.f32(gpu, n), cpu, `binary op ${op}`);
    for (const reverse of [false, true]) {
      const cs = hostF32(n, () => 0);
      const gs = d.alloc(n * 4);
      native.binaryScalar(op, shape, a.buffer as AB, 0, aStr, 1.75, reverse, cs.buffer as AB, 0, oStr);
      native.cuda.binaryScalar(op, shape, aDev, 0, aStr, 1.75, reverse, gs, 0, oStr);
      if (op === 6) assertClose(d.f32(gs, n), cs, 4e-7, 0, `binaryScalar pow reverse ${reverse}`);
      else assertSameFloats(d.f32(gs, n), cs, `binaryScalar op ${op} reverse ${reverse}`);
    }
  }
  for (let op = 0; op <= 5; op++) {
    const cpu = new Uint8Array(native.alloc(n, true));
    const gpu = d.alloc(n);
    native.compare(op, shape, a.buffer as AB, 0, aStr, b.buffer as AB, 0, bStr, cpu.buffer as AB, 0, oStr);
    native.cuda.compare(op, shape, aDev, 0, aStr, bDev, 0, bStr, gpu, 0, oStr);
    assertBitsEqual(new Uint8Array(d.get(gpu, n)), cpu, `compare op ${op}`);
  }
  const r = rng(3);
  const cond = new Uint8Array(native.alloc(n, false));
  for (let i = 0; i < n; i++) cond[i] = r() < 0.5 ? 0 : 1;
  const condDev = d.put(cond);
  const cpu = hostF32(n, () => 0);
  const gpu = d.alloc(n * 4);
  native.where(shape, cond.buffer as AB, 0, [20, 4, 1], a.buffer as AB, 0, aStr, b.buffer as AB, 0, bStr,
    cpu.buffer as AB, 0, oStr);
  native.cuda.where(shape, condDev, 0, [20, 4, 1], aDev, 0, aStr, bDev, 0, bStr, gpu, 0, oStr);
  assertSameFloats(d.f32(gpu, n), cpu, "where");
}));

// Contiguous operands take the *_contiguous kernels: four elements per access when every address is aligned
// to four elements (offsets 0, 4 and 8), one at a time when any is not; 4099 and 3 elements leave a tail.
test("binary, binaryScalar, compare, where, unary: contiguous views, aligned or not, odd sizes", { skip: SKIP },
  withDevice((d) => {
    const a = randomF32(4120, 11);
    const b = randomF32(4120, 12);
    a.set([NaN, Infinity, -0, 0, 2, -Infinity], 0);
    b.set([1, NaN, 0, -0, 2, -Infinity], 0);
    const r = rng(13);
    const cond = new Uint8Array(native.alloc(4120, false));
    for (let i = 0; i < cond.length; i++) cond[i] = r() < 0.5 ? 0 : 1;
    const aDev = d.put(a), bDev = d.put(b), condDev = d.put(cond);
    const offsets = [{ a: 0, b: 0, o: 0 }, { a: 4, b: 8, o: 4 }, { a: 1, b: 0, o: 0 }, { a: 0, b: 0, o: 2 }];
    for (const shape of [[4099], [3], [2, 1, 7]]) {
      const n = shape.reduce((x, y) => x * y, 1);
      const strides = shape.map((_, k) => shape.slice(k + 1).reduce((x, y) => x * y, 1));
      for (const off of offsets) {
        const label = `shape ${shape} offsets ${off.a}, ${off.b}, ${off.o}`;
        const size = n + off.o;
        for (let op = 0; op <= 6; op++) {
          const cpu = hostF32(size, () => 0);
          const gpu = d.alloc(size * 4);
          native.binary(op, shape, a.buffer as AB, off.a, strides, b.buffer as AB, off.b, strides, cpu.buffer as AB,
            off.o, strides);
          native.cuda.binary(op, shape, aDev, off.a, strides, bDev, off.b, strides, gpu, off.o, strides);
          if (op === 6) assertClose(d.f32(gpu, size), cpu, 4e-7, 0, `binary pow ${label}`);
          else assertSameFloats(d.f32(gpu, size), cpu, `binary op ${op} ${label}`);
          const cs = hostF32(size, () => 0);
          const gs = d.alloc(size * 4);
          native.binaryScalar(op, shape, a.buffer as AB, off.a, strides, -1.25, op % 2 === 1, cs.buffer as AB,
            off.o, strides);
          native.cuda.binaryScalar(op, shape, aDev, off.a, strides, -1.25, op % 2 === 1, gs, off.o, strides);
          if (op === 6) assertClose(d.f32(gs, size), cs, 4e-7, 0, `binaryScalar pow ${label}`);
          else assertSameFloats(d.f32(gs, size), cs, `binaryScalar op ${op} ${label}`);
        }
        for (let op = 0; op <= 5; op++) {
          const cpu = new Uint8Array(native.alloc(size, true));
          const gpu = d.alloc(size);
          native.compare(op, shape, a.buffer as AB, off.a, strides, b.buffer as AB, off.b, strides,
            cpu.buffer as AB, off.o, strides);
          native.cuda.compare(op, shape, aDev, off.a, strides, bDev, off.b, strides, gpu, off.o, strides);
          assertBitsEqual(new Uint8Array(d.get(gpu, size)), cpu, `compare op ${op} ${label}`);
        }
        const wc = hostF32(size, () => 0);
        const wg = d.alloc(size * 4);
        native.where(shape, cond.buffer as AB, off.b, strides, a.buffer as AB, off.a, strides, b.buffer as AB, off.b,
          strides, wc.buffer as AB, off.o, strides);
        native.cuda.where(shape, condDev, off.b, strides, aDev, off.a, strides, bDev, off.b, strides, wg, off.o,
          strides);
        assertSameFloats(d.f32(wg, size), wc, `where ${label}`);
        for (const op of [0, 1, 4, 5, 15]) {
          const uc = hostF32(size, () => 0);
          const ug = d.alloc(size * 4);
          native.unary(op, 2, shape, a.buffer as AB, off.a, strides, uc.buffer as AB, off.o, strides);
          native.cuda.unary(op, 2, shape, aDev, off.a, strides, ug, off.o, strides);
          assertClose(d.f32(ug, size), uc, 2e-6, 1e-37, `unary op ${op} ${label}`);
        }
        for (const op of [0, 2, 4]) {
          const gc = hostF32(size, () => 0);
          const gg = d.alloc(size * 4);
          native.unaryGrad(op, n, a.buffer as AB, off.a, b.buffer as AB, off.b, gc.buffer as AB, off.o);
          native.cuda.unaryGrad(op, n, aDev, off.a, bDev, off.b, gg, off.o);
          assertClose(d.f32(gg, size), gc, 2e-6, 1e-30, `unaryGrad op ${op} ${label}`);
        }
      }
    }
    // out aliasing an input exactly, on the vector path
    const n = 4099;
    const cpu = hostF32(n, (i) => a[i]);
    const gpu = d.put(cpu);
    native.binary(2, [n], cpu.buffer as AB, 0, [1], b.buffer as AB, 0, [1], cpu.buffer as AB, 0, [1]);
    native.cuda.binary(2, [n], gpu, 0, [1], bDev, 0, [1], gpu, 0, [1]);
    assertSameFloats(d.f32(gpu, n), cpu, "binary in place");
  }));

test("unary and unaryGrad: every op, within round-off of the CPU", { skip: SKIP }, withDevice((d) => {
  const n = 4096;
  const r = rng(4);
  const x = hostF32(n, (i) => (i < SPECIAL.length ? SPECIAL[i] : (r() * 2 - 1) * (i % 2 ? 30 : 3)));
  const xDev = d.put(x);
  for (let op = 0; op <= 17; op++) {
    const alpha = op === 15 ? 1.5 : 0.1;
    const cpu = hostF32(n, () => 0);
    const gpu = d.alloc(n * 4);
    native.unary(op, alpha, [n], x.buffer as AB, 0, [1], cpu.buffer as AB, 0, [1]);
    native.cuda.unary(op, alpha, [n], xDev, 0, [1], gpu, 0, [1]);
    assertClose(d.f32(gpu, n), cpu, 2e-6, 1e-37, `unary op ${op}`);
  }
  const dy = randomF32(n, 5);
  const dyDev = d.put(dy);
  for (let op = 0; op <= 4; op++) {
    const cpu = hostF32(n, () => 0);
    const gpu = d.alloc(n * 4);
    native.unaryGrad(op, n, x.buffer as AB, 0, dy.buffer as AB, 0, cpu.buffer as AB, 0);
    native.cuda.unaryGrad(op, n, xDev, 0, dyDev, 0, gpu, 0);
    assertClose(d.f32(gpu, n), cpu, 2e-6, 1e-30, `unaryGrad op ${op}`);
  }
}));

test("biasGelu: h updated in place, y = gelu(h)", { skip: SKIP }, withDevice((d) => {
  const rows = 33, cols = 96;
  const h = randomF32(rows * cols, 6);
  const bias = randomF32(cols, 7);
  const hDev = d.put(h), biasDev = d.put(bias);
  const y = hostF32(rows * cols, () => 0);
  const yDev = d.alloc(rows * cols * 4);
  native.biasGelu(rows, cols, h.buffer as AB, 0, bias.buffer as AB, 0, y.buffer as AB, 0);
  native.cuda.biasGelu(rows, cols, hDev, 0, biasDev, 0, yDev, 0);
  assertSameFloats(d.f32(hDev, rows * cols), h, "biasGelu h");
  assertClose(d.f32(yDev, rows * cols), y, 2e-6, 1e-30, "biasGelu y");
}));

// Four columns per access when cols is a multiple of four and every address aligned to four elements; one at a
// time otherwise (odd cols, a misaligned h or bias).
test("biasGelu: vector and one-element paths", { skip: SKIP }, withDevice((d) => {
  for (const { rows, cols, hOff, biasOff, yOff } of [
    { rows: 7, cols: 12, hOff: 4, biasOff: 8, yOff: 0 }, { rows: 5, cols: 10, hOff: 0, biasOff: 0, yOff: 0 },
    { rows: 6, cols: 8, hOff: 1, biasOff: 0, yOff: 0 }, { rows: 6, cols: 8, hOff: 0, biasOff: 3, yOff: 0 },
    { rows: 3, cols: 4, hOff: 0, biasOff: 0, yOff: 2 },
    // more rows than the grid's y dimension holds: the rows beyond it are looped over
    { rows: 65537, cols: 2, hOff: 0, biasOff: 0, yOff: 0 },
  ]) {
    const label = `rows ${rows} cols ${cols} offsets ${hOff}, ${biasOff}, ${yOff}`;
    const h = randomF32(rows * cols + hOff, 14);
    const bias = randomF32(cols + biasOff, 15);
    const hDev = d.put(h), biasDev = d.put(bias);
    const y = hostF32(rows * cols + yOff, () => 0);
    const yDev = d.alloc((rows * cols + yOff) * 4);
    native.biasGelu(rows, cols, h.buffer as AB, hOff, bias.buffer as AB, biasOff, y.buffer as AB, yOff);
    native.cuda.biasGelu(rows, cols, hDev, hOff, biasDev, biasOff, yDev, yOff);
    assertSameFloats(d.f32(hDev, h.length), h, `biasGelu h ${label}`);
    assertClose(d.f32(yDev, y.length), y, 2e-6, 1e-30, `biasGelu y ${label}`);
  }
}));

// Under autocast the kernel also writes y's 16-bit copy, exactly the copy kernel's rounding of the float32 value.
test("biasGelu: the 16-bit copy of y, rounded as the casts round", { skip: SKIP }, withDevice((d) => {
  for (const cols of [12, 10]) {
    for (const [code, name] of [[2, "bfloat16"], [1, "float16"]] as [DTypeCode, string][]) {
      const rows = 9, n = rows * cols, label = `cols ${cols} ${name}`;
      const hDev = d.put(randomF32(n, 21)), biasDev = d.put(randomF32(cols, 22)), yDev = d.alloc(n * 4);
      const yLowp = d.alloc(n * 2);
      native.cuda.biasGelu(rows, cols, hDev, 0, biasDev, 0, yDev, 0, code, yLowp);
      const rounded = d.alloc(n * 2);
      native.cuda.copy([n], yDev, 0, 0, [1], rounded, code, 0, [1]);
      assertBitsEqual(new Uint16Array(d.get(yLowp, n * 2)), new Uint16Array(d.get(rounded, n * 2)), `${label}: y's copy`);
    }
  }
  const n = 8, any = d.alloc(n * 4);
  assert.throws(() => native.cuda.biasGelu(2, 4, any, 0, any, 0, any, 0, 0 as DTypeCode, d.alloc(n * 2)), RangeError);
  assert.throws(() => native.cuda.biasGelu(2, 4, any, 0, any, 0, any, 0, 2 as DTypeCode, d.alloc(n * 2 - 2)), RangeError);
}));

// linear_gelu under autocast: GELU of the 16-bit pre-activation its GEMM wrote, looked up in a table by the value's
// bits: the bits unary GELU gives for the same values, over every 16-bit pattern, rounded as the casts round.
test("geluLowp: every 16-bit value's GELU as unary GELU computes it, rounded to 16 bits", { skip: SKIP }, withDevice((d) => {
  // every pattern 16 times over (and one more): 2^20 values take bfloat16's hot part of the table from shared memory
  const n = 65536, large = 16 * n;
  const bits = new Uint16Array(native.alloc((large + 1) * 2, false), 0, large + 1).map((_, i) => i % n);
  const preDev = d.put(new Uint8Array(bits.buffer));
  const hotTables = native.cuda.hotTables();
  try {
    for (const [code, name] of [[2, "bfloat16"], [1, "float16"]] as [DTypeCode, string][]) {
      // every pattern four at a time (8-byte aligned), and one at a time; the large ones also from the global table
      for (const [offset, count, hot] of [[0, n, true], [16001, 999, true], [0, large, true], [1, large, true], [0, large, false]] as const) {
        native.cuda.hotTables(hot);
        const yDev = d.alloc(count * 2);
        native.cuda.geluLowp(count, preDev, offset, code, yDev, 0);
        const wide = d.alloc(count * 4), expected = d.alloc(count * 4), rounded = d.alloc(count * 2);
        native.cuda.copy([count], preDev, code, offset, [1], wide, 0, 0, [1]);
        native.cuda.unary(UnaryOp.GeluErf, 0, [count], wide, 0, [1], expected, 0, [1]);
        native.cuda.copy([count], expected, 0, 0, [1], rounded, code, 0, [1]);
        assertBitsEqual(new Uint16Array(d.get(yDev, count * 2)), new Uint16Array(d.get(rounded, count * 2)),
          `${name} offset ${offset} count ${count}${hot ? "" : " (global table)"}: y`);
      }
    }
  } finally {
    native.cuda.hotTables(hotTables);
  }
  const any = d.alloc(64);
  assert.throws(() => native.cuda.geluLowp(8, any, 0, 0 as DTypeCode, any, 0), /must be float16 or bfloat16/);
  assert.throws(() => native.cuda.geluLowp(40, any, 0, 2 as DTypeCode, any, 0), RangeError);
}));

// ---- reductions

test("reduce: sum, max, min over rows, strided axes and long rows; NaN propagates", { skip: SKIP },
  withDevice((d) => {
    // From [1, 70, 96] on: axes of 8+ columns in tiles of columns x row groups (rows not a multiple of the groups,
    // columns not of the tile, few rows and wide tiles, bias-gradient shapes in small, long axes split across
    // blocks and finished by ft_reduce_finish).
    const cases = [[7, 300, 1], [3, 50, 17], [1, 200_000, 1], [2, 5000, 3], [1, 1, 1], [4, 9, 1000], [1, 70, 96],
      [1, 64, 400], [3, 33, 8], [2, 5, 41], [1, 1, 300], [5, 2, 9], [1, 3000, 40], [2, 2500, 33], [1, 4100, 8]];
    for (const [outer, n, inner] of cases) {
      const total = outer * n * inner;
      const src = randomF32(total, outer * 1000 + n);
      if (total > 10) src[total - 3] = NaN;
      const srcDev = d.put(src);
      for (let op = 0; op <= 2; op++) {
        const cpu = hostF32(outer * inner, () => 0);
        const gpu = d.alloc(outer * inner * 4);
        native.reduce(op, outer, n, inner, src.buffer as AB, 0, cpu.buffer as AB, 0);
        native.cuda.reduce(op, outer, n, inner, srcDev, 0, gpu, 0);
        assertClose(d.f32(gpu, outer * inner), cpu, op === 0 ? 1.2e-7 : 0, 0, `reduce op ${op} [${outer},${n},${inner}]`);
      }
      const cpu = new BigInt64Array(native.alloc(outer * inner * 8, true));
      const gpu = d.alloc(outer * inner * 8);
      native.argmax(outer, n, inner, src.buffer as AB, 0, cpu.buffer as AB, 0);
      native.cuda.argmax(outer, n, inner, srcDev, 0, gpu, 0);
      assert.deepEqual(new BigInt64Array(d.get(gpu, outer * inner * 8)), cpu, `argmax [${outer},${n},${inner}]`);
    }
    // Ties: the first maximum wins.
    const ties = hostF32(1000, (i) => (i % 7 === 3 ? 5 : 1));
    const tiesDev = d.put(ties);
    const gpu = d.alloc(8);
    native.cuda.argmax(1, 1000, 1, tiesDev, 0, gpu, 0);
    assert.equal(new BigInt64Array(d.get(gpu, 8))[0], 3n);
    // Empty sums are 0, empty max is an error.
    const zero = d.alloc(8);
    native.cuda.reduce(0, 2, 0, 1, zero, 0, zero, 0);
    assert.throws(() => native.cuda.reduce(1, 2, 0, 1, zero, 0, zero, 0), RangeError);
  }));

test("sumSquares and scaleMany over several tensors", { skip: SKIP }, withDevice((d) => {
  const sizes = [10, 0, 70_000, 4096, 1];
  const hosts = sizes.map((n, i) => randomF32(n + 3, 20 + i));
  const devs = hosts.map((h) => d.put(h));
  const offs = [3, 0, 1, 0, 2];
  const cpu = native.sumSquares(hosts.map((h) => h.buffer as AB), offs, sizes);
  const gpu = native.cuda.sumSquares(devs, offs, sizes);
  assert.ok(Math.abs(gpu - cpu) <= 1e-12 * cpu, `sumSquares ${gpu} vs ${cpu}`);
  native.scaleMany(hosts.map((h) => h.buffer as AB), offs, sizes, 0.37);
  native.cuda.scaleMany(devs, offs, sizes, 0.37);
  hosts.forEach((h, i) => assertSameFloats(d.f32(devs[i], h.length), h, `scaleMany tensor ${i}`));
  assert.equal(native.cuda.sumSquares([], [], []), 0);
}));

test("sumSquaresChunks' partials stand in for their tensors in clipGradNorm: the same norm and factor bits, views of a summed range included", { skip: SKIP }, withDevice((d) => {
  // a packed gradient of three parts (two of 2 chunks, the last one longer and ragged) and a lone ragged tensor
  const packed = d.put(randomF32(3 * 8192 + 100, 31));
  const lone = d.put(randomF32(70_000, 32));
  const bufs = [packed, packed, packed, lone];
  const offs = [0, 8192, 16384, 0];
  const sizes = [8192, 8192, 8292, 70_000];
  const packedSums = d.alloc(7 * 8);
  const loneSums = d.alloc(19 * 8);
  native.cuda.sumSquaresChunks(packed, 0, 3 * 8192 + 100, packedSums, 0);
  native.cuda.sumSquaresChunks(lone, 0, 70_000, loneSums, 1);
  const clip = (partials?: (AB | null)[], partialOffs?: number[]) => {
    const out = d.alloc(8);
    native.cuda.clipGradNorm(bufs, offs, sizes, 1.0, out, 0, out, 1, partials, partialOffs);
    return [...d.f32(out, 2)];
  };
  const read = clip();
  assert.deepEqual(clip([packedSums, packedSums, packedSums, loneSums], [0, 2, 4, 1]), read);
  assert.deepEqual(clip([null, packedSums, null, null], [0, 2, 0, 0]), read);
  // the sums are what they stand for: wrong ones change the norm
  assert.notDeepEqual(clip([packedSums, packedSums, packedSums, loneSums], [0, 0, 4, 1]), read);
  assert.throws(() => clip([packedSums, packedSums, packedSums, loneSums], [0, 2, 5, 1]), RangeError);
  assert.throws(() => clip([packedSums], [0]), /partials/);
  assert.throws(() => native.cuda.sumSquaresChunks(lone, 0, 70_000, loneSums, 2), RangeError);
  assert.throws(() => clip([packedSums, packedSums, packedSums, loneSums], [0, 2, 4, 2]), RangeError);
}));

test("clipGradNorm reads only the chunks of a gradient with a flagged row (rowFlags): the norm's bits where unflagged rows are zeros", { skip: SKIP }, withDevice((d) => {
  // a [300, 768] table gradient with values in a few rows (chunks of 4096 values span 5 or 6 rows) and a dense one
  const rows = 300, cols = 768;
  const table = new Float32Array(rows * cols);
  const touched = [0, 7, 150, 151, 299];
  const values = randomF32(rows * cols, 40);
  for (const r of touched) table.set(values.subarray(r * cols, (r + 1) * cols), r * cols);
  const dense = randomF32(5000, 41);
  const bufs = [d.put(table), d.put(dense)];
  const flagsOf = (rs: number[]) => d.put(Uint8Array.from({ length: rows }, (_, r) => Number(rs.includes(r))));
  const clip = (flags?: (AB | null)[]) => {
    const out = d.alloc(8);
    native.cuda.clipGradNorm(bufs, [0, 0], [rows * cols, 5000], 1.0, out, 0, out, 1, undefined, undefined, flags, [cols, 0]);
    return [...d.f32(out, 2)];
  };
  const read = clip();
  assert.deepEqual(clip([flagsOf(touched), null]), read);
  assert.deepEqual(clip([flagsOf([...touched, 40, 41, 200]), null]), read, "more rows flagged than hold values");
  // the unflagged chunks are not read: leaving row 150's flag off drops its squares
  assert.notDeepEqual(clip([flagsOf([0, 7, 299]), null]), read);
  assert.throws(() => clip([null, flagsOf(touched)]), /rowFlags\)\[1\]: the tensor has no row length/);
  assert.throws(() => clip([d.alloc(rows - 1), null]), /rowFlags/);
  // embedding's backward flags the rows it gives a gradient: repeated ids, the padding row left out
  const V = 60, D = 40, ids = [3, 9, 3, 0, 59, 9, 12];
  const flags = d.alloc(V);
  native.cuda.embeddingBackward(ids.length, d.put(BigInt64Array.from(ids.map(BigInt))), 0, V, D, d.put(randomF32(ids.length * D, 42)), 0,
    d.alloc(V * D * 4), 12, false, flags);
  const expected = Array.from({ length: V }, (_, r) => Number([3, 9, 0, 59].includes(r)));
  assert.deepEqual([...new Uint8Array(d.get(flags, V))], expected);
}));

// ---- softmax family

test("softmax, log-softmax and their backward", { skip: SKIP }, withDevice((d) => {
  for (const [rows, cols] of [[17, 5], [8, 1000], [3, 30522]]) {
    const x = randomF32(rows * cols, rows + cols, 8);
    const xDev = d.put(x);
    for (const log of [false, true]) {
      const y = hostF32(rows * cols, () => 0);
      const yDev = d.alloc(rows * cols * 4);
      native.softmaxForward(rows, cols, x.buffer as AB, 0, y.buffer as AB, 0, log);
      native.cuda.softmaxForward(rows, cols, xDev, 0, yDev, 0, log);
      assertClose(d.f32(yDev, rows * cols), y, 2e-5, 1e-7, `softmax log=${log} [${rows},${cols}]`);
      const dy = randomF32(rows * cols, 9);
      const dyDev = d.put(dy);
      const yIn = d.put(y);  // the CPU's y, so only the backward is compared
      const dx = hostF32(rows * cols, () => 0);
      const dxDev = d.alloc(rows * cols * 4);
      native.softmaxBackward(rows, cols, y.buffer as AB, 0, dy.buffer as AB, 0, dx.buffer as AB, 0, log);
      native.cuda.softmaxBackward(rows, cols, yIn, 0, dyDev, 0, dxDev, 0, log);
      assertClose(d.f32(dxDev, rows * cols), dx, 1e-4, 1e-5, `softmaxBackward log=${log} [${rows},${cols}]`);
    }
  }
}));

test("maskedSoftmaxForward: scale, [B, T] mask, fully masked rows uniform", { skip: SKIP }, withDevice((d) => {
  const B = 3, H = 2, S = 5, T = 7;
  const scores = randomF32(B * H * S * T, 10, 6);
  const mask = hostF32(B * T, (i) => (Math.floor(i / T) === 2 ? -Infinity : i % 3 === 0 ? -1e9 : 0));
  const sDev = d.put(scores), mDev = d.put(mask);
  for (const withMask of [true, false]) {
    const y = hostF32(B * H * S * T, () => 0);
    const yDev = d.alloc(B * H * S * T * 4);
    native.maskedSoftmaxForward(B, H, S, T, scores.buffer as AB, 0, 0.125, withMask ? (mask.buffer as AB) : null, 0,
      y.buffer as AB, 0);
    native.cuda.maskedSoftmaxForward(B, H, S, T, sDev, 0, 0.125, withMask ? mDev : null, 0, yDev, 0);
    const got = d.f32(yDev, B * H * S * T);
    assertClose(got, y, 2e-6, 1e-7, `maskedSoftmax mask=${withMask}`);
    assert.ok(got.every((v) => Number.isFinite(v)), "no NaN from fully masked rows");
  }
}));

// ---- layer norm

test("layerNormForward / Backward, with and without affine parameters; dw, db identical", { skip: SKIP },
  withDevice((d) => {
    for (const [rows, cols] of [[70, 768], [5, 33]]) {
      const x = randomF32(rows * cols, 11, 3);
      const w = randomF32(cols, 12);
      const b = randomF32(cols, 13);
      const xDev = d.put(x), wDev = d.put(w), bDev = d.put(b);
      for (const affine of [true, false]) {
        const y = hostF32(rows * cols, () => 0), mean = hostF32(rows, () => 0), rstd = hostF32(rows, () => 0);
        const yDev = d.alloc(rows * cols * 4), meanDev = d.alloc(rows * 4), rstdDev = d.alloc(rows * 4);
        native.layerNormForward(rows, cols, x.buffer as AB, 0, affine ? (w.buffer as AB) : null, 0,
          affine ? (b.buffer as AB) : null, 0, 1e-12, y.buffer as AB, 0, mean.buffer as AB, rstd.buffer as AB);
        native.cuda.layerNormForward(rows, cols, xDev, 0, affine ? wDev : null, 0, affine ? bDev : null, 0, 1e-12,
          yDev, 0, meanDev, rstdDev);
        assertClose(d.f32(meanDev, rows), mean, 1e-6, 1e-7, "layerNorm mean");
        assertClose(d.f32(rstdDev, rows), rstd, 1e-6, 0, "layerNorm rstd");
        assertClose(d.f32(yDev, rows * cols), y, 1e-5, 1e-6, "layerNorm y");

        const dy = randomF32(rows * cols, 14);
        const dyDev = d.put(dy), meanIn = d.put(mean), rstdIn = d.put(rstd);
        const dx = hostF32(rows * cols, () => 0), dw = hostF32(cols, () => 0), db = hostF32(cols, () => 0);
        const dxDev = d.alloc(rows * cols * 4), dwDev = d.alloc(cols * 4), dbDev = d.alloc(cols * 4);
        native.layerNormBackward(rows, cols, x.buffer as AB, 0, dy.buffer as AB, 0, affine ? (w.buffer as AB) : null, 0,
          mean.buffer as AB, rstd.buffer as AB, dx.buffer as AB, 0, dw.buffer as AB, db.buffer as AB);
        native.cuda.layerNormBackward(rows, cols, xDev, 0, dyDev, 0, affine ? wDev : null, 0, meanIn, rstdIn, dxDev, 0,
          dwDev, dbDev);
        assertClose(d.f32(dxDev, rows * cols), dx, 1e-4, 1e-5, "layerNorm dx");
        assertSameFloats(d.f32(dwDev, cols), dw, "layerNorm dw");
        assertSameFloats(d.f32(dbDev, cols), db, "layerNorm db");
      }
    }
  }));

// Rows of at most 1024 values take one warp each, or in the forward where rows are fewer than 16 warps an SM (2112
// on the emulator's 132 SMs, an H100's) a team of four warps each when the row has values for all four; 16 bytes
// at a time only where cols % 4 == 0 and every operand (x, w, b, y; x, dy, w, dx) starts 16-byte aligned: offsets 1
// and 2 take the scalar loads, 4 the vector ones; 132 ends in a partial group of 4 lanes, 130 is not a multiple of
// 4. Longer rows take a block each. w or b alone, and dx written over dy.
test("layerNorm one warp or a team of warps per row (vector and scalar loads, offset views), long rows, dx aliasing dy", { skip: SKIP },
  withDevice((d) => {
    const cases: [number, number, number][] = [[70, 768, 0], [70, 768, 1], [9, 768, 4], [5, 33, 0], [7, 1, 0],
      [3, 1, 3], [9, 1024, 0], [2, 1024, 2], [1, 50, 0], [6, 132, 0], [6, 132, 1], [5, 130, 0], [4, 1025, 0],
      [3, 3000, 1], [2112, 392, 0], [2111, 392, 1]];
    /** a device copy of `a` starting `off` floats into its buffer */
    const putAt = (a: Float32Array, off: number): AB => {
      const h = d.alloc((off + a.length) * 4);
      native.cuda.copyHostToDevice(a.buffer as AB, a.byteOffset, h, off * 4, a.byteLength);
      return h;
    };
    const f32At = (h: AB, off: number, n: number): Float32Array => d.f32(h, off + n).subarray(off);
    for (const [rows, cols, off] of cases) {
      const n = rows * cols, label = `[${rows},${cols}] offset ${off}`;
      const x = randomF32(n, rows + cols, 3), w = randomF32(cols, cols + 1), b = randomF32(cols, cols + 2);
      const dy = randomF32(n, cols + 3);
      const xDev = putAt(x, off), wDev = putAt(w, off), bDev = putAt(b, off);
      for (const [withW, withB] of [[true, true], [true, false], [false, true], [false, false]]) {
        const flags = `${label} w=${withW} b=${withB}`;
        const y = hostF32(n, () => 0), mean = hostF32(rows, () => 0), rstd = hostF32(rows, () => 0);
        const yDev = d.alloc((off + n) * 4), meanDev = d.alloc(rows * 4), rstdDev = d.alloc(rows * 4);
        native.layerNormForward(rows, cols, x.buffer as AB, 0, withW ? (w.buffer as AB) : null, 0,
          withB ? (b.buffer as AB) : null, 0, 1e-5, y.buffer as AB, 0, mean.buffer as AB, rstd.buffer as AB);
        native.cuda.layerNormForward(rows, cols, xDev, off, withW ? wDev : null, off, withB ? bDev : null, off, 1e-5,
          yDev, off, meanDev, rstdDev);
        assertClose(d.f32(meanDev, rows), mean, 1e-6, 1e-7, `layerNorm mean ${flags}`);
        assertClose(d.f32(rstdDev, rows), rstd, 1e-6, 0, `layerNorm rstd ${flags}`);
        assertClose(f32At(yDev, off, n), y, 1e-5, 1e-6, `layerNorm y ${flags}`);
        if (withB) continue;  // the backward has no b

        const dx = hostF32(n, () => 0);
        native.layerNormBackward(rows, cols, x.buffer as AB, 0, dy.buffer as AB, 0, withW ? (w.buffer as AB) : null, 0,
          mean.buffer as AB, rstd.buffer as AB, dx.buffer as AB, 0, null, null);
        const meanIn = d.put(mean), rstdIn = d.put(rstd);
        const dxDev = d.alloc((off + n) * 4), dyDev = putAt(dy, off);
        native.cuda.layerNormBackward(rows, cols, xDev, off, dyDev, off, withW ? wDev : null, off, meanIn, rstdIn,
          dxDev, off, null, null);
        assertClose(f32At(dxDev, off, n), dx, 1e-4, 1e-5, `layerNorm dx ${flags}`);
        native.cuda.layerNormBackward(rows, cols, xDev, off, dyDev, off, withW ? wDev : null, off, meanIn, rstdIn,
          dyDev, off, null, null);
        assertClose(f32At(dyDev, off, n), dx, 1e-4, 1e-5, `layerNorm dx over dy ${flags}`);
      }
    }
  }));

// dw / db: 32-row blocks per round of row groups (one group, 16, and more blocks than groups: several rounds), a
// last block shorter than 32 rows, columns not a multiple of the tile, rows too long for a warp (dw / db in a
// launch of their own), dw or db alone; then dx written over dy and over x, where dw / db are summed first.
test("layerNormBackward dw, db identical to the CPU across row-block counts; either alone; dx over dy or x", { skip: SKIP },
  withDevice((d) => {
    for (const [rows, cols] of [[512, 24], [31, 9], [1, 100], [1100, 17], [64, 768], [40, 1500]]) {
      const x = randomF32(rows * cols, rows + 3, 3);
      const dy = randomF32(rows * cols, cols + 5);
      const mean = hostF32(rows, (i) => (i % 5) * 0.25 - 0.5), rstd = hostF32(rows, (i) => 0.5 + (i % 7) * 0.125);
      const xDev = d.put(x), dyDev = d.put(dy), meanDev = d.put(mean), rstdDev = d.put(rstd);
      const dx = hostF32(rows * cols, () => 0), dw = hostF32(cols, () => 0), db = hostF32(cols, () => 0);
      native.layerNormBackward(rows, cols, x.buffer as AB, 0, dy.buffer as AB, 0, null, 0, mean.buffer as AB,
        rstd.buffer as AB, dx.buffer as AB, 0, dw.buffer as AB, db.buffer as AB);
      for (const [withDw, withDb] of [[true, true], [true, false], [false, true]]) {
        const dxDev = d.alloc(rows * cols * 4), dwDev = d.alloc(cols * 4), dbDev = d.alloc(cols * 4);
        native.cuda.layerNormBackward(rows, cols, xDev, 0, dyDev, 0, null, 0, meanDev, rstdDev, dxDev, 0,
          withDw ? dwDev : null, withDb ? dbDev : null);
        if (withDw) assertSameFloats(d.f32(dwDev, cols), dw, `layerNorm dw [${rows},${cols}]`);
        if (withDb) assertSameFloats(d.f32(dbDev, cols), db, `layerNorm db [${rows},${cols}]`);
        assertClose(d.f32(dxDev, rows * cols), dx, 1e-4, 1e-5, `layerNorm dx [${rows},${cols}]`);
      }
      for (const over of ["dy", "x"]) {
        const xOwn = d.put(x), dyOwn = d.put(dy), dwDev = d.alloc(cols * 4), dbDev = d.alloc(cols * 4);
        const dxDev = over === "dy" ? dyOwn : xOwn;
        native.cuda.layerNormBackward(rows, cols, xOwn, 0, dyOwn, 0, null, 0, meanDev, rstdDev, dxDev, 0, dwDev, dbDev);
        assertSameFloats(d.f32(dwDev, cols), dw, `layerNorm dw [${rows},${cols}], dx over ${over}`);
        assertSameFloats(d.f32(dbDev, cols), db, `layerNorm db [${rows},${cols}], dx over ${over}`);
        assertClose(d.f32(dxDev, rows * cols), dx, 1e-4, 1e-5, `layerNorm dx [${rows},${cols}] over ${over}`);
      }
    }
  }));

// dropout_add_layer_norm's backward also writes dropout's gradient for the linear layer before it, with that
// layer's 16-bit operand and bias gradient: row blocks in one cluster, in several (440 rows: 110 blocks, 7
// clusters), more rows than the launch has warps (5000), rows not a multiple of 4 values (scalar loads), none.
test("layerNormBackward writes dropout's gradient, its 16-bit copy and its column sums in one launch", { skip: SKIP },
  withDevice((d) => {
    const BF16 = 2 as DTypeCode;
    for (const [rows, cols] of [[440, 768], [5000, 64], [3, 33], [70, 130], [0, 16]]) {
      const n = rows * cols, label = `[${rows},${cols}]`;
      const r = rng(rows + cols);
      const put = (a: Float32Array | Uint8Array) => (a.length > 0 ? d.put(a) : d.alloc(4));
      const [xDev, dyDev, wDev] = [randomF32(n, rows + 1, 3), randomF32(n, cols + 2), randomF32(cols, 5)].map(put);
      const meanDev = put(hostF32(rows, (i) => (i % 5) * 0.25 - 0.5)), rstdDev = put(hostF32(rows, (i) => 0.5 + (i % 7) * 0.125));
      const maskDev = put(Uint8Array.from({ length: n }, () => (r() < 0.9 ? 1 : 0)));
      const out = () => d.alloc(Math.max(n, 1) * 4);
      const [dx, dxd, dx2, dxd2] = [out(), out(), out(), out()];
      const args = [rows, cols, xDev, 0, dyDev, 0, wDev, 0, meanDev, rstdDev] as const;
      assert.equal(native.cuda.layerNormBackward(...args, dx, 0, null, null, maskDev, 1 / 0.9, dxd), false, label);
      const lowp = d.alloc(Math.max(n, 1) * 2), sums = [d.alloc(cols * 4), d.alloc(cols * 4)];
      for (const s of sums) {
        assert.equal(native.cuda.layerNormBackward(...args, dx2, 0, null, null, maskDev, 1 / 0.9, dxd2, BF16, lowp, s), true, label);
      }
      assertBitsEqual(new Uint32Array(d.get(dx2, n * 4)), new Uint32Array(d.get(dx, n * 4)), `${label}: dx`);
      const dropped = d.f32(dxd, n);
      assertBitsEqual(new Uint32Array(d.get(dxd2, n * 4)), new Uint32Array(dropped.buffer), `${label}: dropout's gradient`);
      const rounded = d.alloc(Math.max(n, 1) * 2);
      if (n > 0) native.cuda.copy([n], dxd, 0, 0, [1], rounded, BF16, 0, [1]);
      assertBitsEqual(new Uint16Array(d.get(lowp, n * 2)), new Uint16Array(d.get(rounded, n * 2)), `${label}: its bfloat16 copy`);
      const expected = new Float32Array(cols);
      for (let c = 0; c < cols; c++) {
        let sum = 0;
        for (let i = 0; i < rows; i++) sum += dropped[i * cols + c]!;
        expected[c] = sum;
      }
      // both calls: every launch leaves its tickets at 0 for the next
      for (const s of sums) assertSameFloats(d.f32(s, cols), expected, `${label}: its column sums`);
    }
    const any = d.alloc(64 * 4), mask = d.alloc(64), sums = d.alloc(8 * 4);
    const head = [8, 8, any, 0, any, 0, null, 0, any, any, any, 0, null, null] as const;
    assert.throws(() => native.cuda.layerNormBackward(...head, null, 1, null, BF16, d.alloc(128), sums), TypeError);
    assert.throws(() => native.cuda.layerNormBackward(...head, mask, 1, any, BF16, null as unknown as AB, sums), TypeError);
    assert.throws(() => native.cuda.layerNormBackward(...head, mask, 1, any, BF16, d.alloc(126), sums), RangeError);
    assert.throws(() => native.cuda.layerNormBackward(...head, mask, 1, any, 0 as DTypeCode, d.alloc(128), sums), RangeError);
  }));

test("layerNormBackward sums dw / db in the launch that writes dx, and apart first where dx overwrites dy", { skip: NO_TRACE }, () => {
  const trace = (dxOver: string) => launches(`
    const { native } = await import(dist + "/backend/native.js");
    const [rows, cols] = [64, 768];
    const buf = () => native.cuda.alloc(rows * cols * 4, true);
    const [x, dy, dx, stats] = [buf(), buf(), buf(), native.cuda.alloc(rows * 4, true)];
    const [dw, db] = [native.cuda.alloc(cols * 4, true), native.cuda.alloc(cols * 4, true)];
    console.error("ftemu: begin");
    native.cuda.layerNormBackward(rows, cols, x, 0, dy, 0, null, 0, stats, stats, ${dxOver}, 0, dw, db);
    native.cuda.synchronize();`);
  // 64 rows of 768: a team of warps a row (the dw / db launch apart has no rows)
  assert.deepEqual(trace("dx"), ["ft_layer_norm_backward_team"]);
  assert.deepEqual(trace("dy"), ["ft_layer_norm_backward_warp", "ft_layer_norm_backward_team"]);
});

// ---- embedding and cross-entropy

test("embedding forward and backward (repeated ids, padding) match the CPU bit for bit", { skip: SKIP },
  withDevice((d) => {
    const V = 50, D = 40, n = 300;
    const r = rng(15);
    const ids = hostI64(Array.from({ length: n }, () => Math.floor(r() * 6) * 7 + 1));  // few ids, many repeats
    const table = randomF32(V * D, 16);
    const idsDev = d.put(ids), tableDev = d.put(table);
    const out = hostF32(n * D, () => 0);
    const outDev = d.alloc(n * D * 4);
    native.embeddingForward(n, ids.buffer as AB, 0, V, D, table.buffer as AB, 0, out.buffer as AB, 0);
    native.cuda.embeddingForward(n, idsDev, 0, V, D, tableDev, 0, outDev, 0);
    assertSameFloats(d.f32(outDev, n * D), out, "embeddingForward");
    const dy = randomF32(n * D, 17);
    const dyDev = d.put(dy);
    for (const padding of [-1, 8]) {
      const dtable = randomF32(V * D, 18);
      const dtableDev = d.put(dtable);
      native.embeddingBackward(n, ids.buffer as AB, 0, V, D, dy.buffer as AB, 0, dtable.buffer as AB, padding);
      native.cuda.embeddingBackward(n, idsDev, 0, V, D, dyDev, 0, dtableDev, padding);
      assertSameFloats(d.f32(dtableDev, V * D), dtable, `embeddingBackward padding ${padding}`);
    }
  }));

// The backward groups tokens by id, then adds each id's rows, staged 256 at a time, in batches of 32 rows and
// then 8: runs of 1, 8, 32, 33, 77, 257 and 520 tokens (every token on one id, as token types are), D above one
// block of columns and not a multiple of 32, ids and dy read at offsets.
test("embedding backward: long runs, one id throughout, wide rows, offsets match the CPU bit for bit",
  { skip: SKIP }, withDevice((d) => {
    const r = rng(19);
    const runs = (lengths: number[]) => lengths.flatMap((len, k) => Array.from({ length: len }, () => k * 3 + 1));
    const shuffled = (ids: number[]) =>
      ids.map((id) => ({ id, key: r() })).sort((a, b) => a.key - b.key).map((e) => e.id);
    const cases: { label: string; ids: number[]; V: number; D: number; idsOff: number; dyOff: number }[] = [
      { label: "one id", ids: Array.from({ length: 77 }, () => 2), V: 3, D: 37, idsOff: 0, dyOff: 0 },
      { label: "runs in order", ids: runs([1, 8, 32, 33, 77, 2]), V: 20, D: 5, idsOff: 3, dyOff: 1 },
      { label: "runs shuffled", ids: shuffled(runs([1, 8, 32, 33, 40, 9])), V: 18, D: 33, idsOff: 1, dyOff: 7 },
      { label: "wide rows", ids: [4, 0, 4, 9, 9, 4, 1], V: 10, D: 300, idsOff: 2, dyOff: 3 },
      { label: "one token", ids: [5], V: 6, D: 1, idsOff: 0, dyOff: 0 },
      { label: "runs past a stage", ids: shuffled(runs([257, 3, 520])), V: 9, D: 3, idsOff: 5, dyOff: 2 },
    ];
    for (const { label, ids: idList, V, D, idsOff, dyOff } of cases) {
      const n = idList.length;
      const ids = hostI64([...Array.from({ length: idsOff }, () => 0), ...idList]);
      const dy = randomF32(dyOff + n * D, n + D);
      const idsDev = d.put(ids), dyDev = d.put(dy);
      for (const padding of [-1, idList[0], idList[n - 1]]) {
        const dtable = randomF32(V * D, V + padding);
        const dtableDev = d.put(dtable);
        native.embeddingBackward(n, ids.buffer as AB, idsOff, V, D, dy.buffer as AB, dyOff, dtable.buffer as AB,
          padding);
        native.cuda.embeddingBackward(n, idsDev, idsOff, V, D, dyDev, dyOff, dtableDev, padding);
        assertSameFloats(d.f32(dtableDev, V * D), dtable, `embeddingBackward ${label} padding ${padding}`);
      }
    }
  }));

test("crossEntropyForward / Backward with ignore_index", { skip: SKIP }, withDevice((d) => {
  for (const [N, C] of [[37, 5], [6, 30522]]) {
    const logits = randomF32(N * C, N + C, 10);
    const r = rng(19);
    const targets = hostI64(Array.from({ length: N }, (_, i) => (i % 5 === 4 ? -100 : Math.floor(r() * C))));
    const lDev = d.put(logits), tDev = d.put(targets);
    const loss = hostF32(N, () => 0), lse = hostF32(N, () => 0);
    const lossDev = d.alloc(N * 4), lseDev = d.alloc(N * 4);
    native.crossEntropyForward(N, C, logits.buffer as AB, 0, targets.buffer as AB, 0, -100, loss.buffer as AB,
      lse.buffer as AB);
    native.cuda.crossEntropyForward(N, C, lDev, 0, tDev, 0, -100, lossDev, lseDev);
    assertClose(d.f32(lseDev, N), lse, 1e-6, 1e-6, "crossEntropy lse");
    assertClose(d.f32(lossDev, N), loss, 1e-5, 1e-5, "crossEntropy loss");
    const g = randomF32(N, 20);
    const gDev = d.put(g), lseIn = d.put(lse);
    const dl = hostF32(N * C, () => 0);
    const dlDev = d.alloc(N * C * 4);
    native.crossEntropyBackward(N, C, logits.buffer as AB, 0, targets.buffer as AB, 0, -100, lse.buffer as AB,
      g.buffer as AB, dl.buffer as AB);
    native.cuda.crossEntropyBackward(N, C, lDev, 0, tDev, 0, -100, lseIn, gDev, dlDev);
    // Near the target the subtraction g * p - g cancels: absolute error of a few ulp of |g|.
    assertClose(d.f32(dlDev, N * C), dl, 2e-6, 4e-6, "crossEntropy dlogits");
  }
}));

// ---- optimizer

test("adamw over several tensors matches the CPU bit for bit", { skip: SKIP }, withDevice((d) => {
  const sizes = [5000, 1, 0, 9000];
  const wds = [0.01, 0, 0.5, 0.1];
  const make = (seed: number, scale: number) => sizes.map((n, i) => randomF32(n, seed + i, scale));
  const p = make(30, 1), g = make(40, 0.1), m = make(50, 0.01), v = make(60, 0.001);
  for (const a of v) a.forEach((x, i) => (a[i] = Math.abs(x)));
  const dev = (hs: Float32Array[]) => hs.map((h) => d.put(h));
  const pd = dev(p), gd = dev(g), md = dev(m), vd = dev(v);
  for (const step of [1, 2, 1000]) {
    native.adamw(bufs(p), bufs(g), bufs(m), bufs(v), sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step);
    native.cuda.adamw(pd, gd, md, vd, sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step);
  }
  sizes.forEach((n, i) => {
    assertSameFloats(d.f32(pd[i], n), p[i], `adamw param ${i}`);
    assertSameFloats(d.f32(md[i], n), m[i], `adamw exp_avg ${i}`);
    assertSameFloats(d.f32(vd[i], n), v[i], `adamw exp_avg_sq ${i}`);
  });
}));

test("adamw reads gradients at an offset (gradOffs), aligned for 16-byte loads or not, as the CPU does", { skip: SKIP }, withDevice((d) => {
  // 4103 and 6 elements leave a tail after the four-element loads; offsets 1 and 2 are not 16-byte aligned
  const sizes = [4103, 6, 8192, 4101];
  const offs = [1, 2, 4, 0];
  const wds = [0.01, 0, 0.1, 0.2];
  const p = sizes.map((n, i) => randomF32(n, 70 + i, 1));
  const g = sizes.map((n, i) => randomF32(n + offs[i]!, 80 + i, 0.1));
  const m = sizes.map((n, i) => randomF32(n, 90 + i, 0.01));
  const v = sizes.map((n, i) => randomF32(n, 100 + i, 0.001).map(Math.abs));
  const dev = (hs: Float32Array[]) => hs.map((h) => d.put(h));
  const pd = dev(p), gd = dev(g), md = dev(m), vd = dev(v);
  for (const step of [1, 7]) {
    native.adamw(bufs(p), bufs(g), bufs(m), bufs(v), sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step, undefined, undefined, offs);
    native.cuda.adamw(pd, gd, md, vd, sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step, undefined, undefined, offs);
  }
  sizes.forEach((n, i) => {
    assertSameFloats(d.f32(pd[i], n), p[i], `adamw param ${i}`);
    assertSameFloats(d.f32(md[i], n), m[i], `adamw exp_avg ${i}`);
    assertSameFloats(d.f32(vd[i], n), v[i], `adamw exp_avg_sq ${i}`);
  });
  // the CPU against its own update of copies at offset 0: offsets move the reads, nothing else
  const p2 = sizes.map((n, i) => randomF32(n, 70 + i, 1)), m2 = sizes.map((n, i) => randomF32(n, 90 + i, 0.01));
  const v2 = sizes.map((n, i) => randomF32(n, 100 + i, 0.001).map(Math.abs));
  const g2 = g.map((a, i) => a.slice(offs[i]!));
  for (const step of [1, 7]) native.adamw(bufs(p2), bufs(g2), bufs(m2), bufs(v2), sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step);
  sizes.forEach((_, i) => assertSameFloats(p[i]!, p2[i]!, `the CPU's param ${i}`));
}));

/**
 * AdamW's inputs for tensors of `sizes` (random, seeded from `seed`): the host arrays, two device copies of the
 * parameters and moments (one for adamw, one for adamwDevice), and the gradients on the device.
 */
function adamwInputs(d: Device, sizes: number[], seed: number) {
  const make = (from: number, scale: number) => sizes.map((n, i) => randomF32(n, from + i, scale));
  const p = make(seed, 1), g = make(seed + 10, 0.1), m = make(seed + 20, 0.01), v = make(seed + 30, 0.001);
  for (const a of v) a.forEach((x, i) => (a[i] = Math.abs(x)));
  const dev = (hs: Float32Array[]) => hs.map((h) => d.put(h));
  return { p, g, m, v, eager: [dev(p), dev(m), dev(v)], device: [dev(p), dev(m), dev(v)], gd: dev(g) };
}

test("adamw and adamwDevice write the parameters' 16-bit copies as the CPU's adamw does", { skip: SKIP }, withDevice((d) => {
  const sizes = [5000, 1, 0, 9000];
  const wds = [0.01, 0, 0.5, 0.1];
  const dtypes: DTypeCode[] = [2, 1, 2, 1];  // bfloat16, float16
  const { p, g, m, v, eager, device, gd } = adamwInputs(d, sizes, 30);
  const cpuCopies = sizes.map((n, i) => (i === 1 ? null : native.alloc(n * 2, true)));
  const devCopies = () => sizes.map((n, i) => (i === 1 ? null : d.alloc(n * 2)));
  const eagerCopies = devCopies(), deviceCopies = devCopies();
  const scalars = d.alloc((sizes.length + 3) * 4);
  for (const step of [1, 2]) {
    native.adamw(bufs(p), bufs(g), bufs(m), bufs(v), sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step, cpuCopies, dtypes);
    native.cuda.adamw(eager[0], gd, eager[1], eager[2], sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step, eagerCopies, dtypes);
    native.cuda.adamwScalars(scalars, 1e-3, 0.9, 0.999, step, wds);
    native.cuda.adamwDevice(device[0], gd, device[1], device[2], sizes, scalars, 0.9, 0.999, 1e-8, undefined, undefined, deviceCopies, dtypes);
  }
  sizes.forEach((n, i) => {
    for (const [name, [pd], copies] of [["adamw", eager, eagerCopies], ["adamwDevice", device, deviceCopies]] as const) {
      assertSameFloats(d.f32(pd[i], n), p[i], `${name} param ${i}`);
      const copy = copies[i], want = cpuCopies[i];
      if (copy !== null && want !== null) assertBitsEqual(new Uint16Array(d.get(copy, n * 2)), new Uint16Array(want), `${name} copy ${i}`);
    }
    const want = cpuCopies[i];
    if (want === null) return;
    const cast = new Uint16Array(native.alloc(n * 2));
    native.copy([n], p[i].buffer as AB, 0, 0, [1], cast.buffer as AB, dtypes[i], 0, [1]);
    assertBitsEqual(new Uint16Array(want), cast, `CPU copy ${i} is the cast of the parameter`);
  });
  const a = d.alloc(16);
  const run = (copies: (AB | null)[], codes: DTypeCode[]) => () =>
    native.cuda.adamwDevice([a], [a], [a], [a], [4], scalars, 0.9, 0.999, 1e-8, undefined, undefined, copies, codes);
  assert.throws(run([d.alloc(6)], [2]), /copies\[0\]/);
  assert.throws(run([d.alloc(8)], [0]), RangeError);
  assert.throws(run([native.alloc(8)], [2]), TypeError);
  assert.throws(() => native.cuda.adamw([a], [a], [a], [a], [4], [0], 1e-3, 0.9, 0.999, 1e-8, 1, [d.alloc(8), null], [2, 2]), RangeError);
}));

test("adamw and adamwDevice write 16-bit copies at element offsets (copyOffs: rows of one packed copy) as the CPU does", { skip: SKIP }, withDevice((d) => {
  // 4103 and 6 elements put the later rows off the 8-byte boundary of the four-element stores
  const sizes = [4103, 6, 8192];
  const offs = [0, 4103, 4109];
  const total = 4103 + 6 + 8192;
  const wds = [0.01, 0, 0.1];
  const dtypes: DTypeCode[] = [2, 2, 2];
  const { p, g, m, v, eager, device, gd } = adamwInputs(d, sizes, 130);
  const cpuPacked = native.alloc(total * 2, true), eagerPacked = d.alloc(total * 2), devicePacked = d.alloc(total * 2);
  const scalars = d.alloc((sizes.length + 3) * 4);
  const three = <T>(x: T) => [x, x, x];
  for (const step of [1, 2]) {
    native.adamw(bufs(p), bufs(g), bufs(m), bufs(v), sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step, three(cpuPacked), dtypes, undefined, offs);
    native.cuda.adamw(eager[0], gd, eager[1], eager[2], sizes, wds, 1e-3, 0.9, 0.999, 1e-8, step, three(eagerPacked), dtypes, undefined, offs);
    native.cuda.adamwScalars(scalars, 1e-3, 0.9, 0.999, step, wds);
    native.cuda.adamwDevice(device[0], gd, device[1], device[2], sizes, scalars, 0.9, 0.999, 1e-8, undefined, undefined, three(devicePacked), dtypes, undefined, offs);
  }
  const cast = new Uint16Array(total);
  sizes.forEach((n, i) => native.copy([n], p[i]!.buffer as AB, 0, 0, [1], cast.buffer as AB, 2, offs[i]!, [1]));
  assertBitsEqual(new Uint16Array(cpuPacked), cast, "the CPU's packed copy is the cast of the parameters");
  assertBitsEqual(new Uint16Array(d.get(eagerPacked, total * 2)), cast, "adamw's packed copy");
  assertBitsEqual(new Uint16Array(d.get(devicePacked, total * 2)), cast, "adamwDevice's packed copy");
  const past = [0, 4103, 4110];
  assert.throws(() => native.cuda.adamw(eager[0], gd, eager[1], eager[2], sizes, wds, 1e-3, 0.9, 0.999, 1e-8, 3, three(eagerPacked), dtypes, undefined, past), /copies\[2\]/);
  assert.throws(() => native.adamw(bufs(p), bufs(g), bufs(m), bufs(v), sizes, wds, 1e-3, 0.9, 0.999, 1e-8, 3, three(cpuPacked), dtypes, undefined, past), /copies\[2\]/);
  assert.throws(() => native.cuda.adamw(eager[0], gd, eager[1], eager[2], sizes, wds, 1e-3, 0.9, 0.999, 1e-8, 3, three(eagerPacked), dtypes, undefined, [0, 1]), /copyOffs/);
}));

test("adamwDevice's deferred rows and adamwCatchUp give the dense update's bits", { skip: SKIP }, withDevice((d) => {
  // a [rows, 40] table whose rows straddle the 4096-value chunks (rows 102 to 204 start in the second), a dense
  // tensor beside it, and a 16-bit copy of the table that the deferred rows keep current too
  const rows = 205, cols = 40, sizes = [rows * cols, 300];
  const wds = [0.1, 0.1];
  const dtypes: DTypeCode[] = [2, 2];
  const { g, dense, deferred, copies } = (() => {
    const inputs = adamwInputs(d, sizes, 230);
    const copy = () => [d.alloc(sizes[0]! * 2), null];
    return { g: inputs.g, dense: inputs.eager, deferred: inputs.device, copies: [copy(), copy()] };
  })();
  const last = d.put(new Int32Array(rows));
  // 8 steps, then the last step run: step 9 writes over step 1's entry, which no row needs by then
  const ring = d.alloc((3 * 8 + 1) * 4);
  const [denseScalars, deferredScalars] = [d.alloc(5 * 4), d.alloc(5 * 4)];
  const rowsOf = (step: number) => (r: number) => (r * 7 + step) % 5 === 0 || r === 204;
  for (let step = 1; step <= 9; step++) {
    // this step's gradient: nonzero in a fifth of the rows (and the last), a NaN in row 3 at step 4
    const table = new Float32Array(g[0]!);
    for (let r = 0; r < rows; r++) if (!rowsOf(step)(r)) table.fill(step % 2 ? 0 : -0, r * cols, (r + 1) * cols);
    if (step === 4) table[3 * cols + 5] = NaN;
    const grads = [d.put(table), d.put(g[1]!)];
    for (const deferring of [false, true]) {
      const [scalars, [pd, md, vd], cs] = deferring ? [deferredScalars, deferred, copies[1]!] : [denseScalars, dense, copies[0]!];
      native.cuda.adamwScalars(scalars, 1e-3, 0.9, 0.999, step, wds);
      native.cuda.adamwDevice(pd!, grads, md!, vd!, sizes, scalars, 0.9, 0.999, 1e-8, undefined, undefined, cs, dtypes, undefined,
        undefined, deferring ? [cols, 0] : undefined, deferring ? [last, null] : undefined, deferring ? ring : undefined);
    }
    // rows with a nonzero gradient are current; the others wait
    const [pDense, pDeferred] = [d.f32(dense[0]![0]!, sizes[0]!), d.f32(deferred[0]![0]!, sizes[0]!)];
    for (let r = 0; r < rows; r++) {
      if (!(rowsOf(step)(r) || (step === 4 && r === 3))) continue;
      assertSameFloats(pDeferred.subarray(r * cols, (r + 1) * cols), pDense.subarray(r * cols, (r + 1) * cols), `step ${step} row ${r}`);
    }
    assertSameFloats(d.f32(deferred[0]![1]!, 300), d.f32(dense[0]![1]!, 300), `step ${step} dense tensor`);
    if (step === 5) {
      const lastSteps = new Int32Array(d.get(last, rows * 4));
      assert.equal(lastSteps[204], 5);
      assert.equal(lastSteps[3], 4, "the NaN gradient counts as nonzero");
    }
  }
  assert.equal(new Int32Array(d.get(ring, (3 * 8 + 1) * 4))[3 * 8], 9, "the ring's last step");
  // a lookup's rows (repeated, and one outside the table, which is skipped) are brought to step 9 first
  const ids = [7, 7, 150, 205, 150, 0];
  native.cuda.adamwCatchUpRows(d.put(BigInt64Array.from(ids.map(BigInt))), 0, ids.length, deferred[0]![0]!, deferred[1]![0]!,
    deferred[2]![0]!, cols, last, ring, 0.9, 0.999, 1e-8, copies[1]![0]!, 2);
  const [pDense, pDeferred] = [d.f32(dense[0]![0]!, sizes[0]!), d.f32(deferred[0]![0]!, sizes[0]!)];
  for (const r of [7, 150, 0]) {
    assertSameFloats(pDeferred.subarray(r * cols, (r + 1) * cols), pDense.subarray(r * cols, (r + 1) * cols), `looked-up row ${r}`);
  }
  const catchUp = () => native.cuda.adamwCatchUp(deferred[0]!, deferred[1]!, deferred[2]!, sizes, [cols, 0], [last, null], ring, 9,
    0.9, 0.999, 1e-8, copies[1]!, dtypes);
  catchUp();
  catchUp();  // rows already at the target are left alone
  for (const [k, name] of [[0, "param"], [1, "exp_avg"], [2, "exp_avg_sq"]] as const) {
    assertSameFloats(d.f32(deferred[k]![0]!, sizes[0]!), d.f32(dense[k]![0]!, sizes[0]!), `caught-up ${name}`);
  }
  assertBitsEqual(new Uint16Array(d.get(copies[1]![0]!, sizes[0]! * 2)), new Uint16Array(d.get(copies[0]![0]!, sizes[0]! * 2)), "the 16-bit copy");
  assert.deepEqual([...new Int32Array(d.get(last, rows * 4))], new Array(rows).fill(9));
  const run = (lengths: number[], lasts: (AB | null)[]) => () =>
    native.cuda.adamwDevice(deferred[0]!, deferred[0]!, deferred[1]!, deferred[2]!, sizes, deferredScalars, 0.9, 0.999, 1e-8,
      undefined, undefined, undefined, undefined, undefined, undefined, lengths, lasts, ring);
  assert.throws(run([16, 0], [last, null]), /\(rowLengths\)\[0\] = 16 must be at least 32/);
  assert.throws(run([48, 0], [last, null]), /divide the tensor's 8200 elements/);
  assert.throws(run([cols, 0], [null, null]), /lastSteps.*must be a CUDA device buffer/);
  assert.throws(run([cols, 0], [d.alloc(8), null]), /lastSteps\[0\]/);
}));

test("adamwDevice's deferred rows with the gradient's row flags: the flagged rows take the step, no gradient read to find them; the scan's bits", { skip: SKIP }, withDevice((d) => {
  const rows = 205, cols = 40, sizes = [rows * cols];
  const wds = [0.1];
  const scanned = adamwInputs(d, sizes, 260).device, flagged = adamwInputs(d, sizes, 260).device;
  const [scanLast, flagLast] = [d.put(new Int32Array(rows)), d.put(new Int32Array(rows))];
  const [scanRing, flagRing] = [d.alloc((3 * 8 + 1) * 4), d.alloc((3 * 8 + 1) * 4)];
  const scalars = d.alloc(4 * 4);
  for (let step = 1; step <= 6; step++) {
    // nonzero rows, and the flags: those rows and a few all-zero ones (a flagged row may hold zeros)
    const nonzero = (r: number) => (r * 3 + step) % 7 === 0;
    const table = randomF32(rows * cols, 270 + step, 0.1);
    for (let r = 0; r < rows; r++) if (!nonzero(r)) table.fill(0, r * cols, (r + 1) * cols);
    const flags = Uint8Array.from({ length: rows }, (_, r) => Number(nonzero(r) || r % 50 === 1));
    const grads = [d.put(table)];
    native.cuda.adamwScalars(scalars, 1e-3, 0.9, 0.999, step, wds);
    native.cuda.adamwDevice(scanned[0]!, grads, scanned[1]!, scanned[2]!, sizes, scalars, 0.9, 0.999, 1e-8, undefined, undefined,
      undefined, undefined, undefined, undefined, [cols], [scanLast], scanRing);
    native.cuda.adamwScalars(scalars, 1e-3, 0.9, 0.999, step, wds);
    native.cuda.adamwDevice(flagged[0]!, grads, flagged[1]!, flagged[2]!, sizes, scalars, 0.9, 0.999, 1e-8, undefined, undefined,
      undefined, undefined, undefined, undefined, [cols], [flagLast], flagRing, [d.put(flags)]);
    const lastSteps = new Int32Array(d.get(flagLast, rows * 4));
    for (let r = 0; r < rows; r++) if (flags[r]) assert.equal(lastSteps[r], step, `step ${step}: flagged row ${r} took the step`);
  }
  for (const [state, last, ring] of [[scanned, scanLast, scanRing], [flagged, flagLast, flagRing]] as const) {
    native.cuda.adamwCatchUp(state[0]!, state[1]!, state[2]!, sizes, [cols], [last], ring, 6, 0.9, 0.999, 1e-8);
  }
  for (const [k, name] of [[0, "param"], [1, "exp_avg"], [2, "exp_avg_sq"]] as const) {
    assertSameFloats(d.f32(flagged[k]![0]!, sizes[0]!), d.f32(scanned[k]![0]!, sizes[0]!), name);
  }
  // flags need deferred rows (a row length), and a byte a row
  const run = (lengths: number[] | undefined, flags: (AB | null)[]) => () =>
    native.cuda.adamwDevice(flagged[0]!, flagged[0]!, flagged[1]!, flagged[2]!, sizes, scalars, 0.9, 0.999, 1e-8, undefined, undefined,
      undefined, undefined, undefined, undefined, lengths, lengths ? [flagLast] : undefined, lengths ? flagRing : undefined, flags);
  assert.throws(run([0], [d.alloc(rows)]), /rowFlags\)\[0\]: the tensor has no row length/);
  assert.throws(run([cols], [d.alloc(rows - 1)]), /rowFlags/);
}));

// ---- random numbers

test("uniform and dropout give the CPU's numbers for the same (seed, offset); normal within an ulp", { skip: SKIP },
  withDevice((d) => {
    for (const [n, seed, offset] of [[1001, 42, 0], [37, 7, 3], [5000, 2 ** 40 + 5, 2 ** 33 + 2]]) {
      const cpu = hostF32(n + 1, () => 0);
      const gpu = d.alloc((n + 1) * 4);
      native.uniform(n, seed, offset, -2, 3, cpu.buffer as AB, 1);
      native.cuda.uniform(n, seed, offset, -2, 3, gpu, 1);
      assertSameFloats(d.f32(gpu, n + 1), cpu, `uniform n=${n} offset=${offset}`);

      const ncpu = hostF32(n, () => 0);
      const ngpu = d.alloc(n * 4);
      native.normal(n, seed, offset, 0.5, 2, ncpu.buffer as AB, 0);
      native.cuda.normal(n, seed, offset, 0.5, 2, ngpu, 0);
      assertClose(d.f32(ngpu, n), ncpu, 1e-6, 1e-6, `normal n=${n}`);

      for (const p of [0, 0.1, 0.5, 1]) {
        const x = randomF32(n, 70);
        x[0] = NaN;
        const xDev = d.put(x);
        const y = hostF32(n, () => 0), mask = new Uint8Array(native.alloc(n, true));
        const yDev = d.alloc(n * 4), maskDev = d.alloc(n);
        native.dropout(n, seed, offset, p, x.buffer as AB, 0, y.buffer as AB, 0, mask.buffer as AB);
        native.cuda.dropout(n, seed, offset, p, xDev, 0, yDev, 0, maskDev);
        assertBitsEqual(new Uint8Array(d.get(maskDev, n)), mask, `dropout mask p=${p}`);
        assertSameFloats(d.f32(yDev, n), y, `dropout y p=${p}`);
      }
    }
  }));

// Whole blocks of four take one 16-byte access when x, y and mask allow it (counter offset a multiple of four,
// x and y aligned); the counter offset 4 with x and y at element 4 does, x or y at element 1 or a counter
// offset of 1 (the blocks then start one element into the mask) does not.
test("dropout: vector and one-element paths keep the CPU's bits", { skip: SKIP }, withDevice((d) => {
  const n = 1003;
  for (const { offset, xOff, yOff } of [
    { offset: 4, xOff: 4, yOff: 4 }, { offset: 0, xOff: 1, yOff: 0 }, { offset: 8, xOff: 0, yOff: 1 },
    { offset: 1, xOff: 3, yOff: 3 },
  ]) {
    const x = randomF32(n + xOff, 71);
    x[xOff + 5] = Infinity;
    const xDev = d.put(x);
    const y = hostF32(n + yOff, () => 0), mask = new Uint8Array(native.alloc(n, true));
    const yDev = d.alloc((n + yOff) * 4), maskDev = d.alloc(n);
    native.dropout(n, 9, offset, 0.3, x.buffer as AB, xOff, y.buffer as AB, yOff, mask.buffer as AB);
    native.cuda.dropout(n, 9, offset, 0.3, xDev, xOff, yDev, yOff, maskDev);
    const label = `offset ${offset} x at ${xOff} y at ${yOff}`;
    assertBitsEqual(new Uint8Array(d.get(maskDev, n)), mask, `dropout mask ${label}`);
    assertSameFloats(d.f32(yDev, n + yOff), y, `dropout y ${label}`);
  }
}));

// dropoutAdd's blocks of four go vector only when the residual is aligned too; dropoutBackward's when g and dx
// are (n = 1003 leaves a tail of three for its one-element loop).
test("dropoutAdd and dropoutBackward: vector and one-element paths keep the CPU's bits", { skip: SKIP },
  withDevice((d) => {
    const n = 1003;
    for (const { offset, xOff, rOff, yOff } of [
      { offset: 4, xOff: 4, rOff: 0, yOff: 4 }, { offset: 4, xOff: 4, rOff: 1, yOff: 4 },
      { offset: 1, xOff: 3, rOff: 3, yOff: 3 },
    ]) {
      const x = randomF32(n + xOff, 72), r = randomF32(n + rOff, 73);
      x[xOff + 5] = Infinity;
      r[rOff + 9] = NaN;
      const y = hostF32(n + yOff, () => 0), mask = new Uint8Array(native.alloc(n, true));
      const yDev = d.alloc((n + yOff) * 4), maskDev = d.alloc(n);
      native.dropoutAdd(n, 9, offset, 0.3, x.buffer as AB, xOff, r.buffer as AB, rOff, y.buffer as AB, yOff,
        mask.buffer as AB);
      native.cuda.dropoutAdd(n, 9, offset, 0.3, d.put(x), xOff, d.put(r), rOff, yDev, yOff, maskDev);
      const label = `offset ${offset} x at ${xOff} residual at ${rOff} y at ${yOff}`;
      assertBitsEqual(new Uint8Array(d.get(maskDev, n)), mask, `dropoutAdd mask ${label}`);
      assertSameFloats(d.f32(yDev, n + yOff), y, `dropoutAdd y ${label}`);
    }
    const mask = new Uint8Array(native.alloc(n, true));
    mask.forEach((_, i) => (mask[i] = i % 3 ? 1 : 0));
    const maskDev = d.put(mask);
    for (const { gOff, dxOff } of [{ gOff: 0, dxOff: 0 }, { gOff: 1, dxOff: 0 }, { gOff: 4, dxOff: 3 }]) {
      const g = randomF32(n + gOff, 74);
      g[gOff + 1] = NaN;
      g[gOff + 3] = NaN;
      const dx = hostF32(n + dxOff, () => 0), dxDev = d.alloc((n + dxOff) * 4);
      native.dropoutBackward(n, 1 / 0.7, g.buffer as AB, gOff, mask.buffer as AB, dx.buffer as AB, dxOff);
      native.cuda.dropoutBackward(n, 1 / 0.7, d.put(g), gOff, maskDev, dxDev, dxOff);
      assertSameFloats(d.f32(dxDev, n + dxOff), dx, `dropoutBackward g at ${gOff} dx at ${dxOff}`);
    }
    const a = d.alloc(16);
    assert.throws(() => native.cuda.dropoutAdd(4, 1, 0, 0.5, a, 0, a, 1, a, 0, a), RangeError);
    assert.throws(() => native.cuda.dropoutBackward(4, 2, a, 0, d.alloc(3), a, 0), RangeError);
    assert.throws(() => native.cuda.dropoutBackward(4, 2, a, 1, a, a, 0), RangeError);
  }));

// ---- argument checks

test("bad ids and targets throw the CPU's RangeError before any kernel reads with them", { skip: SKIP },
  withDevice((d) => {
    const table = d.put(randomF32(4 * 3, 80));
    const out = d.alloc(5 * 3 * 4);
    const ids = d.put(hostI64([0, 1, 3, 4, 2]));
    assert.throws(() => native.cuda.embeddingForward(5, ids, 0, 4, 3, table, 0, out, 0),
      (e: Error) => e instanceof RangeError && /id 4 at position 3/.test(e.message));
    const negative = d.put(hostI64([2, -1]));
    assert.throws(() => native.cuda.embeddingBackward(2, negative, 0, 4, 3, out, 0, table, -1),
      (e: Error) => e instanceof RangeError && /id -1 at position 1/.test(e.message));
    const logits = d.put(randomF32(3 * 4, 81));
    const targets = d.put(hostI64([1, -100, 4]));
    const loss = d.alloc(12), lse = d.alloc(12);
    assert.throws(() => native.cuda.crossEntropyForward(3, 4, logits, 0, targets, 0, -100, loss, lse),
      (e: Error) => e instanceof RangeError && /target 4 at row 2/.test(e.message));
    // A valid call still works afterwards.
    native.cuda.crossEntropyForward(3, 4, logits, 0, d.put(hostI64([1, -100, 3])), 0, -100, loss, lse);
    assert.ok(d.f32(lse, 3).every((v) => Number.isFinite(v)));
  }));

test("bounds, host buffers and freed handles are refused", { skip: SKIP }, withDevice((d) => {
  const a = d.alloc(16), out = d.alloc(12);
  assert.throws(() => native.cuda.binary(0, [4], a, 0, [1], a, 0, [1], out, 0, [1]), RangeError);
  assert.throws(() => native.cuda.unary(0, 0, [2, 2], a, 1, [2, 1], a, 0, [2, 1]), RangeError);
  assert.throws(() => native.cuda.softmaxForward(2, 2, a, 1, a, 0, false), RangeError);
  assert.throws(() => native.cuda.copy([4], a, 0, 0, [1], out, 0, 0, [1]), RangeError);
  assert.throws(() => native.cuda.copy([2], a, 9 as DTypeCode, 0, [1], out, 0, 0, [1]), RangeError);
  const host = native.alloc(16);
  assert.throws(() => native.cuda.fill([4], host, 0, 0, [1], 1), TypeError);
  assert.throws(() => native.cuda.sumSquares([a, host], [0, 0], [4, 4]), TypeError);
  assert.throws(() => native.cuda.sumSquares([a], [0], [5]), RangeError);
  assert.throws(() => native.cuda.adamw([a], [a], [a], [a], [4], [0], 1e-3, 0.9, 0.999, 1e-8, 0), RangeError);
  assert.throws(() => native.cuda.dropout(4, 1, 0, 1.5, a, 0, a, 0, a), RangeError);
  const gone = native.cuda.alloc(16);
  native.cuda.free(gone);
  assert.throws(() => native.cuda.fill([4], gone, 0, 0, [1], 1), /released/);
}));
