// torch.nn.functional: softmax, layer_norm, embedding, dropout and the losses, each a fused native forward with
// its own backward (tested against the composed version and by finite differences).
import { Tensor } from "../tensor/tensor.js";
import { catchUpRows } from "./deferred_rows.js";
import { keepRowFlags, rowFlagsMemory } from "./row_flags.js";
import { bool, float32, int64, type DType } from "../tensor/dtype.js";
import { backendFor, checkSameDevice } from "../backend/kernels.js";
import { native, type Kernels } from "../backend/native.js";
import { attachLowpCopy, gradientDtypeOf } from "../amp/lowp_copy.js";
import { emptyLowpCopy } from "./lowp_output.js";
import { normDim, numelOf, sameShape, formatShape } from "../tensor/shape.js";
import { convertContiguous, zeros } from "../tensor/creation.js";
import { record } from "./record.js";
import { no_grad } from "../autograd/grad_mode.js";
import { default_generator, type Generator } from "./random.js";
import { add, mul, relu, abs, neg, softplus, sigmoid, sub } from "./elementwise.js";
import { mean, sum, sumToShape } from "./reduce.js";
import { f32, release, restoreDtype } from "./float32_operands.js";

// ---- softmax

function softmaxImpl(x: Tensor, dim: number, log: boolean): Tensor {
  if (!x.dtype.is_floating_point) throw new TypeError(`${log ? "log_softmax" : "softmax"}: expected a floating point tensor, got ${x.dtype}`);
  const d = normDim(dim, x.ndim);
  if (x.ndim > 0 && d !== x.ndim - 1) {
    const moved = x.transpose(d, -1);
    const out = softmaxImpl(moved, -1, log);
    return out.transpose(d, -1);
  }
  const cols = x.ndim === 0 ? 1 : x.shape[x.ndim - 1];
  const rows = cols === 0 ? 0 : x.numel() / cols;
  const input = f32(x);
  const y = Tensor.empty(x.shape, float32, x.device);
  backendFor(y).softmaxForward(rows, cols, input.t.buffer, input.t.offset, y.buffer, 0, log);
  release(input);
  const out = restoreDtype(y, x.dtype);
  return record(out, log ? "LogSoftmax" : "Softmax", [x], (g) => {
    const gy = f32(g);
    const yy = f32(out);
    const dx = Tensor.empty(x.shape, float32, x.device);
    backendFor(dx).softmaxBackward(rows, cols, yy.t.buffer, yy.t.offset, gy.t.buffer, gy.t.offset, dx.buffer, 0, log);
    release(gy);
    release(yy);
    return [restoreDtype(dx, g.dtype)];
  }, [out]);
}

export function softmax(x: Tensor, dim: number): Tensor {
  return softmaxImpl(x, dim, false);
}

export function log_softmax(x: Tensor, dim: number): Tensor {
  return softmaxImpl(x, dim, true);
}

/** softmax(scores * scale + mask) over the last dim of attention scores [B, H, S, T]; mask is additive [B, T]. */
export function masked_softmax(scores: Tensor, mask: Tensor | null, scale: number): Tensor {
  if (scores.ndim !== 4) throw new Error(`masked_softmax: expected scores [B, H, S, T], got ${formatShape(scores.shape)}`);
  const [B, H, S, T] = scores.shape;
  if (mask && (mask.numel() !== B * T)) throw new Error(`masked_softmax: mask must hold [${B}, ${T}] values, got ${formatShape(mask.shape)}`);
  if (mask?.requires_grad) throw new Error("masked_softmax: the attention mask cannot require grad");
  const s = f32(scores);
  const m = mask ? f32(mask) : null;
  const y = Tensor.empty(scores.shape, float32, scores.device);
  backendFor(y).maskedSoftmaxForward(B, H, S, T, s.t.buffer, s.t.offset, scale, m ? m.t.buffer : null, m ? m.t.offset : 0, y.buffer, 0);
  release(s);
  if (m) release(m);
  const out = restoreDtype(y, scores.dtype);
  return record(out, "MaskedSoftmax", [scores], (g) => {
    const gy = f32(g);
    const yy = f32(out);
    const dx = Tensor.empty(scores.shape, float32, scores.device);
    const rows = B * H * S;
    backendFor(dx).softmaxBackward(rows, T, yy.t.buffer, yy.t.offset, gy.t.buffer, gy.t.offset, dx.buffer, 0, false);
    release(gy);
    release(yy);
    if (scale !== 1) backendFor(dx).scaleMany([dx.buffer], [0], [dx.numel()], scale);
    return [restoreDtype(dx, g.dtype)];
  }, [out]);
}

