// Elementwise ops with broadcasting. float32 runs on the native kernels; half types are computed in float32 and
// rounded back; integer and bool tensors (labels, masks, ids: small) take a plain JS path.
import { Tensor, type TensorOrScalar } from "../tensor/tensor.js";
import { DType, bool, float32, int64, promoteTypes } from "../tensor/dtype.js";
import { BinaryOp, CompareOp, UnaryOp, UnaryGradOp, native } from "../backend/native.js";
import { attachLowpCopy } from "../amp/lowp_copy.js";
import { emptyLowpCopy } from "./lowp_output.js";
import { backendFor, checkSameDevice } from "../backend/kernels.js";
import { broadcastShapes, broadcastStrides, contiguousStrides } from "../tensor/shape.js";
import { convertContiguous, fromFlat, full } from "../tensor/creation.js";
import { record } from "./record.js";
import { readFlat } from "./convert.js";
import { sumToShape } from "./reduce.js";
import { f32, release, restoreDtype } from "./float32_operands.js";

/** `t` as float32 (itself, or a float32 copy that the caller must release). */
function asF32(t: Tensor): Tensor {
  return t.dtype === float32 ? t : convertContiguous(t, float32);
}

function releaseTemp(t: Tensor, original: Tensor): void {
  if (t !== original) t.dispose();
}

function scalarTensor(value: number, like: Tensor): Tensor {
  return full([], value, { dtype: like.dtype.is_floating_point ? like.dtype : Number.isInteger(value) ? like.dtype === bool ? int64 : like.dtype : float32, device: like.device });
}

const JS_BINARY: Record<BinaryOp, (x: number, y: number) => number> = {
  [BinaryOp.Add]: (x, y) => x + y,
  [BinaryOp.Sub]: (x, y) => x - y,
  [BinaryOp.Mul]: (x, y) => x * y,
  [BinaryOp.Div]: (x, y) => x / y,
  [BinaryOp.Max]: (x, y) => Math.max(x, y),
  [BinaryOp.Min]: (x, y) => Math.min(x, y),
  [BinaryOp.Pow]: (x, y) => x ** y,
};

/** a op b without autograd. */
function rawBinary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  checkSameDevice(a, b);
  a.checkAlive();
  b.checkAlive();
  const shape = broadcastShapes(a.shape, b.shape);
  let dtype = promoteTypes(a.dtype, b.dtype);
  if (op === BinaryOp.Div && !dtype.is_floating_point) dtype = float32;
  if (!dtype.is_floating_point) {
    return fromFlat(jsBroadcast([a, b], shape, ([x, y]) => JS_BINARY[op](x, y)), shape, dtype === bool ? int64 : dtype, { device: a.device });
  }
  const out = floatBroadcast(a, b, shape, float32, (a32, aStrides, b32, bStrides, o) =>
    backendFor(o).binary(op, shape, a32.buffer, a32.offset, aStrides, b32.buffer, b32.offset, bStrides, o.buffer, 0, contiguousStrides(shape)));
  return restoreDtype(out, dtype);
}

/** Runs a float32 kernel over a and b broadcast to `shape`, into a new tensor of `outDtype`. */
function floatBroadcast(a: Tensor, b: Tensor, shape: number[], outDtype: DType,
  run: (a32: Tensor, aStrides: number[], b32: Tensor, bStrides: number[], out: Tensor) => void): Tensor {
  const a32 = asF32(a);
  const b32 = asF32(b);
  const out = Tensor.empty(shape, outDtype, a.device);
  run(a32, broadcastStrides(a32.shape, a32.strides, shape), b32, broadcastStrides(b32.shape, b32.strides, shape), out);
  releaseTemp(a32, a);
  releaseTemp(b32, b);
  return out;
}

/**
 * fn over the broadcast elements of integer or bool tensors, in JS (they are small: ids, labels, masks). The
 * callers put the result on the operands' device: a CUDA op must give a CUDA tensor wherever it is computed.
 */
function jsBroadcast(tensors: Tensor[], shape: number[], fn: (values: number[]) => number): number[] {
  const columns = tensors.map((t) => readFlat(t.expand(shape)).map(Number));
  return columns[0].map((_, i) => fn(columns.map((c) => c[i])));
}

