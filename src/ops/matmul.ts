// Matrix products on the native GEMM: matmul (with broadcast batch dims), mm, bmm and linear (x W^T + b, the
// bias written first and accumulated by the GEMM). Transposed views are passed to the GEMM as transposes, not
// copied. Inside torch.autocast the operands are read in 16 bits and the products written in float32
// (amp/autocast_mode.ts); their graph nodes then save the 16-bit operands, half the memory of the float32 ones.
import { Tensor } from "../tensor/tensor.js";
import { DType, bfloat16, float32 } from "../tensor/dtype.js";
import { autocastOperandDtype } from "../amp/autocast_mode.js";
import { lowpCopyOf, readsGradientAs, takeColumnSums } from "../amp/lowp_copy.js";
import { autocastPackedWeights, autocastWeight } from "../amp/autocast_weight.js";
import { backendFor, checkSameDevice } from "../backend/kernels.js";
import { broadcastShapes, broadcastStrides, contiguousStrides, formatShape, numelOf, sameShape } from "../tensor/shape.js";
import { convertContiguous } from "../tensor/creation.js";
import { needsGrad, record } from "./record.js";
import { restoreDtype } from "./float32_operands.js";
import { sumToShape } from "./reduce.js";
import { biasGeluInto, geluOfLowp, rawUnaryGrad } from "./elementwise.js";
import { UnaryGradOp, native } from "../backend/native.js";
import { chunkSquaresMemory, reserveChunkSquares, sumChunkSquares } from "./chunk_squares.js";
import { sideBySide } from "./side_stream_choice.js";
import { forkSideStream, joinSideStream, toMainStream } from "../backend/side_stream.js";
import { stackGroupsAs, stackRowsAs } from "./join.js";
import { narrow } from "./view.js";

/** How the GEMM reads a matrix (the last two dims of a tensor) without copying it. */
interface Operand {
  t: Tensor;
  trans: boolean;
  ld: number;
  owned: boolean;
}

/** `t` read as `read`: float32, or the 16-bit dtype both operands share where the device's GEMM reads it. */
function operand(t: Tensor, read: DType): Operand {
  const rows = t.shape[t.ndim - 2];
  const cols = t.shape[t.ndim - 1];
  const rs = t.strides[t.ndim - 2];
  const cs = t.strides[t.ndim - 1];
  if (t.dtype === read) {
    if (cs === 1 && (rs >= Math.max(cols, 1) || rows === 1)) return { t, trans: false, ld: Math.max(rs, cols, 1), owned: false };
    if (rs === 1 && (cs >= Math.max(rows, 1) || cols === 1)) return { t, trans: true, ld: Math.max(cs, rows, 1), owned: false };
  }
  const c = convertContiguous(t, read);
  return { t: c, trans: false, ld: Math.max(cols, 1), owned: true };
}

/** `t` in `dtype`: itself when it already has it, else a contiguous converted copy (no autograd). */
function castTo(t: Tensor, dtype: DType): Tensor {
  return t.dtype === dtype ? t : convertContiguous(t, dtype);
}

/**
 * `t` contiguous in `dtype`: itself when it already is, the 16-bit copy that the kernel which produced t wrote
 * (amp/lowp_copy.ts) while it holds t's values and is contiguous (a view's copy is the same view), else a
 * converted copy (no autograd).
 */
function contiguousAs(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype && t.is_contiguous()) return t;
  const copy = lowpCopyOf(t, dtype);
  return copy?.is_contiguous() ? copy : convertContiguous(t, dtype);
}

/**
 * Releases the operand copies a product made, unless its graph node saved them for the backward; a copy the
 * original carries (amp/lowp_copy.ts) is the original's to release.
 */
function releaseCopies(result: Tensor, copies: [copy: Tensor, original: Tensor][]): void {
  if (result.requires_grad) return;
  for (const [copy, original] of copies) releaseCopy(copy, original);
}

/** releaseCopies' release of one operand's copy, where no graph node saved it. */
function releaseCopy(copy: Tensor, original: Tensor): void {
  if (copy !== original && original._lowp?.copy !== copy) copy.dispose();
}

const CPU_READS_BF16 = native.cpuFeatures().avx512bf16;

