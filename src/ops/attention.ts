// torch.nn.functional.scaled_dot_product_attention. On CUDA one fused kernel family (native/cuda/kernels/attention.cc)
// computes it without an S x T matrix and saves q, k, v, the output (all four in 16 bits under autocast) and each
// row's logsumexp for the backward; the output and the gradients of q, k, v are stored as [B, S, H, D], the layout
// of the projections they come from and go to, and packed_qkv_attention takes the three projections as one tensor.
// Elsewhere, and for head dims the kernels do not take, it is the composite of matmul, masked_softmax, dropout and
// matmul: for BERT's key-padding mask these are the ops BERT ran before the fused kernel existed, so its numbers,
// dropout masks included, are unchanged. Both paths draw dropout from the default generator in the same order.
import { Tensor } from "../tensor/tensor.js";
import { bool, float32, type DType } from "../tensor/dtype.js";
import type { Device } from "../tensor/device.js";
import { checkSameDevice } from "../backend/kernels.js";
import { native } from "../backend/native.js";
import { broadcastStrides, formatShape } from "../tensor/shape.js";
import { arange, convertContiguous, zeros } from "../tensor/creation.js";
import { record } from "./record.js";
import { autocast, autocastOperandDtype, is_autocast_enabled } from "../amp/autocast_mode.js";
import { lowpCopyDtype } from "./lowp_output.js";
import { attachLowpCopy } from "../amp/lowp_copy.js";
import { default_generator } from "./random.js";
import { ge, logical_not, masked_fill } from "./elementwise.js";
import { matmul, packed_linear, packedProduct } from "./matmul.js";
import { dropout, masked_softmax } from "./functional.js";
import { f32, release, restoreDtype } from "./float32_operands.js";
import { TimedChoices, type TimedChoice } from "./timed_choice.js";

export interface ScaledDotProductAttentionOptions {
  /** additive (float) or which keys each query attends (bool, true = attend); broadcastable to [B, H, S, T] */
  attn_mask?: Tensor | null;
  dropout_p?: number;
  /** query s attends keys t <= s (torch's tril mask); not with attn_mask */
  is_causal?: boolean;
  /** default 1 / sqrt(D) */
  scale?: number | null;
}

/** The fused kernels' limit on the head dim (FT_ATTN_MAX_D). */
const FUSED_MAX_HEAD_DIM = 128;

/**
 * softmax(query @ key^T * scale + attn_mask) @ value for query [B, H, S, D], key [B, H, T, D], value [B, H, T, Dv],
 * with dropout_p dropout on the probabilities. A query row whose logits are all -inf (every key masked) attends
 * uniformly, as masked_softmax makes such rows.
 */
export function scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, options: ScaledDotProductAttentionOptions = {}): Tensor {
  const { mask, p, causal, scale } = checkArguments(query, key, value, options);
  const [, , S, D] = query.shape;
  const T = key.shape[2];
  if (fusedApplies(query, D) && value.shape[3] === D) return fusedAttention(query, key, value, additive(mask), causal, scale, p);
  // Under autocast the fused kernels read q, k and v rounded to its 16-bit dtype (and compute in float32); the
  // composite computes in float32, on the float32 operands (the CPU's products read float32 under autocast too).
  const composite = () => compositeAttention(query, key, value, additive(causal ? causalMask(S, T, query.device) : mask), scale, p);
  return is_autocast_enabled(query.device.type) ? autocast(query.device.type, { enabled: false }, composite) : composite();
}

/** Whether the fused kernels take `x`'s device and a head dim of D. */
function fusedApplies(x: Tensor, D: number): boolean {
  return x.device.type === "cuda" && D >= 1 && D <= FUSED_MAX_HEAD_DIM;
}

/** Whether packed_qkv_attention takes a projection `x` (as its device and dtype) with heads of `headDim`. */
export function packedAttentionApplies(x: Tensor, headDim: number): boolean {
  return x.dtype === float32 && fusedApplies(x, headDim);
}