/** t op s (or s op t) for a JS number s, without autograd. */
function rawScalar(op: BinaryOp, t: Tensor, s: number, reverse = false): Tensor {
  t.checkAlive();
  if (!t.dtype.is_floating_point && (!Number.isInteger(s) || op === BinaryOp.Div || op === BinaryOp.Pow && s < 0)) {
    const f = convertContiguous(t, float32);
    const out = rawScalar(op, f, s, reverse);
    f.dispose();
    return out;
  }
  if (!t.dtype.is_floating_point) {
    const s_t = scalarTensor(s, t);
    const out = reverse ? rawBinary(op, s_t, t) : rawBinary(op, t, s_t);
    s_t.dispose();
    return out;
  }
  const t32 = asF32(t);
  const out = Tensor.empty(t.shape, float32, t.device);
  backendFor(out).binaryScalar(op, [...t.shape], t32.buffer, t32.offset, [...t32.strides], s, reverse, out.buffer, 0, contiguousStrides(t.shape));
  releaseTemp(t32, t);
  return restoreDtype(out, t.dtype);
}

function rawUnary(op: UnaryOp, t: Tensor, alpha = 0): Tensor {
  t.checkAlive();
  const t32 = asF32(t);
  const out = Tensor.empty(t.shape, float32, t.device);
  backendFor(out).unary(op, alpha, [...t.shape], t32.buffer, t32.offset, [...t32.strides], out.buffer, 0, contiguousStrides(t.shape));
  releaseTemp(t32, t);
  return restoreDtype(out, t.dtype.is_floating_point ? t.dtype : float32);
}

/** dy * f'(x) by a fused native kernel. */
function rawUnaryGrad(op: UnaryGradOp, x: Tensor, dy: Tensor): Tensor {
  const x32 = f32(x);
  const dy32 = f32(dy);
  const dx = Tensor.empty(x.shape, float32, x.device);
  backendFor(dx).unaryGrad(op, x.numel(), x32.t.buffer, x32.t.offset, dy32.t.buffer, dy32.t.offset, dx.buffer, 0);
  release(x32);
  release(dy32);
  return restoreDtype(dx, dy.dtype);
}

// ---- arithmetic

export function add(a: Tensor | number, b: TensorOrScalar, options: { alpha?: number } = {}): Tensor {
  const alpha = options.alpha ?? 1;
  if (typeof a === "number") return add(b as Tensor, a);
  if (typeof b === "number") {
    return record(rawScalar(BinaryOp.Add, a, b * alpha), "Add", [a], (g) => [g]);
  }
  const scaledB = alpha === 1 ? b : mul(b, alpha);
  const out = rawBinary(BinaryOp.Add, a, scaledB);
  if (scaledB !== b) scaledB.dispose();
  return record(out, "Add", [a, b], (g) => [
    a.requires_grad ? sumToShape(g, a.shape) : null,
    b.requires_grad ? sumToShape(alpha === 1 ? g : mul(g, alpha), b.shape) : null,
  ]);
}

export function sub(a: Tensor | number, b: TensorOrScalar, options: { alpha?: number } = {}): Tensor {
  const alpha = options.alpha ?? 1;
  if (typeof a === "number") {
    const bt = b as Tensor;
    return record(rawScalar(BinaryOp.Sub, bt, a, true), "Rsub", [bt], (g) => [neg(g)]);
  }
  if (typeof b === "number") return record(rawScalar(BinaryOp.Sub, a, b * alpha), "Sub", [a], (g) => [g]);
  const scaledB = alpha === 1 ? b : mul(b, alpha);
  const out = rawBinary(BinaryOp.Sub, a, scaledB);
  if (scaledB !== b) scaledB.dispose();
  return record(out, "Sub", [a, b], (g) => [
    a.requires_grad ? sumToShape(g, a.shape) : null,
    b.requires_grad ? sumToShape(mul(g, -alpha), b.shape) : null,
  ]);
}

export function mul(a: Tensor | number, b: TensorOrScalar): Tensor {
  if (typeof a === "number") return mul(b as Tensor, a);
  if (typeof b === "number") return record(rawScalar(BinaryOp.Mul, a, b), "Mul", [a], (g) => [mul(g, b)]);
  const out = rawBinary(BinaryOp.Mul, a, b);
  return record(out, "Mul", [a, b], (g) => [
    a.requires_grad ? sumToShape(mul(g, b.detach()), a.shape) : null,
    b.requires_grad ? sumToShape(mul(g, a.detach()), b.shape) : null,
  ], [a, b]);
}