/** Whether the GEMM kernels of a's device read its 16-bit dtype themselves. */
function readsLowp(a: Tensor): boolean {
  return a.device.type === "cuda" || (a.dtype === bfloat16 && CPU_READS_BF16);
}

/**
 * out[..., M, N] (contiguous float32, written or accumulated with beta) = op(a) @ op(b) (+ bias, of out's dtype)
 * over broadcast batch dims. On CUDA with 16-bit a and b, out may be of their dtype (beta 0): the float32 result
 * rounded. `ta`/`tb` ask for the transpose of the stored matrix.
 */
function gemmInto(a: Tensor, ta: boolean, b: Tensor, tb: boolean, out: Tensor, beta: number, bias: Tensor | null = null): void {
  // cuBLASLt reads 16-bit operands itself (on tensor cores), and so do the CPU kernels bfloat16 on CPUs with
  // AVX512-BF16; elsewhere they read float32, into which 16-bit values widen exactly. All accumulate the same
  // products in float32.
  const read = a.dtype === b.dtype && a.dtype !== float32 && readsLowp(a) ? a.dtype : float32;
  const A = operand(a, read);
  const B = operand(b, read);
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
      B.t.buffer, offB, B.ld, last >= 0 ? bStrides[last] : 0, beta, out.buffer, offC, N, M * N, inner, read.code,
      bias?.buffer, bias?.offset, out.dtype.code);
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
  const lowp = autocastOperandDtype(a, b);
  const x = lowp ? castTo(a, lowp) : a;
  const y = lowp ? castTo(b, lowp) : b;
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = Tensor.empty([...batch, a.shape[a.ndim - 2], b.shape[b.ndim - 1]], float32, a.device);
  gemmInto(x, false, y, false, out, 0);
  const result = lowp || (a.dtype === float32 && b.dtype === float32) ? out : restoreDtype(out, a.dtype);
  record(result, "Matmul", [a, b], (g) => {
    const gr = lowp ? castTo(g, lowp) : g;
    const grads = [
      a.requires_grad ? sumToShape(productGrad(gr, false, y.detach(), true, lowp ? a.dtype : gr.dtype), a.shape) : null,
      b.requires_grad ? sumToShape(productGrad(x.detach(), true, gr, false, lowp ? b.dtype : x.dtype), b.shape) : null,
    ];
    if (gr !== g) gr.dispose();
    return grads;
  }, [x, y]);
  releaseCopies(result, [[x, a], [y, b]]);
  return result;
}

