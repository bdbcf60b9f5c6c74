// Matrix products on the native GEMM: matmul (with broadcast batch dims), mm, bmm and linear (x W^T + b, the
// bias written first and accumulated by the GEMM). Transposed views are passed to the GEMM as transposes, not
// copied.
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import { backendFor, checkSameDevice } from "../backend/kernels.js";
import { broadcastShapes, broadcastStrides, contiguousStrides, numelOf } from "../tensor/shape.js";
import { convertContiguous } from "../tensor/creation.js";
import { record } from "./record.js";
import { sumToShape } from "./reduce.js";
import { biasGeluInto, rawUnaryGrad } from "./elementwise.js";
import { UnaryGradOp } from "../backend/native.js";

/** How the GEMM reads a matrix (the last two dims of a tensor) without copying it. */
interface Operand {
  t: Tensor;
  trans: boolean;
  ld: number;
  owned: boolean;
}

function operand(t: Tensor): Operand {
  const rows = t.shape[t.ndim - 2];
  const cols = t.shape[t.ndim - 1];
  const rs = t.strides[t.ndim - 2];
  const cs = t.strides[t.ndim - 1];
  if (t.dtype === float32) {
    if (cs === 1 && (rs >= Math.max(cols, 1) || rows === 1)) return { t, trans: false, ld: Math.max(rs, cols, 1), owned: false };
    if (rs === 1 && (cs >= Math.max(rows, 1) || cols === 1)) return { t, trans: true, ld: Math.max(cs, rows, 1), owned: false };
  }
  const c = convertContiguous(t, float32);
  return { t: c, trans: false, ld: Math.max(cols, 1), owned: true };
}

/**
 * out[..., M, N] (contiguous float32, written or accumulated with beta) = op(a) @ op(b) over broadcast batch dims.
 * `ta`/`tb` ask for the transpose of the stored matrix.
 */
function gemmInto(a: Tensor, ta: boolean, b: Tensor, tb: boolean, out: Tensor, beta: number): void {
  const A = operand(a);
  const B = operand(b);
  const transA = A.trans !== ta;
  const transB = B.trans !== tb;
  const M = ta ? a.shape[a.ndim - 1] : a.shape[a.ndim - 2];
  const K = ta ? a.shape[a.ndim - 2] : a.shape[a.ndim - 1];
  const N = tb ? b.shape[b.ndim - 2] : b.shape[b.ndim - 1];
  const batchShape = out.shape.slice(0, -2);
  const aStrides = broadcastStrides(A.t.shape.slice(0, -2), A.t.strides.slice(0, -2), batchShape);
  const bStrides = broadcastStrides(B.t.shape.slice(0, -2), B.t.strides.slice(0, -2), batchShape);
  const outStrides = contiguousStrides(out.shape);
  const inner = batchShape.length > 0 ? batchShape[batchShape.length - 1] : 1;
  const outerShape = batchShape.slice(0, -1);
  const outerCount = numelOf(outerShape);
  const be = backendFor(out);
  const last = batchShape.length - 1;
  for (let o = 0; o < outerCount; o++) {
    let offA = A.t.offset;
    let offB = B.t.offset;
    let offC = out.offset;
    let rest = o;
    for (let d = outerShape.length - 1; d >= 0; d--) {
      const i = rest % outerShape[d];
      rest = Math.floor(rest / outerShape[d]);
      offA += i * aStrides[d];
      offB += i * bStrides[d];
      offC += i * outStrides[d];
    }
    be.sgemm(transA, transB, M, N, K, 1, A.t.buffer, offA, A.ld, last >= 0 ? aStrides[last] : 0,
      B.t.buffer, offB, B.ld, last >= 0 ? bStrides[last] : 0, beta, out.buffer, offC, N, M * N, inner);
  }
  if (A.owned) A.t.dispose();
  if (B.owned) B.t.dispose();
}

function checkFloat(a: Tensor, b: Tensor, fn: string): void {
  checkSameDevice(a, b);
  if (!a.dtype.is_floating_point || !b.dtype.is_floating_point) {
    throw new TypeError(`${fn}: expected floating point tensors, got ${a.dtype} and ${b.dtype}`);
  }
  a.checkAlive();
  b.checkAlive();
}