// ---- layer norm

export function layer_norm(x: Tensor, normalized_shape: readonly number[], weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  return layerNormNode(x, normalized_shape, weight, bias, eps, null);
}

/**
 * The dropout of dropout_add_layer_norm: the layer norm's input is dropout(x) + residual, with this mask and scale.
 * With `draw` that input and the mask are still to be written, by the layer norm's own kernel. With
 * `gradientDtype` the backward of x's op reads x's gradient in that 16-bit dtype, with its column sums, which the
 * backward's kernel writes beside it where it can (amp/lowp_copy.ts).
 */
interface DropoutBranch {
  x: Tensor;
  residual: Tensor;
  mask: Tensor;
  scale: number;
  draw: { seed: number; offset: number; p: number } | null;
  gradientDtype: DType | null;
}

/**
 * layer_norm's graph node. With `branch` (CUDA only) x is dropout_add's float32 result, which the node owns, the
 * node's inputs are the branch's x and residual, and its backward's kernel also writes dropout's backward for x.
 */
function layerNormNode(x: Tensor, normalized_shape: readonly number[], weight: Tensor | null, bias: Tensor | null, eps: number,
  branch: DropoutBranch | null): Tensor {
  checkSameDevice(x, weight, bias);
  const k = normalized_shape.length;
  if (!sameShape(x.shape.slice(x.ndim - k), normalized_shape)) {
    throw new Error(`Given normalized_shape=${formatShape(normalized_shape)}, expected input with shape [*, ${normalized_shape.join(", ")}], but got input of size ${formatShape(x.shape)}`);
  }
  for (const [name, p] of [["weight", weight], ["bias", bias]] as const) {
    if (p && !sameShape(p.shape, normalized_shape)) throw new Error(`layer_norm: ${name} of shape ${formatShape(p.shape)} does not match normalized_shape ${formatShape(normalized_shape)}`);
  }
  const cols = numelOf(normalized_shape);
  const rows = cols === 0 ? 0 : x.numel() / cols;
  const input = f32(x);
  const w = weight ? f32(weight) : null;
  const b = bias ? f32(bias) : null;
  const y = Tensor.empty(x.shape, float32, x.device);
  const meanT = Tensor.empty([rows], float32, x.device);
  const rstd = Tensor.empty([rows], float32, x.device);
  // the kernels' arguments from w on: w, wOff, b, bOff, eps, y, yOff, mean, rstd
  const normArgs = [w ? w.t.buffer : null, w ? w.t.offset : 0, b ? b.t.buffer : null, b ? b.t.offset : 0, eps, y.buffer, 0,
    meanT.buffer, rstd.buffer] as const;
  const args = [rows, cols, input.t.buffer, input.t.offset, ...normArgs] as const;
  // y is the layer's result only when x is float32 (else it is rounded to x's dtype)
  const copy = x.dtype === float32 ? emptyLowpCopy(y) : null;
  const draw = branch?.draw;
  if (draw) {
    const { x: dropped, residual, mask } = branch!;
    native.cuda.dropoutAddLayerNorm(rows, cols, draw.seed, draw.offset, draw.p, dropped.buffer, dropped.offset, residual.buffer,
      residual.offset, x.buffer, mask.buffer, ...normArgs, copy?.dtype.code, copy?.buffer);
  } else if (copy) {
    native.cuda.layerNormForward(...args, copy.dtype.code, copy.buffer);
  } else {
    backendFor(y).layerNormForward(...args);
  }
  if (w) release(w);
  if (b) release(b);
  const saved = input.owned ? input.t : x;
  const out = restoreDtype(y, x.dtype);
  if (copy) attachLowpCopy(out, copy);
  const needs = { w: weight?.requires_grad ?? false, b: bias?.requires_grad ?? false };
  const inputs = branch ? [branch.x, branch.residual, weight, bias] : [x, weight, bias];
  const result = record(out, branch ? "DropoutAddLayerNorm" : "NativeLayerNorm", inputs, (g) => {
    const gy = f32(g);
    const xs = f32(saved);
    const wf = weight ? f32(weight.detach()) : null;
    const dx = Tensor.empty(x.shape, float32, x.device);
    const dw = needs.w ? Tensor.empty([...normalized_shape], float32, x.device) : null;
    const db = needs.b ? Tensor.empty([...normalized_shape], float32, x.device) : null;
    const backwardArgs = [rows, cols, xs.t.buffer, xs.t.offset, gy.t.buffer, gy.t.offset, wf ? wf.t.buffer : null,
      wf ? wf.t.offset : 0, meanT.buffer, rstd.buffer, dx.buffer, 0, dw ? dw.buffer : null, db ? db.buffer : null] as const;
    const dropped = branch?.x.requires_grad ? Tensor.empty(x.shape, float32, x.device) : null;
    if (branch) layerNormBackwardDropped(backwardArgs, branch, dropped);
    else backendFor(dx).layerNormBackward(...backwardArgs);
    release(gy);
    release(xs);
    if (wf) release(wf);
    if (!branch) return [restoreDtype(dx, x.dtype), dw, db];
    if (branch.residual.requires_grad) return [dropped, dx, dw, db];
    dx.dispose();
    return [dropped, null, dw, db];
  }, [saved, meanT, rstd, ...(branch ? [branch.mask] : []), ...(weight ? [weight] : [])]);
  if (!result.requires_grad) {
    meanT.dispose();
    rstd.dispose();
    if (input.owned) input.t.dispose();
    if (branch) {
      branch.mask.dispose();
      x.dispose();
    }
  }
  return result;
}