/**
 * scaled_dot_product_attention of the heads of one packed projection qkv [B, S, 3 * H * D]: query, key and value
 * side by side in the last dim, each [B, S, H * D] split into H heads, as one linear layer over BERT's three
 * concatenated weights computes them. The fused kernels read q, k and v as views of qkv, and the backward writes
 * their gradients into one tensor, qkv's gradient, where slicing qkv would make autograd scatter three gradients
 * into zeros and add them. Only where packedAttentionApplies; returns [B, H, S, D] as scaled_dot_product_attention.
 * With `queries` below S only the first `queries` tokens' queries attend (every token's keys and values): [B, H,
 * queries, D], as the attention of qkv's first `queries` rows of queries would give, the other queries' gradient 0.
 */
export function packed_qkv_attention(qkv: Tensor, heads: number, options: ScaledDotProductAttentionOptions = {},
  queries: number = qkv.shape[1] ?? 0): Tensor {
  const D = qkv.shape[2] / (3 * heads);
  if (qkv.ndim !== 3 || !Number.isInteger(D) || !qkv.is_contiguous() || !packedAttentionApplies(qkv, D)) {
    throw new Error(`packed_qkv_attention: expected a contiguous float32 CUDA tensor [B, S, 3 * ${heads} * D] with D <= ${FUSED_MAX_HEAD_DIM}, got ${qkv.dtype} ${formatShape(qkv.shape)} on ${qkv.device}`);
  }
  checkQueries(queries, qkv.shape[1]!);
  const [q, k, v] = projectionViews(qkv, heads, D, queries);
  const { mask, p, causal, scale } = checkArguments(q, k, v, options);
  const out = fusedAttention(q, k, v, additive(mask), causal, scale, p, qkv);
  for (const x of [q, k, v]) if (x._savedCount === 0) x.dispose();
  return out;
}

/**
 * packed_qkv_attention(packed_linear(x, weights, biases), heads, options) as one graph node. Under autocast on CUDA
 * the projection is written in 16 bits, the only form the attention reads (PyTorch's autocast writes it so too),
 * instead of in float32 and then cast: half the product's writes and one launch fewer; the backward hands the
 * attention's gradient of the projection to the product's.
 */
export function packed_linear_attention(x: Tensor, weights: readonly Tensor[], biases: readonly Tensor[], heads: number,
  options: ScaledDotProductAttentionOptions = {}, queries: number = x.shape[1] ?? 0): Tensor {
  if (x.device.type !== "cuda" || !autocastOperandDtype(x, weights[0] ?? x)) {
    return packed_qkv_attention(packed_linear(x, weights, biases), heads, options, queries);
  }
  const width = weights.reduce((n, w) => n + w.shape[0]!, 0);
  const D = width / (3 * heads);
  if (x.ndim !== 3 || !Number.isInteger(D) || !fusedApplies(x, D)) {
    throw new Error(`packed_linear_attention: expected x [B, S, in] and weights giving 3 * ${heads} heads of D <= ${FUSED_MAX_HEAD_DIM}, got x ${formatShape(x.shape)} and ${width} output features`);
  }
  checkQueries(queries, x.shape[1]!);
  const product = packedProduct(x, weights, biases, true);
  const qkv = product.y;
  const [q, k, v] = projectionViews(qkv, heads, D, queries);
  const { mask, p, causal, scale } = checkArguments(q, k, v, options);
  const run = attentionForward(q, k, v, additive(mask), causal, scale, p, qkv);
  for (const view of [q, k, v]) view.dispose();
  qkv.dispose();
  const result = record(run.y, "ScaledDotProductFlashAttention", [x, ...weights, ...biases], (g, into) => {
    // the product reads the projection's gradient in 16 bits and sums its columns: where the attention's kernels
    // write both, it launches nothing to make them
    const { dqkv, sums } = run.lowpBackward ? run.lowpBackward(g) : { dqkv: run.backward(g)[0]!, sums: null };
    const grads = product.backward(dqkv, into, sums);
    dqkv.dispose();
    return grads;
  }, [...run.saved, ...product.saved]);
  if (!result.requires_grad) run.release();
  product.done(result.requires_grad);
  return result;
}