/** The product of two tensors of rank >= 2 with broadcast batch dims. */
function batchedMatmul(a: Tensor, b: Tensor): Tensor {
  const K = a.shape[a.ndim - 1];
  if (b.shape[b.ndim - 2] !== K) {
    throw new Error(`mat1 and mat2 shapes cannot be multiplied (${a.shape.slice(-2).join("x")} and ${b.shape.slice(-2).join("x")})`);
  }
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = Tensor.empty([...batch, a.shape[a.ndim - 2], b.shape[b.ndim - 1]], float32, a.device);
  gemmInto(a, false, b, false, out, 0);
  const result = a.dtype === float32 && b.dtype === float32 ? out : convertBack(out, a);
  return record(result, "Matmul", [a, b], (g) => [
    a.requires_grad ? sumToShape(productGrad(g, false, b.detach(), true), a.shape) : null,
    b.requires_grad ? sumToShape(productGrad(a.detach(), true, g, false), b.shape) : null,
  ], [a, b]);
}

function convertBack(out: Tensor, like: Tensor): Tensor {
  const c = convertContiguous(out, like.dtype);
  out.dispose();
  return c;
}

/** op(x) @ op(y) for gradients (no autograd, batch dims broadcast). */
function productGrad(x: Tensor, tx: boolean, y: Tensor, ty: boolean): Tensor {
  const M = tx ? x.shape[x.ndim - 1] : x.shape[x.ndim - 2];
  const N = ty ? y.shape[y.ndim - 2] : y.shape[y.ndim - 1];
  const batch = broadcastShapes(x.shape.slice(0, -2), y.shape.slice(0, -2));
  const out = Tensor.empty([...batch, M, N], float32, x.device);
  gemmInto(x, tx, y, ty, out, 0);
  return x.dtype === float32 ? out : convertBack(out, x);
}

export function matmul(a: Tensor, b: Tensor): Tensor {
  checkFloat(a, b, "matmul");
  if (a.ndim === 0 || b.ndim === 0) throw new Error("both arguments to matmul need to be at least 1D");
  if (a.ndim === 1 && b.ndim === 1) {
    if (a.shape[0] !== b.shape[0]) throw new Error(`inconsistent tensor size, expected tensor [${a.shape}] and src [${b.shape}] to have the same number of elements`);
    return batchedMatmul(a.unsqueeze(0), b.unsqueeze(1)).reshape([]);
  }
  if (a.ndim === 1) return batchedMatmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.ndim === 1) return batchedMatmul(a, b.unsqueeze(1)).squeeze(-1);
  return batchedMatmul(a, b);
}

export function mm(a: Tensor, b: Tensor): Tensor {
  if (a.ndim !== 2 || b.ndim !== 2) throw new Error(`mm: expected 2D tensors, got ${a.ndim}D and ${b.ndim}D`);
  return matmul(a, b);
}

export function bmm(a: Tensor, b: Tensor): Tensor {
  if (a.ndim !== 3 || b.ndim !== 3) throw new Error(`bmm: expected 3D tensors, got ${a.ndim}D and ${b.ndim}D`);
  if (a.shape[0] !== b.shape[0]) throw new Error(`bmm: batch sizes differ (${a.shape[0]} and ${b.shape[0]})`);
  return matmul(a, b);
}

function checkLinear(x: Tensor, weight: Tensor, bias: Tensor | null): void {
  checkFloat(x, weight, "linear");
  if (weight.ndim !== 2 || x.shape[x.ndim - 1] !== weight.shape[1]) {
    throw new Error(`mat1 and mat2 shapes cannot be multiplied (${numelOf(x.shape.slice(0, -1))}x${x.shape[x.ndim - 1]} and ${weight.shape[1]}x${weight.shape[0]})`);
  }
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== weight.shape[0])) {
    throw new Error(`linear: bias of shape [${bias.shape}] does not match ${weight.shape[0]} output features`);
  }
}