export function div(a: Tensor | number, b: TensorOrScalar): Tensor {
  if (typeof a === "number") {
    const bt = b as Tensor;
    const out = rawScalar(BinaryOp.Div, bt, a, true);
    return record(out, "Div", [bt], (g) => [neg(div(mul(g, out.detach()), bt.detach()))], [bt, out]);
  }
  if (typeof b === "number") return record(rawScalar(BinaryOp.Div, a, b), "Div", [a], (g) => [div(g, b)]);
  const out = rawBinary(BinaryOp.Div, a, b);
  return record(out, "Div", [a, b], (g) => [
    a.requires_grad ? sumToShape(div(g, b.detach()), a.shape) : null,
    b.requires_grad ? sumToShape(neg(div(mul(g, out.detach()), b.detach())), b.shape) : null,
  ], [a, b, out]);
}

export function pow(t: Tensor, exponent: number): Tensor {
  const out = rawUnary(UnaryOp.PowScalar, t, exponent);
  return record(out, "Pow", [t], (g) => [mul(g, mul(rawUnary(UnaryOp.PowScalar, t.detach(), exponent - 1), exponent))], [t]);
}

export function neg(t: Tensor): Tensor {
  if (!t.dtype.is_floating_point) return rawScalar(BinaryOp.Mul, t, -1);
  return record(rawUnary(UnaryOp.Neg, t), "Neg", [t], (g) => [neg(g)]);
}

export function fullLike(t: Tensor, value: number): Tensor {
  return full(t.shape, value, { dtype: t.dtype.is_floating_point ? t.dtype : float32, device: t.device });
}

function maxMinGrad(a: Tensor, b: Tensor, g: Tensor, winner: CompareOp): (Tensor | null)[] {
  // Ties split the gradient evenly, as PyTorch does.
  const aWins = compareTensors(winner, a.detach(), b.detach()).to(g.dtype);
  const tie = compareTensors(CompareOp.Eq, a.detach(), b.detach()).to(g.dtype);
  const wA = add(aWins, mul(tie, 0.5));
  const wB = sub(1, add(aWins, mul(tie, 0.5)));
  return [
    a.requires_grad ? sumToShape(mul(g, wA), a.shape) : null,
    b.requires_grad ? sumToShape(mul(g, wB), b.shape) : null,
  ];
}

export function maximum(a: Tensor, b: Tensor): Tensor {
  return record(rawBinary(BinaryOp.Max, a, b), "Maximum", [a, b], (g) => maxMinGrad(a, b, g, CompareOp.Gt), [a, b]);
}

export function minimum(a: Tensor, b: Tensor): Tensor {
  return record(rawBinary(BinaryOp.Min, a, b), "Minimum", [a, b], (g) => maxMinGrad(a, b, g, CompareOp.Lt), [a, b]);
}

export function clamp(t: Tensor, min: number | null, max: number | null): Tensor {
  let out = t;
  if (min !== null) out = rawScalar(BinaryOp.Max, out, min);
  if (max !== null) {
    const next = rawScalar(BinaryOp.Min, out, max);
    if (out !== t) out.dispose();
    out = next;
  }
  if (out === t) out = t.clone();
  return record(out, "Clamp", [t], (g) => {
    const x = t.detach();
    let inside = fullLike(x, 1);
    if (min !== null) inside = mul(inside, ge(x, min).to(g.dtype));
    if (max !== null) inside = mul(inside, le(x, max).to(g.dtype));
    return [mul(g, inside)];
  }, [t]);
}

// ---- unary maths

/** A unary op whose backward needs either its input x or its output y (the one it saves). */
function unaryOp(op: UnaryOp, name: string, t: Tensor, grad: (g: Tensor, saved: Tensor) => Tensor, saveOutput = false): Tensor {
  const out = rawUnary(op, t);
  const saved = saveOutput ? out : t;
  return record(out, name, [t], (g) => [grad(g, saved.detach())], [saved]);
}