/**
 * dropout_add_layer_norm's backward kernel, which also writes `dropped` (x's gradient, where x needs one) and, where
 * x's op asked (DropoutBranch.gradientDtype) and the kernel can, its 16-bit copy and column sums, attached to it.
 */
function layerNormBackwardDropped(args: Readonly<Parameters<Kernels["layerNormBackward"]>>, branch: DropoutBranch,
  dropped: Tensor | null): void {
  const dtype = dropped && branch.gradientDtype;
  if (!dropped || !dtype) {
    native.cuda.layerNormBackward(...args, dropped && branch.mask.buffer, branch.scale, dropped?.buffer);
    return;
  }
  const cols = dropped.shape[dropped.ndim - 1]!;
  const copy = Tensor.empty(dropped.shape, dtype, dropped.device);
  const sums = Tensor.empty([cols], float32, dropped.device);
  if (native.cuda.layerNormBackward(...args, branch.mask.buffer, branch.scale, dropped.buffer, dtype.code, copy.buffer, sums.buffer)) {
    attachLowpCopy(dropped, copy, sums);
  } else {
    copy.dispose();
    sums.dispose();
  }
}

// ---- embedding

/** `ids` as embedding's kernels read them (int64, contiguous), after the argument checks; `weight`'s rows it names made current. */
function embeddingIds(ids: Tensor, weight: Tensor): Tensor {
  checkSameDevice(ids, weight);
  if (ids.dtype.is_floating_point || ids.dtype === bool) {
    throw new TypeError(`Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got ${ids.dtype} instead (while checking arguments for embedding)`);
  }
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be 2-D [num_embeddings, embedding_dim], got ${formatShape(weight.shape)}`);
  const idx = ids.dtype === int64 && ids.is_contiguous() ? ids : convertContiguous(ids, int64);
  catchUpRows(weight, idx);
  return idx;
}

/**
 * The gradient of `weight` from the gradient `g` of its lookup by `idx` (embeddingIds'): g's rows added into a zero
 * table in token order, except padding_idx's. The ids are checked again only if written since the forward.
 */
function embeddingGradient(g: Tensor, idx: Tensor, idsVersion: number, weight: Tensor, padding_idx: number | null): Tensor {
  const [V, D] = weight.shape;
  const pad = padding_idx === null ? -1 : padding_idx < 0 ? padding_idx + V : padding_idx;
  const gy = f32(g);
  const dtable = zeros([V, D], { device: weight.device });
  // on CUDA the kernel also flags the rows it gives values, for the clipping and AdamW (ops/row_flags.ts)
  const flags = dtable.device.type === "cuda" && weight.dtype === float32 ? rowFlagsMemory(V, dtable.device) : null;
  try {
    backendFor(dtable).embeddingBackward(idx.numel(), idx.buffer, idx.offset, V, D, gy.t.buffer, gy.t.offset, dtable.buffer, pad,
      idx.storage.version === idsVersion, flags?.buffer ?? null);
  } catch (e) {
    flags?.release();
    throw e;
  }
  if (flags !== null) keepRowFlags(dtable, flags);
  release(gy);
  return restoreDtype(dtable, weight.dtype);
}

export function embedding(ids: Tensor, weight: Tensor, padding_idx: number | null = null): Tensor {
  const idx = embeddingIds(ids, weight);
  const [V, D] = weight.shape;
  const w = f32(weight);
  const out = Tensor.empty([...ids.shape, D], float32, weight.device);
  try {
    backendFor(out).embeddingForward(ids.numel(), idx.buffer, idx.offset, V, D, w.t.buffer, w.t.offset, out.buffer, 0);
  } finally {
    release(w);
  }
  const idsVersion = idx.storage.version;
  return record(restoreDtype(out, weight.dtype), "Embedding", [weight],
    (g) => [embeddingGradient(g, idx, idsVersion, weight, padding_idx)], [idx]);
}

/**
 * add(add(embedding(ids[0], weights[0], padding[0]), embedding(ids[1], ...)), embedding(ids[2], ...)): BERT's word,
 * token type and position embeddings summed (not a PyTorch API). Each ids tensor is [B, S] or [1, S] (broadcast
 * over the batch). On CUDA, with float32 tables of one width, one kernel does the three lookups and both additions
 * (the composition's bits; the ids checked as embedding checks them), where the composition launches five kernels
 * and three checks; elsewhere it is the composition. The gradients are the composition's: a [1, S] lookup's summed
 * over the batch first.
 */
export function embedding_sum(ids: readonly [Tensor, Tensor, Tensor], weights: readonly [Tensor, Tensor, Tensor],
  padding_idx: readonly [number | null, number | null, number | null]): Tensor {
  const batch = Math.max(...ids.map((t) => t.shape[0] ?? 1));
  const seq = ids[0].shape[1];
  const D = weights[0].shape[1];
  const fused = weights[0].device.type === "cuda" && seq! > 0 &&
    ids.every((t) => t.ndim === 2 && t.shape[1] === seq && (t.shape[0] === batch || t.shape[0] === 1)) &&
    weights.every((w) => w.ndim === 2 && w.dtype === float32 && w.shape[1] === D && w.is_contiguous());
  if (!fused) {
    const looked = ids.map((t, k) => embedding(t, weights[k]!, padding_idx[k]!));
    return add(add(looked[0]!, looked[1]!), looked[2]!);
  }
  const idx = ids.map((t, k) => embeddingIds(t, weights[k]!));
  const out = Tensor.empty([batch, seq!, D!], float32, weights[0].device);
  const table = (k: number) => {
    const t = idx[k]!, w = weights[k]!;
    return [t.buffer, t.offset, t.shape[0] === batch ? seq! : 0, w.shape[0]!, w.buffer, w.offset] as const;
  };
  native.cuda.embeddingSum(batch * seq!, seq!, D!, out.buffer, 0, ...table(0), ...table(1), ...table(2));
  const versions = idx.map((t) => t.storage.version);
  return record(out, "EmbeddingSum", [...weights], (g) => weights.map((w, k) => {
    if (!w.requires_grad) return null;
    return embeddingGradient(sumToShape(g, [...ids[k]!.shape, D!]), idx[k]!, versions[k]!, w, padding_idx[k]!);
  }), idx);
}

// ---- dropout

function checkDropoutP(p: number): void {
  if (p < 0 || p > 1) throw new RangeError(`dropout probability has to be between 0 and 1, but got ${p}`);
}

/** dropout's kernel, or with a residual dropoutAdd's (same draws): the float32 output and the mask. */
function dropoutForward(x: Tensor, residual: Tensor | null, p: number, generator: Generator): { y: Tensor; mask: Tensor } {
  const input = f32(x);
  const res = residual ? f32(residual) : null;
  const n = x.numel();
  const y = Tensor.empty(x.shape, float32, x.device);
  const mask = Tensor.empty(x.shape, bool, x.device);
  const { seed, offset } = generator.draw(n);
  if (res) {
    backendFor(y).dropoutAdd(n, seed, offset, p, input.t.buffer, input.t.offset, res.t.buffer, res.t.offset, y.buffer, 0, mask.buffer);
    release(res);
  } else {
    // Under autocast the next product (BERT's first layer, its classifier) reads y's 16-bit copy
    const copy = x.dtype === float32 ? emptyLowpCopy(y) : null;
    if (copy) {
      native.cuda.dropout(n, seed, offset, p, input.t.buffer, input.t.offset, y.buffer, 0, mask.buffer, copy.dtype.code, copy.buffer);
      attachLowpCopy(y, copy);
    } else {
      backendFor(y).dropout(n, seed, offset, p, input.t.buffer, input.t.offset, y.buffer, 0, mask.buffer);
    }
  }
  release(input);
  return { y, mask };
}

/** dx = mask ? g * scale : 0 in one kernel: the composition where(mask, mul(g, scale), 0) to the bit. */
function dropoutBackward(g: Tensor, mask: Tensor, scale: number): Tensor {
  const gy = f32(g);
  const dx = Tensor.empty(g.shape, float32, g.device);
  backendFor(dx).dropoutBackward(g.numel(), scale, gy.t.buffer, gy.t.offset, mask.buffer, dx.buffer, 0);
  release(gy);
  return restoreDtype(dx, g.dtype);
}

export function dropout(x: Tensor, p = 0.5, training = true, generator: Generator = default_generator): Tensor {
  checkDropoutP(p);
  if (!training || p === 0) return x;
  if (p === 1) return mul(x, 0);
  const { y, mask } = dropoutForward(x, null, p, generator);
  const scale = 1 / (1 - p);
  const out = record(restoreDtype(y, x.dtype), "NativeDropout", [x], (g) => [dropoutBackward(g, mask, scale)], [mask]);
  if (!out.requires_grad) mask.dispose();
  return out;
}

/**
 * add(dropout(x, p, training, generator), residual) in one kernel (BERT's residual connections; not a PyTorch
 * API): the same draws, so the same mask and bits as the composition, which it falls back to unless x and
 * residual are float32 of one shape. The residual's gradient is the incoming one itself.
 */
export function dropout_add(x: Tensor, residual: Tensor, p = 0.5, training = true,
  generator: Generator = default_generator): Tensor {
  checkDropoutP(p);
  if (!training || p === 0 || p === 1 || x.dtype !== float32 || residual.dtype !== float32 || !sameShape(x.shape, residual.shape)) {
    return add(dropout(x, p, training, generator), residual);
  }
  checkSameDevice(x, residual);
  const { y, mask } = dropoutForward(x, residual, p, generator);
  const scale = 1 / (1 - p);
  const out = record(y, "DropoutAdd", [x, residual], (g) => [
    x.requires_grad ? dropoutBackward(g, mask, scale) : null,
    residual.requires_grad ? g : null,
  ], [mask]);
  if (!out.requires_grad) mask.dispose();
  return out;
}

/**
 * layer_norm(dropout_add(x, residual, p, training, generator), normalized_shape, weight, bias, eps) (BERT's
 * residual connections; not a PyTorch API): the same draws and bits as the composition, which it is except on
 * CUDA, where one graph node holds both and its backward's layer-norm kernel also writes dropout's backward,
 * instead of a dropout_backward launch reading and writing the whole gradient again.
 */
export function dropout_add_layer_norm(x: Tensor, residual: Tensor, p: number, training: boolean, normalized_shape: readonly number[],
  weight: Tensor | null, bias: Tensor | null, eps: number, generator: Generator = default_generator): Tensor {
  checkDropoutP(p);
  if (x.device.type !== "cuda" || !training || p === 0 || p === 1 || x.dtype !== float32 || residual.dtype !== float32 ||
    !sameShape(x.shape, residual.shape)) {
    return layer_norm(dropout_add(x, residual, p, training, generator), normalized_shape, weight, bias, eps);
  }
  checkSameDevice(x, residual);
  const scale = 1 / (1 - p);
  // Rows a warp takes: one kernel draws the dropout and normalises; longer ones take dropout_add's kernel first.
  const fused = numelOf(normalized_shape) <= 1024 && x.is_contiguous() && residual.is_contiguous();
  let input: Tensor, mask: Tensor;
  let draw: DropoutBranch["draw"] = null;
  if (fused) {
    input = Tensor.empty(x.shape, float32, x.device);
    mask = Tensor.empty(x.shape, bool, x.device);
    draw = { ...generator.draw(x.numel()), p };
  } else {
    ({ y: input, mask } = dropoutForward(x, residual, p, generator));
  }
  try {
    return layerNormNode(input, normalized_shape, weight, bias, eps, { x, residual, mask, scale, draw, gradientDtype: gradientDtypeOf(x) });
  } catch (e) {
    input.dispose();
    mask.dispose();
    throw e;
  }
}

// ---- losses

export type Reduction = "mean" | "sum" | "none";

function reduce(loss: Tensor, reduction: Reduction): Tensor {
  if (reduction === "none") return loss;
  if (reduction === "sum") return sum(loss);
  if (reduction === "mean") return mean(loss);
  throw new Error(`${reduction} is not a valid value for reduction`);
}

export interface CrossEntropyOptions {
  ignore_index?: number;
  reduction?: Reduction;
  label_smoothing?: number;
}

/** Cross-entropy of logits [N, C] (or [C]) against class indices [N]; mean over the targets not ignored. */
export function cross_entropy(input: Tensor, target: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = options.ignore_index ?? -100;
  const reduction = options.reduction ?? "mean";
  if ((options.label_smoothing ?? 0) !== 0) throw new Error("cross_entropy: label_smoothing is not supported yet");
  if (target.dtype.is_floating_point) throw new Error("cross_entropy: class-probability targets are not supported; pass class indices (int64)");
  checkSameDevice(input, target);
  const logits2d = input.ndim === 1 ? input.unsqueeze(0) : input;
  const tgt = input.ndim === 1 ? target.reshape([1]) : target;
  if (logits2d.ndim !== 2) throw new Error(`cross_entropy: expected input [N, C] or [C], got ${formatShape(input.shape)}`);
  const [N, C] = logits2d.shape;
  if (tgt.ndim !== 1 || tgt.shape[0] !== N) {
    throw new Error(`Expected input batch_size (${N}) to match target batch_size (${tgt.numel()}).`);
  }
  const logits = f32(logits2d);
  const t = tgt.dtype === int64 && tgt.is_contiguous() ? tgt : convertContiguous(tgt, int64);
  const losses = Tensor.empty([N], float32, input.device);
  const lse = Tensor.empty([N], float32, input.device);
  backendFor(losses).crossEntropyForward(N, C, logits.t.buffer, logits.t.offset, t.buffer, t.offset, ignoreIndex, losses.buffer, lse.buffer);
  let inverse: number | Tensor = 1;
  let out: Tensor = losses;
  if (reduction === "mean" && input.device.type === "cuda") {
    out = Tensor.empty([], float32, input.device);
    inverse = Tensor.empty([], float32, input.device);
    native.cuda.crossEntropyMean(N, losses.buffer, t.buffer, t.offset, ignoreIndex, out.buffer, inverse.buffer);
    losses.dispose();
  } else if (reduction !== "none") {
    if (reduction === "mean") inverse = inverseCount(t, ignoreIndex);
    out = sum(losses);
    losses.dispose();
    if (reduction === "mean") {
      const total = out;
      out = mul(total, inverse);
      total.dispose();
    }
  } else if (input.ndim === 1) {
    out = losses.reshape([]);
  }
  const targetsVersion = t.storage.version;
  const result = record(out, "NllLoss", [logits2d], (g) => {
    const perRow = rowGrads(g, N, reduction, inverse);
    const dlogits = Tensor.empty([N, C], float32, input.device);
    backendFor(dlogits).crossEntropyBackward(N, C, logits.t.buffer, logits.t.offset, t.buffer, t.offset, ignoreIndex, lse.buffer, perRow.buffer, dlogits.buffer,
      t.storage.version === targetsVersion);
    perRow.dispose();
    return [restoreDtype(dlogits, input.dtype)];
  }, typeof inverse === "number" ? [logits.t, t, lse] : [logits.t, t, lse, inverse]);
  if (!result.requires_grad) {
    release(logits);
    lse.dispose();
    if (t !== tgt) t.dispose();
    if (typeof inverse !== "number") inverse.dispose();
  }
  return result;
}

/**
 * 1 / the number of the CPU targets `t` that are not ignore_index: the mean's factor. On a GPU crossEntropyMean
 * counts them there, because reading the targets back would wait for the GPU at every step and could not be
 * captured in a CUDA graph.
 */
function inverseCount(t: Tensor, ignoreIndex: number): number {
  return 1 / (t.tolist() as number[]).filter((v) => v !== ignoreIndex).length;
}

/** Each row's loss gradient, computed on g's device: reading g back to the host would wait for a GPU. */
function rowGrads(g: Tensor, N: number, reduction: Reduction, inverse: number | Tensor): Tensor {
  if (reduction === "none") return convertContiguous(g.reshape([N]), float32);
  const scaled = reduction === "mean" ? mul(g, inverse) : g;
  const perRow = convertContiguous(scaled.reshape([1]).expand([N]), float32);
  if (scaled !== g) scaled.dispose();
  return perRow;
}

export function mse_loss(input: Tensor, target: Tensor, options: { reduction?: Reduction } = {}): Tensor {
  if (!sameShape(input.shape, target.shape)) {
    process.emitWarning(`Using a target size (${formatShape(target.shape)}) that is different to the input size (${formatShape(input.shape)}). This will likely lead to incorrect results due to broadcasting. Please ensure they have the same size.`);
  }
  const diff = sub(input, target);
  return reduce(mul(diff, diff), options.reduction ?? "mean");
}

export function binary_cross_entropy_with_logits(input: Tensor, target: Tensor, options: { reduction?: Reduction; pos_weight?: Tensor; weight?: Tensor } = {}): Tensor {
  if (!sameShape(input.shape, target.shape)) {
    throw new Error(`Target size (${formatShape(target.shape)}) must be the same as input size (${formatShape(input.shape)})`);
  }
  const reduction = options.reduction ?? "mean";
  const { pos_weight: posWeight, weight } = options;
  const x = input.detach();
  const y = target.detach().to(input.dtype);
  // The stable forms: max(x, 0) - x*y + log(1 + exp(-|x|)); with pos_weight p, L = 1 + (p - 1) y:
  // (1 - y) x + L log(1 + exp(-x)). Its derivative is L sigmoid(x) - p y (sigmoid(x) - y without p).
  const value = no_grad(() => {
    const posFactor = posWeight ? add(mul(sub(posWeight, 1), y), 1) : null;
    let loss = posFactor
      ? add(mul(sub(1, y), x), mul(posFactor, softplus(neg(x))))
      : add(sub(relu(x), mul(x, y)), softplus(neg(abs(x))));
    if (weight) loss = mul(loss, weight);
    return reduce(loss, reduction);
  });
  const n = input.numel();
  return record(value, "BinaryCrossEntropyWithLogits", [input], (g) => {
    const s = sigmoid(x);
    let dx = posWeight ? sub(mul(s, add(mul(sub(posWeight, 1), y), 1)), mul(posWeight, y)) : sub(s, y);
    if (weight) dx = mul(dx, weight);
    return [mul(mul(dx, reduction === "none" ? g : g.reshape([])), reduction === "mean" ? 1 / n : 1)];
  }, [x, y, ...(posWeight ? [posWeight] : []), ...(weight ? [weight] : [])]);
}