/** x W^T (+ b, written first and accumulated by the GEMM) as a new float32 tensor, without autograd. */
function linearForward(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  const [outFeatures, inFeatures] = weight.shape;
  const rows = numelOf(x.shape.slice(0, -1));
  const x2 = x.dtype === float32 && x.is_contiguous() ? x : convertContiguous(x, float32);
  const x2d = x2._view([rows, inFeatures], [inFeatures, 1], x2.offset);
  const out = Tensor.empty([...x.shape.slice(0, -1), outFeatures], float32, x.device);
  const out2d = out._view([rows, outFeatures], [outFeatures, 1], 0);
  if (bias) {
    backendFor(out).copy([rows, outFeatures], bias.buffer, bias.dtype.code, bias.offset, [0, bias.strides[0]], out.buffer, out.dtype.code, 0, [outFeatures, 1]);
  }
  gemmInto(x2d, false, weight, true, out2d, bias ? 1 : 0);
  out2d.dispose();
  x2d.dispose();
  if (x2 !== x) x2.dispose();
  return out;
}

/** y = x W^T + b over the last dim of x; W is [out, in]. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  checkLinear(x, weight, bias);
  const [outFeatures, inFeatures] = weight.shape;
  const rows = numelOf(x.shape.slice(0, -1));
  const out = linearForward(x, weight, bias);
  const result = x.dtype === float32 ? out : convertBack(out, x);
  const needs = { x: x.requires_grad, weight: weight.requires_grad, bias: bias?.requires_grad ?? false };
  return record(result, "Addmm", [x, weight, bias], (g) => linearBackward(g, x.detach(), weight.detach(), needs, rows, inFeatures, outFeatures), [x, weight]);
}

/** gelu(x W^T + b) (erf GELU, BERT's intermediate layer): the bias add and GELU fused into one pass. */
export function linear_gelu(x: Tensor, weight: Tensor, bias: Tensor): Tensor {
  checkLinear(x, weight, bias);
  if (bias.dtype !== float32 || !bias.is_contiguous()) throw new Error("linear_gelu: bias must be a contiguous float32 tensor");
  const [outFeatures, inFeatures] = weight.shape;
  const rows = numelOf(x.shape.slice(0, -1));
  const preActivation = linearForward(x, weight, null);
  const y = biasGeluInto(preActivation, bias);
  const result = x.dtype === float32 ? y : convertBack(y, x);
  const needs = { x: x.requires_grad, weight: weight.requires_grad, bias: bias.requires_grad };
  const out = record(result, "LinearGelu", [x, weight, bias], (g) => {
    const dh = rawUnaryGrad(UnaryGradOp.GeluErf, preActivation, g);
    return linearBackward(dh, x.detach(), weight.detach(), needs, rows, inFeatures, outFeatures);
  }, [x, weight, preActivation]);
  if (!out.requires_grad) preActivation.dispose();
  return out;
}

function linearBackward(g: Tensor, x: Tensor, weight: Tensor, needs: { x: boolean; weight: boolean; bias: boolean }, rows: number, inF: number, outF: number): (Tensor | null)[] {
  const g2 = g.dtype === float32 && g.is_contiguous() ? g : convertContiguous(g, float32);
  const g2d = g2._view([rows, outF], [outF, 1], g2.offset);
  let dx: Tensor | null = null;
  if (needs.x) {
    dx = Tensor.empty(x.shape, float32, x.device);
    const dx2d = dx._view([rows, inF], [inF, 1], 0);
    gemmInto(g2d, false, weight, false, dx2d, 0);
    dx2d.dispose();
  }
  let dw: Tensor | null = null;
  if (needs.weight) {
    const x2 = x.dtype === float32 && x.is_contiguous() ? x : convertContiguous(x, float32);
    const x2d = x2._view([rows, inF], [inF, 1], x2.offset);
    dw = Tensor.empty([outF, inF], float32, x.device);
    gemmInto(g2d, true, x2d, false, dw, 0);
    x2d.dispose();
    if (x2 !== x) x2.dispose();
  }
  const db = needs.bias ? g2d.sum(0) : null;
  g2d.dispose();
  if (g2 !== g) g2.dispose();
  return [dx, dw, db];
}