export const exp = (t: Tensor) => unaryOp(UnaryOp.Exp, "Exp", t, (g, y) => mul(g, y), true);
export const log = (t: Tensor) => unaryOp(UnaryOp.Log, "Log", t, (g, x) => div(g, x));
export const log1p = (t: Tensor) => unaryOp(UnaryOp.Log1p, "Log1p", t, (g, x) => div(g, add(x, 1)));
export const sqrt = (t: Tensor) => unaryOp(UnaryOp.Sqrt, "Sqrt", t, (g, y) => div(g, mul(y, 2)), true);
export const rsqrt = (t: Tensor) => unaryOp(UnaryOp.Rsqrt, "Rsqrt", t, (g, y) => mul(g, mul(pow(y, 3), -0.5)), true);
export const abs = (t: Tensor) => unaryOp(UnaryOp.Abs, "Abs", t, (g, x) => mul(g, sign(x)));
export const square = (t: Tensor) => unaryOp(UnaryOp.Square, "Pow", t, (g, x) => mul(g, mul(x, 2)));
export const reciprocal = (t: Tensor) => unaryOp(UnaryOp.Reciprocal, "Reciprocal", t, (g, y) => neg(mul(g, mul(y, y))), true);
export const tanh = (t: Tensor) => unaryOp(UnaryOp.Tanh, "Tanh", t, (g, y) => rawUnaryGrad(UnaryGradOp.TanhFromOutput, y, g), true);
export const sigmoid = (t: Tensor) => unaryOp(UnaryOp.Sigmoid, "Sigmoid", t, (g, y) => rawUnaryGrad(UnaryGradOp.SigmoidFromOutput, y, g), true);
export const relu = (t: Tensor) => unaryOp(UnaryOp.Relu, "Relu", t, (g, x) => rawUnaryGrad(UnaryGradOp.Relu, x, g));
export const softplus = (t: Tensor) => unaryOp(UnaryOp.Softplus, "Softplus", t, (g, x) => mul(g, rawUnary(UnaryOp.Sigmoid, x)));
export const sign = (t: Tensor): Tensor => rawUnary(UnaryOp.Sign, t);

/** GELU: approximate "none" is the erf form (BERT's "gelu"), "tanh" the tanh form ("gelu_new"). */
export function gelu(t: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  const op = approximate === "tanh" ? UnaryOp.GeluTanh : UnaryOp.GeluErf;
  const gradOp = approximate === "tanh" ? UnaryGradOp.GeluTanh : UnaryGradOp.GeluErf;
  return unaryOp(op, "Gelu", t, (g, x) => rawUnaryGrad(gradOp, x, g));
}

/**
 * GELU(h + bias) over the last dim, fused; h is a fresh contiguous [rows, cols] float32 tensor that receives
 * h + bias, the pre-activation returned for the backward. Under autocast on CUDA the result carries its 16-bit copy
 * for the next product (amp/lowp_copy.ts).
 */
export function biasGeluInto(h: Tensor, bias: Tensor): Tensor {
  const cols = bias.numel();
  const rows = h.numel() / cols;
  const y = Tensor.empty(h.shape, float32, h.device);
  const args = [rows, cols, h.buffer, h.offset, bias.buffer, bias.offset, y.buffer, 0] as const;
  const copy = emptyLowpCopy(y);
  if (!copy) {
    backendFor(h).biasGelu(...args);
    return y;
  }
  native.cuda.biasGelu(...args, copy.dtype.code, copy.buffer);
  attachLowpCopy(y, copy);
  return y;
}

/**
 * GELU of a contiguous 16-bit CUDA tensor `pre` (linear_gelu under autocast: the product and bias written in 16
 * bits, as PyTorch's autocast writes them) in pre's dtype, as PyTorch's autocast has it, for the next product.
 */
export function geluOfLowp(pre: Tensor): Tensor {
  const y = Tensor.empty(pre.shape, pre.dtype, pre.device);
  native.cuda.geluLowp(pre.numel(), pre.buffer, pre.offset, pre.dtype.code, y.buffer, 0);
  return y;
}

export { rawUnaryGrad };

// ---- comparisons and selection

const JS_COMPARE: Record<CompareOp, (x: number, y: number) => boolean> = {
  [CompareOp.Eq]: (x, y) => x === y,
  [CompareOp.Ne]: (x, y) => x !== y,
  [CompareOp.Lt]: (x, y) => x < y,
  [CompareOp.Le]: (x, y) => x <= y,
  [CompareOp.Gt]: (x, y) => x > y,
  [CompareOp.Ge]: (x, y) => x >= y,
};