/** The packed attentions' `queries`: the first 1 to S tokens' queries attend (the result has that many rows). */
function checkQueries(queries: number, S: number): void {
  if (!Number.isInteger(queries) || queries < 1 || queries > S) {
    throw new RangeError(`packed attention: queries must be an integer from 1 to the ${S} tokens, got ${queries}`);
  }
}

/** The options of scaled_dot_product_attention(query, key, value), checked against the operands. */
function checkArguments(query: Tensor, key: Tensor, value: Tensor, options: ScaledDotProductAttentionOptions): { mask: Tensor | null; p: number; causal: boolean; scale: number } {
  const mask = options.attn_mask ?? null;
  const p = options.dropout_p ?? 0;
  const causal = options.is_causal ?? false;
  checkSameDevice(query, key, value, mask);
  for (const [name, t, dims] of [["query", query, "S, D"], ["key", key, "T, D"], ["value", value, "T, Dv"]] as const) {
    if (t.ndim !== 4) throw new Error(`scaled_dot_product_attention: expected ${name} of shape [B, H, ${dims}], got ${formatShape(t.shape)}`);
    if (!t.dtype.is_floating_point) throw new TypeError(`scaled_dot_product_attention: expected a floating point ${name}, got ${t.dtype}`);
  }
  if (key.dtype !== query.dtype || value.dtype !== query.dtype) {
    throw new TypeError(`Expected query, key, and value to have the same dtype, but got query.dtype: ${query.dtype} key.dtype: ${key.dtype} and value.dtype: ${value.dtype} instead.`);
  }
  const [B, H, S, D] = query.shape;
  const T = key.shape[2];
  if (key.shape[0] !== B || key.shape[1] !== H || key.shape[3] !== D || value.shape[0] !== B || value.shape[1] !== H || value.shape[2] !== T) {
    throw new Error(`scaled_dot_product_attention: query ${formatShape(query.shape)}, key ${formatShape(key.shape)} and value ${formatShape(value.shape)} must be [B, H, S, D], [B, H, T, D] and [B, H, T, Dv]`);
  }
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout probability has to be between 0 and 1, but got ${p}`);
  if (causal && mask) throw new Error("_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True");
  const target = [B, H, S, T];
  if (mask) {
    if (mask.dtype !== bool && !mask.dtype.is_floating_point) throw new TypeError(`Expected attn_mask dtype to be bool or float, but got ${mask.dtype}`);
    if (mask.requires_grad) throw new Error("scaled_dot_product_attention: the attention mask cannot require grad");
    if (mask.ndim > 4 || mask.shape.some((n, i) => n !== 1 && n !== target[4 - mask.ndim + i])) {
      throw new Error(`scaled_dot_product_attention: attn_mask of shape ${formatShape(mask.shape)} does not broadcast to [B, H, S, T] = ${formatShape(target)}`);
    }
  }
  return { mask, p, causal, scale: options.scale ?? 1 / Math.sqrt(D) };
}

/** A bool mask (true = attend) as torch's math path makes it additive: 0 where attended, -inf elsewhere. */
function additive(mask: Tensor | null): Tensor | null {
  if (mask?.dtype !== bool) return mask;
  return masked_fill(zeros(mask.shape, { device: mask.device }), logical_not(mask), -Infinity);
}

function causalMask(S: number, T: number, device: Device): Tensor {
  return ge(arange(S, undefined, 1, { device }).reshape([S, 1]), arange(T, undefined, 1, { device }));
}

function compositeAttention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null, scale: number, p: number): Tensor {
  const [B, H, S] = q.shape;
  const T = k.shape[2];
  const scores = matmul(q, k.transpose(-1, -2));
  // masked_softmax adds one mask row per (batch, key): a key-padding mask is that as it is; any other mask gives
  // each (b, h, s) row its own, the scores seen as B*H*S batches of one row.
  const probs = mask === null || isKeyPadding(mask)
    ? masked_softmax(scores, mask && mask.expand([B, 1, 1, T]), scale)
    : masked_softmax(scores.reshape([B * H * S, 1, 1, T]), mask!.expand([B, H, S, T]), scale).reshape([B, H, S, T]);
  return matmul(dropout(probs, p), v);
}

/** Whether a mask broadcastable to [B, H, S, T] is the same for every head and query: [B or 1, 1, 1, T or 1]. */
function isKeyPadding(mask: Tensor): boolean {
  const lead = 4 - mask.ndim;
  return [1, 2].every((d) => d < lead || mask.shape[d - lead] === 1);
}

/** A float32 view whose rows the kernels read as arrays (unit stride in the last dim), copied only when needed. */
function rowsAsArrays(t: Tensor): { t: Tensor; owned: boolean } {
  if (t.dtype === float32 && t.strides[3] === 1) return { t, owned: false };
  return { t: convertContiguous(t, float32), owned: true };
}

/** An operand as the kernels read it; `owned`: a copy the caller releases (release()). */
type KernelOperand = ReturnType<typeof rowsAsArrays>;

interface KernelOperands {
  q: KernelOperand;
  k: KernelOperand;
  v: KernelOperand;
  /** the dtype q, k and v are stored in, which the backward reads out in too */
  dtype: DType;
}

/**
 * Query, key and value as the kernels read them: float32 views, or under autocast (`lowp`, a 16-bit dtype) copies
 * in it, as PyTorch's flash attention takes them. The backward then reads these copies and out's 16-bit copy, so
 * the float32 projections are not kept for it: half the memory. The copy of a packed projection is one cast.
 */
function kernelOperands(query: Tensor, key: Tensor, value: Tensor, packed: Tensor | null, lowp: DType | null): KernelOperands {
  if (!lowp) return { q: rowsAsArrays(query), k: rowsAsArrays(key), v: rowsAsArrays(value), dtype: float32 };
  if (packed) {
    // a 16-bit projection is read as it is (packed_linear_attention); the views are the kernels' own to release
    const copy = packed.dtype === lowp ? packed : convertContiguous(packed, lowp);
    const [q, k, v] = projectionViews(copy, query.shape[1]!, query.shape[3]!, query.shape[2]!).map((t) => ({ t, owned: true }));
    if (copy !== packed) copy.dispose();
    return { q: q!, k: k!, v: v!, dtype: lowp };
  }
  const cast = (t: Tensor) => ({ t: convertContiguous(t, lowp), owned: true });
  return { q: cast(query), k: cast(key), v: cast(value), dtype: lowp };
}

/** A view as the kernels take it: its buffer, element offset and strides. */
function viewArgs(t: Tensor): [ArrayBuffer, number, number[]] {
  return [t.buffer, t.offset, [...t.strides]];
}

/**
 * A new [B, H, S, D] tensor stored as [B, S, H, D], as PyTorch's flash attention lays out its output: the heads
 * merged back into [B, S, H * D] (what the next linear layer reads) are then a view of it, and a gradient in this
 * layout goes back through the heads' view of a [B, S, H * D] projection as a contiguous tensor.
 */
function headsInterleaved(B: number, H: number, S: number, D: number, device: Device, dtype: DType = float32): Tensor {
  const base = Tensor.empty([B, S, H * D], dtype, device);
  const view = headsView(base, H, D, 0);
  base.dispose();
  return view;
}

/**
 * Projection `i` of a contiguous [B, S, n * H * D] tensor (n projections side by side) as a [B, H, rows, D] view:
 * its first `rows` tokens (all S by default).
 */
function headsView(t: Tensor, H: number, D: number, i: number, rows: number = t.shape[1]!): Tensor {
  const [B, S, width] = t.shape;
  return t._view([B, H, rows, D], [S * width, D, width, 1], t.offset + i * H * D);
}

/** The query, key and value heads of a packed [B, S, 3 * H * D] tensor: the queries of its first `queries` tokens. */
function projectionViews(t: Tensor, H: number, D: number, queries: number): [Tensor, Tensor, Tensor] {
  return [headsView(t, H, D, 0, queries), headsView(t, H, D, 1), headsView(t, H, D, 2)];
}

const headChoices = new TimedChoices(0.95);

/**
 * Whether the forward or the backward (`pass`) of B * H heads of dim D with operands of `dtype` takes one kernel a
 * head (native.cuda.attentionHeads): where the kernels take them, by default ("auto") where timing that against the
 * kernels for blocks of 16 rows showed it at least 5% faster, per pass and size class of the probabilities
 * (B H S T; ops/timed_choice.ts). `trial(heads)` runs the pass either way: its results are assigned, so the real
 * run writes them again.
 */
function wholeHeads(pass: "forward" | "backward", dtype: DType, BH: number, S: number, T: number, D: number,
  trial: (heads: boolean) => void): boolean {
  const mode = native.cuda.attentionHeads();
  if (mode === "off" || !native.cuda.attentionHeadKernel(dtype.code, D, S, T)) return false;
  return mode === "on" || headChoices.choose(`${pass} d${D} ${dtype.name}`, BH * S * T, trial);
}

/** The whole-head kernels' choices timed so far, "pass, head dim and dtype @ size class": for tests and benchmarks. */
export function attentionHeadChoices(): Map<string, TimedChoice> {
  return headChoices.entries();
}

type SharedArgs = [number, number, number, number, number, ArrayBuffer, number, number[], ArrayBuffer, number, number[],
  ArrayBuffer, number, number[], ArrayBuffer | null, number, number[], boolean, number, number, number, number, number];

/** The fused kernels' forward, and its graph node: on query, key and value, or on `packed` where they are its views (packed_qkv_attention). */
function fusedAttention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | null, causal: boolean, scale: number, p: number, packed: Tensor | null = null): Tensor {
  const run = attentionForward(query, key, value, mask, causal, scale, p, packed);
  const result = record(run.y, "ScaledDotProductFlashAttention", packed ? [packed] : [query, key, value], run.backward, run.saved);
  if (!result.requires_grad) run.release();
  return result;
}

/** The fused kernels' forward without its graph node: the result, the node's backward and saved tensors, release(). */
interface AttentionRun {
  y: Tensor;
  /** [dqkv] where the operands are views of `packed`, else [dq, dk, dv] */
  backward: (g: Tensor) => Tensor[];
  /**
   * Where the operands are views of a 16-bit `packed` the kernels take so (attentionLowpGradients): its gradient in
   * that dtype, as PyTorch's flash attention writes it, and the float32 column sums of the gradient before rounding
   * (the packed projection's bias gradient), from the same launches. Else null.
   */
  lowpBackward: ((g: Tensor) => { dqkv: Tensor; sums: Tensor }) | null;
  saved: Tensor[];
  /** frees what only the backward would read (when no graph node saved it) */
  release: () => void;
}

function attentionForward(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | null, causal: boolean, scale: number, p: number, packed: Tensor | null): AttentionRun {
  const [B, H, S, D] = query.shape;
  const T = key.shape[2];
  // Under autocast the next product (BERT's output dense layer) reads the output in 16 bits: the kernel writes
  // that copy as well, which saves the product its cast, and the backward reads it.
  const lowpDtype = packed && packed.dtype !== float32 ? packed.dtype : lowpCopyDtype(query);
  const { q, k, v, dtype } = kernelOperands(query, key, value, packed, lowpDtype);
  const m = mask ? f32(mask) : null;
  // F.dropout draws B*H*S*T counters when 0 < p < 1 and none otherwise: the same here keeps both paths' streams in step
  const { seed, offset } = p > 0 && p < 1 ? default_generator.draw(B * H * S * T) : { seed: 0, offset: 0 };
  const shared: SharedArgs = [B, H, S, T, D, ...viewArgs(q.t), ...viewArgs(k.t), ...viewArgs(v.t), m ? m.t.buffer : null,
    m ? m.t.offset : 0, m ? broadcastStrides(m.t.shape, m.t.strides, [B, H, S, T]) : [0, 0, 0, 0], causal, scale, p, seed, offset,
    dtype.code];
  const out = headsInterleaved(B, H, S, D, query.device);
  const lse = Tensor.empty([B, H, S], float32, query.device);
  const lowp = lowpDtype && headsInterleaved(B, H, S, D, query.device, lowpDtype);
  const run = (heads: boolean) => native.cuda.attentionForward(...shared, ...viewArgs(out), lse.buffer,
    lowp ? lowp.buffer : null, lowp ? lowp.offset : 0, lowpDtype ? lowpDtype.code : 0, heads);
  run(wholeHeads("forward", dtype, B * H, S, T, D, run));
  if (lowp) attachLowpCopy(out, lowp);
  const saved = lowp ?? out;  // out as the backward reads it, in the operands' dtype
  // A 16-bit packed projection (packed_linear_attention) is autocast's: the result is float32, as under autocast
  const y = query.dtype === float32 || query.dtype === lowpDtype ? out : convertContiguous(out, query.dtype);
  /** The kernels' gradients from g into the views dq, dk, dv (16-bit, with their column sums, where `sums`). */
  const backwardInto = (g: Tensor, [dq, dk, dv]: Tensor[], sums: Tensor | null = null) => {
    const dout = rowsAsArrays(g);
    const run = (heads: boolean) => native.cuda.attentionBackward(...shared, ...viewArgs(saved), ...viewArgs(dout.t),
      lse.buffer, ...viewArgs(dq!), ...viewArgs(dk!), ...viewArgs(dv!), sums?.buffer ?? null, heads);
    run(wholeHeads("backward", dtype, B * H, S, T, D, run));
    release(dout);
  };
  /** Gradients written into `packed`'s layout: the views' own tensor (zeros for the queries of tokens past S). */
  const packedGradient = (dtype: DType, sums: Tensor | null) => (g: Tensor) => {
    const dqkv = S < packed!.shape[1]! ? zeros(packed!.shape, { dtype, device: packed!.device }) : Tensor.empty(packed!.shape, dtype, packed!.device);
    const views = projectionViews(dqkv, H, D, S);
    backwardInto(g, views, sums);
    for (const x of views) x.dispose();
    return dqkv;
  };
  const lowpGradients = packed?.dtype === dtype && dtype !== float32 && native.cuda.attentionLowpGradients(dtype.code, H, D);
  return {
    y,
    backward: (g) => {
      if (packed) return [packedGradient(float32, null)(g)];
      const grads = [headsInterleaved(B, H, S, D, query.device), headsInterleaved(B, H, T, D, query.device), headsInterleaved(B, H, T, D, query.device)];
      backwardInto(g, grads);
      const [dq, dk, dv] = grads;
      return [restoreDtype(dq!, query.dtype), restoreDtype(dk!, key.dtype), restoreDtype(dv!, value.dtype)];
    },
    lowpBackward: lowpGradients
      ? (g) => {
        const sums = Tensor.empty([3 * H * D], float32, packed!.device);
        return { dqkv: packedGradient(dtype, sums)(g), sums };
      }
      : null,
    saved: [q.t, k.t, v.t, saved, lse, ...(m ? [m.t] : [])],
    release: () => {
      for (const x of [q, k, v, m]) if (x) release(x);
      lse.dispose();
      if (y !== out) out.dispose();
    },
  };
}