/** op(x) @ op(y) in `dtype` for gradients (no autograd, batch dims broadcast). */
function productGrad(x: Tensor, tx: boolean, y: Tensor, ty: boolean, dtype: DType): Tensor {
  const M = tx ? x.shape[x.ndim - 1] : x.shape[x.ndim - 2];
  const N = ty ? y.shape[y.ndim - 2] : y.shape[y.ndim - 1];
  const batch = broadcastShapes(x.shape.slice(0, -2), y.shape.slice(0, -2));
  const out = Tensor.empty([...batch, M, N], float32, x.device);
  gemmInto(x, tx, y, ty, out, 0);
  return dtype === float32 ? out : restoreDtype(out, x.dtype === dtype ? x.dtype : y.dtype);
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

/** The operands of a linear layer as its GEMMs read them: x contiguous, both in autocast's dtype if active. */
function linearOperands(x: Tensor, weight: Tensor): { xs: Tensor; ws: Tensor } {
  const lowp = autocastOperandDtype(x, weight);
  return { xs: contiguousAs(x, lowp ?? float32), ws: lowp ? autocastWeight(weight, lowp) : weight };
}

/**
 * xs ws^T (+ b, added by the GEMM after the products) as a new tensor, without autograd: float32, or of the
 * operands' 16-bit dtype where `dtype` says so (CUDA only).
 */
function linearForward(xs: Tensor, ws: Tensor, bias: Tensor | null, dtype: DType = float32): Tensor {
  const [outFeatures, inFeatures] = ws.shape;
  const rows = numelOf(xs.shape.slice(0, -1));
  const x2d = xs._view([rows, inFeatures], [inFeatures, 1], xs.offset);
  const out = Tensor.empty([...xs.shape.slice(0, -1), outFeatures], dtype, xs.device);
  const out2d = out._view([rows, outFeatures], [outFeatures, 1], 0);
  // The GEMM reads the bias as contiguous values of the output's dtype from a 16-byte boundary (cuBLASLt's
  // epilogue), which a parameter is; a view or a bias of another dtype is copied.
  const b = bias && (bias.dtype !== dtype || !bias.is_contiguous() || (bias.offset * dtype.itemsize) % 16 !== 0) ? convertContiguous(bias, dtype) : bias;
  gemmInto(x2d, false, ws, true, out2d, 0, b);
  if (b !== bias) b?.dispose();
  out2d.dispose();
  x2d.dispose();
  return out;
}

/** The dtype a linear layer returns: float32 under autocast (whose operands xs then differ from x), else x's. */
function linearResult(out: Tensor, x: Tensor, xs: Tensor): Tensor {
  return x.dtype === float32 || xs.dtype !== float32 ? out : restoreDtype(out, x.dtype);
}

/** y = x W^T + b over the last dim of x; W is [out, in]. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  checkLinear(x, weight, bias);
  const { xs, ws } = linearOperands(x, weight);
  const result = linearResult(linearForward(xs, ws, bias), x, xs);
  const needs = { x: x.requires_grad, weight: weight.requires_grad, bias: bias?.requires_grad ?? false, x_dtype: x.dtype };
  record(result, "Addmm", [x, weight, bias], (g, into) => linearBackward(g, null, xs.detach(), ws.detach(), needs, into[0]), [xs, ws]);
  if (result.requires_grad && gradientReadIn(xs) !== null) readsGradientAs(result, xs.dtype);
  releaseCopies(result, [[xs, x], [ws, weight]]);
  return result;
}

/**
 * x @ cat(weights)^T + cat(biases): one linear layer over several layers' weights stacked by output features
 * (BERT's query, key and value), one GEMM where there would be several narrower ones. The weights are stacked
 * for the product. Under autocast on a GPU the stack is the parameters' packed 16-bit copy, which the optimizer
 * keeps current (amp/autocast_weight.ts: 3.5 MB a bert-base layer), and the backward's product reads it too;
 * elsewhere it is cast for the product (and kept for the backward's under autocast), and made again there in
 * float32, where holding it from the forward to the backward would cost 7 MB a layer. Each weight's and bias's
 * gradient is its rows of the stacked one.
 */
export function packed_linear(x: Tensor, weights: readonly Tensor[], biases: readonly Tensor[]): Tensor {
  const product = packedProduct(x, weights, biases, false);
  const result = record(product.y, "Addmm", [x, ...weights, ...biases], product.backward, product.saved);
  product.done(result.requires_grad);
  return result;
}

/** A product made without its graph node: its result, the node's backward and saved tensors, and done(). */
export interface UnrecordedProduct {
  y: Tensor;
  /**
   * the gradients of x, the weights and the biases from y's (BackwardFn: `into` is x's summed so far); with
   * `column_sums` (taken over) y's gradient came in the GEMMs' dtype from a kernel that also summed its columns
   */
  backward: (g: Tensor, into: readonly (Tensor | null)[], column_sums?: Tensor | null) => (Tensor | null)[];
  saved: Tensor[];
  /** releases what only the backward would read, unless `recorded` (a graph node saved it) */
  done: (recorded: boolean) => void;
}

/**
 * packed_linear's product without its graph node, for an op that records one node over it and what reads it.
 * With `lowp`, under autocast on CUDA, y is written in the operands' 16-bit dtype (the bias rounded to it too, as
 * PyTorch's autocast does), for a reader that takes nothing else: half the product's writes, and no cast.
 */
export function packedProduct(x: Tensor, weights: readonly Tensor[], biases: readonly Tensor[], lowp: boolean): UnrecordedProduct {
  if (weights.length === 0 || biases.length !== weights.length) {
    throw new Error(`packed_linear: expected as many biases as weights (at least one), got ${weights.length} and ${biases.length}`);
  }
  weights.forEach((w, i) => checkLinear(x, w, biases[i]!));
  const read = autocastOperandDtype(x, weights[0]!) ?? float32;
  const out = lowp && x.device.type === "cuda" ? read : float32;
  const xs = contiguousAs(x, read);
  const [ws, bias] = stackedOperands([{ parts: weights, dtype: read }, { parts: biases, dtype: out }]);
  const product = linearForward(xs, ws, bias, out);
  const y = out === float32 ? linearResult(product, x, xs) : product;
  bias.dispose();
  const kept = read !== float32 && needsGrad(x, ...weights, ...biases) ? ws : null;
  if (!kept) ws.dispose();
  const versions = weights.map((w) => w.storage.version);
  const needs = { x: x.requires_grad, weight: weights.some((w) => w.requires_grad), bias: biases.some((b) => b.requires_grad), x_dtype: x.dtype };
  return {
    y,
    backward: (g, into, column_sums = null) => {
      weights.forEach((w, i) => {
        if (w.storage.version !== versions[i]) {
          throw new Error(`one of the variables needed for gradient computation has been modified by an inplace operation: [${w.dtype} ${formatShape(w.shape)}] is at version ${w.storage.version}; expected version ${versions[i]} instead`);
        }
      });
      const stacked = kept?.detach() ?? stackRowsAs(weights, read);
      const [dx, dw, db] = linearBackward(g, null, xs.detach(), stacked, needs, into[0], column_sums);
      stacked.dispose();
      return [dx, ...rowsOf(dw, weights), ...rowsOf(db, biases)];
    },
    saved: kept ? [xs, kept] : [xs],
    done: (recorded) => {
      if (recorded) return;
      kept?.dispose();
      releaseCopy(xs, x);
    },
  };
}

/**
 * Each group's parts stacked by rows in its dtype, as stackGroupsAs does: from the parameters' packed 16-bit copies
 * where autocast keeps them (amp/autocast_weight.ts), the other groups in one stackGroupsAs.
 */
function stackedOperands(groups: readonly { parts: readonly Tensor[]; dtype: DType }[]): Tensor[] {
  const packed = groups.map((g) => (g.dtype === float32 ? null : autocastPackedWeights(g.parts, g.dtype)));
  const missing = groups.filter((_, i) => packed[i] === null);
  const made = missing.length > 0 ? stackGroupsAs(missing) : [];
  return packed.map((t) => t ?? made.shift()!);
}

/**
 * Each part's rows of the gradient `stacked` (views, which become the parts' .grad without a copy), or null for a
 * part that does not require grad or when stacked is null.
 */
function rowsOf(stacked: Tensor | null, parts: readonly Tensor[]): (Tensor | null)[] {
  let at = 0;
  return parts.map((t) => {
    const rows = t.shape[0];
    const slice = stacked && t.requires_grad ? narrow(stacked, 0, at, rows) : null;
    if (slice) slice._gradientSlice = true;
    at += rows;
    return slice;
  });
}

/**
 * gelu(x W^T + b) (erf GELU, BERT's intermediate layer): the bias add and GELU fused into one pass. Under autocast
 * on CUDA the GEMM adds the bias and writes the pre-activation in 16 bits, as PyTorch's autocast does (the backward
 * saves it so: half the memory of the largest tensor a BERT layer saves), and GELU is taken of that.
 */
export function linear_gelu(x: Tensor, weight: Tensor, bias: Tensor): Tensor {
  checkLinear(x, weight, bias);
  if (bias.dtype !== float32 || !bias.is_contiguous()) throw new Error("linear_gelu: bias must be a contiguous float32 tensor");
  const { xs, ws } = linearOperands(x, weight);
  const lowp = x.device.type === "cuda" && xs.dtype !== float32 ? xs.dtype : null;
  let y: Tensor, pre: Tensor;
  if (lowp) {
    const b = autocastWeight(bias, lowp);
    pre = linearForward(xs, ws, b, lowp);
    b.dispose();
    y = geluOfLowp(pre);
  } else {
    pre = linearForward(xs, ws, null);
    y = biasGeluInto(pre, bias);
  }
  const result = linearResult(y, x, xs);
  const needs = { x: x.requires_grad, weight: weight.requires_grad, bias: bias.requires_grad, x_dtype: x.dtype };
  const out = record(result, "LinearGelu", [x, weight, bias], (g, into) => linearBackward(g, pre, xs.detach(), ws.detach(), needs, into[0]),
    [xs, ws, pre]);
  if (!out.requires_grad) pre.dispose();
  releaseCopies(out, [[xs, x], [ws, weight]]);
  return out;
}

/** What a linear layer's backward computes: the gradients wanted, and the dtype of x (whose gradient takes it). */
interface LinearNeeds {
  x: boolean;
  weight: boolean;
  bias: boolean;
  x_dtype: DType;
}

/**
 * Gradients of x, W and b from g = dL/dy, or for linear_gelu from g and the saved pre-activation (the gradient at
 * the product then is dh = g * GELU'(pre)); the GEMMs read it in the dtype of the saved operands xs and ws. With
 * `into` (the engine's sum so far of x's other gradients, BackwardFn) x's gradient is added to it by the GEMM. On
 * CUDA, where x is of the GEMMs' 16-bit dtype (linear_gelu's output under autocast), the GEMM writes x's gradient
 * in it, as PyTorch's does, instead of float32 that the engine would then cast. With `column_sums` g came in the
 * GEMMs' dtype with them (gradientWithSums).
 */
function linearBackward(g: Tensor, pre: Tensor | null, xs: Tensor, ws: Tensor, needs: LinearNeeds,
  into: Tensor | null = null, column_sums: Tensor | null = null): (Tensor | null)[] {
  const [outF, inF] = ws.shape;
  const rows = numelOf(xs.shape.slice(0, -1));
  const { gr, db, owned } = column_sums
    ? gradientWithSums(g, column_sums, xs.dtype, needs.bias)
    : productGradAndBiasGrad(g, pre, xs.dtype, outF, needs.bias);
  const gr2d = gr._view([rows, outF], [outF, 1], gr.offset);
  let dx: Tensor | null = null;
  let accumulate = false;
  /** x's gradient into `out` (beta 1: added to it) */
  const inputGemm = (out: Tensor, beta: number) => {
    const dx2d = out._view([rows, inF], [inF, 1], 0);
    gemmInto(gr2d, false, ws, false, dx2d, beta);
    dx2d.dispose();
  };
  if (needs.x) {
    const dxDtype = xs.device.type === "cuda" && xs.dtype !== float32 && needs.x_dtype === xs.dtype ? xs.dtype : float32;
    accumulate = dxDtype === float32 && into !== null && sameShape(into.shape, xs.shape);
    dx = accumulate ? into! : Tensor.empty(xs.shape, dxDtype, xs.device);
  }
  const dw = needs.weight ? Tensor.empty([outF, inF], float32, xs.device) : null;
  const weightGemm = () => {
    const xs2d = xs._view([rows, inF], [inF, 1], xs.offset);
    gemmInto(gr2d, true, xs2d, false, dw!, 0);
    xs2d.dispose();
  };
  // At a few hundred rows each GEMM has fewer output tiles than a GPU has SMs: on the side stream
  // (native/cuda/side_stream.cc) dW's runs beside dx's where that pays (ops/side_stream_choice.ts: timed on scratch
  // outputs, or dx's own where nothing is added to it), and beside the main stream's next work until the next fork
  // or until that work reads dW (backend/side_stream.ts). Its operands are read as they are (one dtype,
  // contiguous): a conversion would be main-stream work it did not wait for. The side stream also sums dW's squares
  // for the clipping while dW is in the GPU's cache (ops/chunk_squares.ts).
  if (dx !== null && dw !== null && xs.device.type === "cuda" && gr.dtype === xs.dtype) {
    const out = dx;
    const trialOutputs: Tensor[] = [];
    const side = sideBySide(`${outF}x${inF} ${gr.dtype.name} dx ${out.dtype.name}`, rows, (together) => {
      if (accumulate && trialOutputs.length === 0) trialOutputs.push(Tensor.empty(out.shape, out.dtype, out.device));
      gemmPair(together, weightGemm, () => inputGemm(trialOutputs[0] ?? out, 0));
    });
    for (const t of trialOutputs) t.dispose();
    if (side) reserveChunkSquares(dw);
    gemmPair(side, () => {
      weightGemm();
      if (side) sumChunkSquares(dw);
    }, () => inputGemm(out, accumulate ? 1 : 0), side ? { uses: [gr, xs, dw, ...chunkSquaresMemory(dw)], output: dw } : null);
  } else {
    if (dx !== null) inputGemm(dx, accumulate ? 1 : 0);
    if (dw !== null) weightGemm();
  }
  gr2d.dispose();
  if (owned) gr.dispose();
  return [dx, dw, db];
}

/**
 * A linear layer's weight and input gradient GEMMs: side by side, the weight's on the side stream, or in turn. Side
 * by side with `deferred` (every tensor the weight's GEMM uses, and its `output`) the join is deferred
 * (backend/side_stream.ts).
 */
function gemmPair(sideBySide: boolean, weight: () => void, input: () => void,
  deferred: { uses: readonly { buffer: ArrayBuffer }[]; output: Tensor } | null = null): void {
  if (!sideBySide) {
    input();
    weight();
    return;
  }
  forkSideStream(deferred?.uses);
  try {
    try {
      weight();
    } finally {
      toMainStream();
    }
    input();
  } finally {
    joinSideStream(deferred?.output ?? null);
  }
}

/** The 16-bit dtype a linear layer's backward reads its output's gradient in, on CUDA under autocast (operands xs), else null. */
function gradientReadIn(xs: Tensor): DType | null {
  return xs.device.type === "cuda" && xs.dtype !== float32 ? xs.dtype : null;
}

/** A gradient that its kernel wrote as the GEMMs read it, contiguous in `read`, with its column sums (the bias gradient). */
function gradientWithSums(g: Tensor, column_sums: Tensor, read: DType, needsBias: boolean): { gr: Tensor; db: Tensor | null; owned: boolean } {
  if (g.dtype !== read || !g.is_contiguous()) {
    throw new Error(`linear backward: a gradient given with its column sums must be contiguous ${read}, got ${g.dtype} ${formatShape(g.shape)}`);
  }
  if (needsBias) return { gr: g, db: column_sums, owned: false };
  column_sums.dispose();
  return { gr: g, db: null, owned: false };
}

/**
 * The gradient at a linear layer's product (g, or g * GELU'(pre)) contiguous in `read`, as its GEMMs read it
 * (`owned`: made here, for the caller to dispose), and when `needsBias` the bias gradient: the column sums of that
 * gradient in float32, not of its 16-bit copy. Under autocast on CUDA one kernel reads g once for all of it, or the
 * kernel that wrote g wrote them too (amp/lowp_copy.ts).
 */
function productGradAndBiasGrad(g: Tensor, pre: Tensor | null, read: DType, cols: number, needsBias: boolean): { gr: Tensor; db: Tensor | null; owned: boolean } {
  const rows = g.numel() / cols;
  const written = pre === null ? lowpCopyOf(g, read) : null;
  if (written?.is_contiguous()) {
    const db = needsBias ? takeColumnSums(g) : null;
    if (db !== null || !needsBias) return { gr: written, db, owned: false };
  }
  if (g.device.type === "cuda" && read !== float32) {
    // float32, or a 16-bit gradient as it is (linear_gelu's under autocast)
    const gIn = g.dtype !== float32 && g.is_contiguous() ? g : contiguousAs(g, float32);
    const gr = Tensor.empty(g.shape, read, g.device);
    const sums = Tensor.empty([cols], float32, g.device);
    native.cuda.castColumnSums(rows, cols, gIn.buffer, gIn.offset, pre?.buffer ?? null, pre?.offset ?? 0,
      (pre ?? gIn).dtype.code, read.code, gr.buffer, sums.buffer, gIn.dtype.code);
    if (gIn !== g) gIn.dispose();
    if (needsBias) return { gr, db: sums, owned: true };
    sums.dispose();
    return { gr, db: null, owned: true };
  }
  const dh = pre ? rawUnaryGrad(UnaryGradOp.GeluErf, pre, g) : g;
  const gr = contiguousAs(dh, read);
  let db: Tensor | null = null;
  if (needsBias) {
    const gf = gr.dtype === float32 ? gr : contiguousAs(dh, float32);
    const gf2d = gf._view([rows, cols], [cols, 1], gf.offset);
    db = gf2d.sum(0);
    gf2d.dispose();
    if (gf !== dh && gf !== gr) gf.dispose();
  }
  if (dh !== g && dh !== gr) dh.dispose();
  return { gr, db, owned: gr !== g };
}