function compareTensors(op: CompareOp, a: Tensor, b: Tensor): Tensor {
  checkSameDevice(a, b);
  const shape = broadcastShapes(a.shape, b.shape);
  if (a.dtype.is_floating_point || b.dtype.is_floating_point) {
    return floatBroadcast(a, b, shape, bool, (a32, aStrides, b32, bStrides, o) =>
      backendFor(o).compare(op, shape, a32.buffer, a32.offset, aStrides, b32.buffer, b32.offset, bStrides, o.buffer, 0, contiguousStrides(shape)));
  }
  return fromFlat(jsBroadcast([a, b], shape, ([x, y]) => (JS_COMPARE[op](x, y) ? 1 : 0)), shape, bool, { device: a.device });
}

function compare(op: CompareOp, a: Tensor, b: TensorOrScalar): Tensor {
  if (typeof b !== "number") return compareTensors(op, a, b);
  const s = full([], b, { dtype: a.dtype.is_floating_point || !Number.isInteger(b) ? float32 : a.dtype === bool ? int64 : a.dtype, device: a.device });
  const out = compareTensors(op, a, s);
  s.dispose();
  return out;
}

export const eq = (a: Tensor, b: TensorOrScalar) => compare(CompareOp.Eq, a, b);
export const ne = (a: Tensor, b: TensorOrScalar) => compare(CompareOp.Ne, a, b);
export const lt = (a: Tensor, b: TensorOrScalar) => compare(CompareOp.Lt, a, b);
export const le = (a: Tensor, b: TensorOrScalar) => compare(CompareOp.Le, a, b);
export const gt = (a: Tensor, b: TensorOrScalar) => compare(CompareOp.Gt, a, b);
export const ge = (a: Tensor, b: TensorOrScalar) => compare(CompareOp.Ge, a, b);

export function logical_not(t: Tensor): Tensor {
  return eq(t, 0);
}

function asBoolMask(cond: Tensor, fn: string): Tensor {
  if (cond.dtype !== bool) throw new TypeError(`${fn}: expected a bool condition/mask tensor, got ${cond.dtype}`);
  return cond;
}

/** torch.where(cond, a, b) */
export function where(cond: Tensor, a: TensorOrScalar, b: TensorOrScalar): Tensor {
  asBoolMask(cond, "where");
  const like = typeof a === "number" ? (b as Tensor) : a;
  const ta = typeof a === "number" ? full([], a, { dtype: like.dtype.is_floating_point ? like.dtype : float32, device: cond.device }) : a;
  const tb = typeof b === "number" ? full([], b, { dtype: ta.dtype, device: cond.device }) : b;
  checkSameDevice(cond, ta, tb);
  const shape = broadcastShapes(cond.shape, broadcastShapes(ta.shape, tb.shape));
  const dtype = promoteTypes(ta.dtype, tb.dtype);
  let out: Tensor;
  if (!dtype.is_floating_point) {
    out = fromFlat(jsBroadcast([cond, ta, tb], shape, ([c, x, y]) => (c ? x : y)), shape, dtype, { device: cond.device });
  } else {
    const a32 = asF32(ta);
    const b32 = asF32(tb);
    out = Tensor.empty(shape, float32, cond.device);
    backendFor(out).where(shape, cond.buffer, cond.offset, broadcastStrides(cond.shape, cond.strides, shape),
      a32.buffer, a32.offset, broadcastStrides(a32.shape, a32.strides, shape),
      b32.buffer, b32.offset, broadcastStrides(b32.shape, b32.strides, shape), out.buffer, 0, contiguousStrides(shape));
    releaseTemp(a32, ta);
    releaseTemp(b32, tb);
    out = restoreDtype(out, dtype);
  }
  return record(out, "Where", [ta, tb], (g) => [
    ta.requires_grad ? sumToShape(where(cond, g, 0), ta.shape) : null,
    tb.requires_grad ? sumToShape(where(cond, 0, g), tb.shape) : null,
  ], [cond]);
}

export function masked_fill(t: Tensor, mask: Tensor, value: number): Tensor {
  asBoolMask(mask, "masked_fill");
  return where(mask, value, t);
}

export { compareTensors };
