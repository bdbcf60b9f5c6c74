// The native addon's JS contract. Every buffer argument is an ArrayBuffer from `alloc`; offsets, strides and
// sizes count elements of the buffer's dtype. The addon validates every bound before touching memory and throws
// a JS error otherwise. Unless a kernel says otherwise it works on float32 buffers.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** dtype codes shared with native/common/dtype.h */
export const enum DTypeCode { F32 = 0, F16 = 1, BF16 = 2, I64 = 3, I32 = 4, Bool = 5 }

/** Binary elementwise op codes (native/cpu/elementwise.cc). */
export const enum BinaryOp { Add = 0, Sub = 1, Mul = 2, Div = 3, Max = 4, Min = 5, Pow = 6 }

/** Comparison op codes: produce bool (uint8 0/1). */
export const enum CompareOp { Eq = 0, Ne = 1, Lt = 2, Le = 3, Gt = 4, Ge = 5 }

/** Unary op codes. `alpha` is the extra scalar some take (Pow scalar exponent, LeakyRelu slope...). */
export const enum UnaryOp {
  Neg = 0, Exp = 1, Log = 2, Tanh = 3, Relu = 4, GeluErf = 5, GeluTanh = 6, Sigmoid = 7, Sqrt = 8, Rsqrt = 9,
  Abs = 10, Square = 11, Reciprocal = 12, Softplus = 13, Log1p = 14, PowScalar = 15, Sign = 16, Erf = 17,
}

/** Backward of a unary op: dx = dy * f'(x); for Tanh and Sigmoid `x` is the forward's output y. */
export const enum UnaryGradOp { GeluErf = 0, GeluTanh = 1, TanhFromOutput = 2, SigmoidFromOutput = 3, Relu = 4 }

/** Reduction op codes. */
export const enum ReduceOp { Sum = 0, Max = 1, Min = 2 }

type AB = ArrayBuffer;
/** A driver event from native.cuda.eventCreate: opaque to JS. */
export type CudaEventHandle = { readonly __brand: "CudaEvent" };

/** A CUDA library the addon opened, or why it could not (every dlopen/dlsym failure and the folders searched). */
export type CudaLibrary = { path: string; version: string | null } | { error: string };

/** The settings of native.cuda.sideStreamGemms and attentionHeads: "auto" decides by timing both ways
 * (ops/timed_choice.ts). */
export type ChoiceMode = "on" | "off" | "auto";

/** What `cudaInfo()` found (native/cuda/): computed once per process, on the first call. */
export interface CudaInfo {
  /** a driver, at least one device and finetune's CUDA kernels: false in this build, which has no kernels */
  available: boolean;
  /** why `available` is false (missing or broken library, old driver, no GPU, no kernels); null when true */
  reason: string | null;
  /** whether this build has CUDA kernels */
  backend: boolean;
  /** cuDriverGetVersion: 13000 for CUDA 13.0; null when no driver answered */
  driver_version: number | null;
  device_count: number;
  devices: { name: string; total_memory: number; major: number; minor: number }[];
  libraries: { cuda: CudaLibrary; nvrtc: CudaLibrary; cublasLt: CudaLibrary };
  /** folders looked in, in order: $CUDA_HOME's first, then /usr/local/cuda*, LD_LIBRARY_PATH, Python's nvidia wheels */
  searched: string[];
}

export interface NativeAddon {
  // ---- memory and machine (native/binding/addon.cc)
  /** 64-byte aligned, zero-filled unless `zero` is false (then uninitialised); owned by the addon until `free` */
  alloc(nbytes: number, zero?: boolean): AB;
  /**
   * returns the memory to the addon's cache now and detaches the buffer; a second call is a no-op. `collected`: the
   * garbage collector found the buffer's owner unreachable (its memory then still counts for V8 when reused)
   */
  free(buf: AB, collected?: boolean): void;
  /** bytes held by live tensors */
  liveBytes(): number;
  /** freed bytes kept for reuse */
  cachedBytes(): number;
  /** returns the cached blocks to the OS */
  emptyCache(): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  cpuFeatures(): { avx2: boolean; fma: boolean; avx512f: boolean; avx512bf16: boolean };

  // ---- GEMM (native/cpu/gemm.cc), row-major, batched:
  // for b in [0, batch): C_b = alpha * op(A_b) @ op(B_b) + beta * C_b, op(X) = X or X^T,
  // A_b starts at offA + b*strideA (likewise B, C); op(A) is M x K, op(B) is K x N, C is M x N with row stride ldc.
  // beta == 0 means C is not read (NaNs in C do not propagate). A and B are float32 or, on CUDA only, both of the
  // 16-bit dtype `abDtype` (products accumulated in float32). C is float32 or, on CUDA with beta 0, of A and B's
  // 16-bit dtype `cDtype` (the float32 result rounded). `bias` (C's dtype, N elements from offBias; batch 1 and
  // beta 0 only, 16-byte aligned on CUDA) is added to every row after the products.
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: AB, offA: number, lda: number, strideA: number,
    B: AB, offB: number, ldb: number, strideB: number, beta: number,
    C: AB, offC: number, ldc: number, strideC: number, batch: number, abDtype?: DTypeCode,
    bias?: AB, offBias?: number, cDtype?: DTypeCode): void;
  /** the same contract computed by the system's OpenBLAS (cblas_sgemm per batch element), loaded at run time for
   * measuring against; throws an Error when no libopenblas can be loaded */
  openblasSgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: AB, offA: number, lda: number, strideA: number,
    B: AB, offB: number, ldb: number, strideB: number, beta: number,
    C: AB, offC: number, ldc: number, strideC: number, batch: number): void;
  /** whether `openblasSgemm` can run here */
  openblasAvailable(): boolean;

  // ---- copies and casts (native/cpu/copy.cc): dst[idx] = cast(src[idx]) for every index of `shape`,
  // any dtype pair; strides may be 0 on src (broadcast). Float -> int truncates toward zero, bool is != 0.
  copy(shape: number[], src: AB, srcDtype: DTypeCode, srcOff: number, srcStrides: number[],
    dst: AB, dstDtype: DTypeCode, dstOff: number, dstStrides: number[]): void;
  /** fill a strided view with a value (any dtype) */
  fill(shape: number[], dst: AB, dtype: DTypeCode, off: number, strides: number[], value: number): void;

  // ---- elementwise float32 (native/cpu/elementwise.cc), all views strided, out may alias an input exactly
  binary(op: BinaryOp, shape: number[], a: AB, aOff: number, aStrides: number[], b: AB, bOff: number,
    bStrides: number[], out: AB, outOff: number, outStrides: number[]): void;
  /** out = op(a, s) or, with `reverse`, op(s, a) */
  binaryScalar(op: BinaryOp, shape: number[], a: AB, aOff: number, aStrides: number[], scalar: number,
    reverse: boolean, out: AB, outOff: number, outStrides: number[]): void;
  /** out (bool, uint8) = a op b */
  compare(op: CompareOp, shape: number[], a: AB, aOff: number, aStrides: number[], b: AB, bOff: number,
    bStrides: number[], out: AB, outOff: number, outStrides: number[]): void;
  unary(op: UnaryOp, alpha: number, shape: number[], a: AB, aOff: number, aStrides: number[],
    out: AB, outOff: number, outStrides: number[]): void;
  /** contiguous: dx[i] = dy[i] * f'(x[i]) */
  unaryGrad(op: UnaryGradOp, n: number, x: AB, xOff: number, dy: AB, dyOff: number, dx: AB, dxOff: number): void;
  /** out = cond ? a : b; cond is bool (uint8) */
  where(shape: number[], cond: AB, cOff: number, cStrides: number[], a: AB, aOff: number, aStrides: number[],
    b: AB, bOff: number, bStrides: number[], out: AB, outOff: number, outStrides: number[]): void;
  /** bias + GELU(erf) fused: h[r, c] += bias[c] (in place, kept for backward); y[r, c] = gelu(h[r, c]); contiguous */
  biasGelu(rows: number, cols: number, h: AB, hOff: number, bias: AB, biasOff: number, y: AB, yOff: number): void;

  // ---- reductions over contiguous [outer, n, inner] (native/cpu/reduce.cc): dst[o, i] = op over k of src[o, k, i]
  reduce(op: ReduceOp, outer: number, n: number, inner: number, src: AB, srcOff: number, dst: AB, dstOff: number): void;
  /** index (int64) of the first max over k */
  argmax(outer: number, n: number, inner: number, src: AB, srcOff: number, dst: AB, dstOff: number): void;
  /** sum of squares of several contiguous float32 tensors, accumulated in double: the grad-norm */
  sumSquares(bufs: AB[], offs: number[], sizes: number[]): number;
  /** x *= factor for several contiguous float32 tensors (grad clipping) */
  scaleMany(bufs: AB[], offs: number[], sizes: number[], factor: number): void;

  // ---- softmax family (native/cpu/softmax.cc), rows of `cols` contiguous values
  softmaxForward(rows: number, cols: number, x: AB, xOff: number, y: AB, yOff: number, log: boolean): void;
  /** dx = y * (dy - sum(dy*y)) or, for log-softmax, dx = dy - exp(y) * sum(dy) */
  softmaxBackward(rows: number, cols: number, y: AB, yOff: number, dy: AB, dyOff: number, dx: AB, dxOff: number,
    log: boolean): void;
  /** attention probabilities: scores [B, H, S, T] contiguous; y = softmax(scores * scale + mask[b, t]) over t,
   * mask is float32 [B, T] (0 or a large negative), may be null */
  maskedSoftmaxForward(B: number, H: number, S: number, T: number, scores: AB, sOff: number, scale: number,
    mask: AB | null, maskOff: number, y: AB, yOff: number): void;

  // ---- layer norm over the last `cols` values (native/cpu/layer_norm.cc); mean and rstd are [rows]
  layerNormForward(rows: number, cols: number, x: AB, xOff: number, w: AB | null, wOff: number, b: AB | null,
    bOff: number, eps: number, y: AB, yOff: number, mean: AB, rstd: AB): void;
  /** dx is assigned; dw and db (when given) are assigned the sums over rows */
  layerNormBackward(rows: number, cols: number, x: AB, xOff: number, dy: AB, dyOff: number, w: AB | null,
    wOff: number, mean: AB, rstd: AB, dx: AB, dxOff: number, dw: AB | null, db: AB | null): void;

  // ---- embedding (native/cpu/embedding.cc); ids are int64; an id outside [0, V) throws RangeError
  embeddingForward(n: number, ids: AB, idsOff: number, V: number, D: number, table: AB, tableOff: number,
    out: AB, outOff: number): void;
  /** dtable[ids[i]] += dy[i] (dtable [V, D] contiguous); rows whose id equals paddingIdx are skipped (-1: none) */
  // With `idsChecked` (the forward checked these ids, unchanged since) CUDA skips the check, a launch and, eagerly,
  // a wait for the GPU: its kernels give out-of-range ids no gradient. The CPU checks regardless.
  // CUDA only: `touched` (a byte a table row, zeros) gets 1 in every row given a gradient.
  embeddingBackward(n: number, ids: AB, idsOff: number, V: number, D: number, dy: AB, dyOff: number,
    dtable: AB, paddingIdx: number, idsChecked?: boolean, touched?: AB | null): void;

  // ---- cross-entropy (native/cpu/cross_entropy.cc); targets int64 [N]; loss[i] = lse_i - logits[i, t_i],
  // 0 where t_i == ignoreIndex; a target outside [0, C) that is not ignoreIndex throws RangeError
  crossEntropyForward(N: number, C: number, logits: AB, lOff: number, targets: AB, tOff: number,
    ignoreIndex: number, loss: AB, lse: AB): void;
  /** dlogits[i] = g[i] * (softmax(logits[i]) - onehot(t_i)), zero rows for ignored targets */
  // `targetsChecked`: as embeddingBackward's idsChecked (the kernel reads no logit at a target's index).
  crossEntropyBackward(N: number, C: number, logits: AB, lOff: number, targets: AB, tOff: number,
    ignoreIndex: number, lse: AB, g: AB, dlogits: AB, targetsChecked?: boolean): void;

  // ---- optimizers (native/cpu/optim.cc): one call updates a whole list of contiguous float32 tensors.
  // torch.optim.AdamW: p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
  // p -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
  // copies[i], when given and not null, receives the new p rounded to copyDtypes[i] (F16 or BF16), as a cast would.
  // grads[i] starts at element gradOffs[i] and copies[i] at copyOffs[i] (0 without them): a gradient may be its rows
  // of a packed one, and a copy its rows of a packed copy.
  adamw(params: AB[], grads: AB[], exp_avgs: AB[], exp_avg_sqs: AB[], sizes: number[], weightDecays: number[],
    lr: number, beta1: number, beta2: number, eps: number, step: number, copies?: (AB | null)[], copyDtypes?: DTypeCode[],
    gradOffs?: number[], copyOffs?: number[]): void;

  // ---- random numbers (native/cpu/random.cc): counter-based (Philox-style), so a (seed, offset) pair always
  // gives the same numbers on every machine and thread count. Element i uses counter offset + i.
  uniform(n: number, seed: number, offset: number, low: number, high: number, out: AB, outOff: number): void;
  normal(n: number, seed: number, offset: number, mean: number, std: number, out: AB, outOff: number): void;
  /** mask (uint8) = keep with probability 1-p; y = x * mask / (1-p); x, y contiguous */
  dropout(n: number, seed: number, offset: number, p: number, x: AB, xOff: number, y: AB, yOff: number,
    mask: AB): void;
  /** dropout's draws, mask and y, plus residual in the same kernel: y = x * mask / (1-p) + residual */
  dropoutAdd(n: number, seed: number, offset: number, p: number, x: AB, xOff: number, residual: AB, residualOff: number,
    y: AB, yOff: number, mask: AB): void;
  /** dropout's backward: dx = mask ? g * scale : 0 (scale rounded to float32); contiguous */
  dropoutBackward(n: number, scale: number, g: AB, gOff: number, mask: AB, dx: AB, dxOff: number): void;

  // ---- CUDA discovery (native/cuda/): libcuda, NVRTC and cuBLASLt are dlopen()ed at run time; a missing or broken
  // library is a `reason`, never an exception. FINETUNE_DISABLE_CUDA=1 skips loading.
  cudaInfo(): CudaInfo;

  /** The CUDA backend (native/cuda/): the kernel contract above on device handles. */
  cuda: CudaAddon;

  /** The CPU processes' process group on the MPI library loaded at run time (native/distributed/mpi.cc). */
  mpi: MpiAddon;

  /** The GPU processes' collectives on NCCL loaded at run time (native/distributed/nccl.cc). */
  nccl: NcclAddon;
}

/**
 * native.nccl: collectives between processes that each drive one GPU, queued on the current stream. Buffers are
 * device handles (native.cuda); collectives throw until init() joined the communicator.
 */
export interface NcclAddon {
  /** Whether NCCL loads, and why not; its version (e.g. 22703 for 2.27.3). */
  load(): { available: boolean; reason: string; library: string; version: number };
  /** A new communicator id (128 bytes), for process 0 to send to the others. */
  uniqueId(): ArrayBuffer;
  /** Joins the communicator `id` names as `rank` of `size` (blocks until every process joins). */
  init(id: ArrayBuffer, size: number, rank: number): void;
  /** In place: the sum, max or min of `count` elements of `dtype` at element `offset` over the processes. */
  allReduce(buffer: AB, offset: number, count: number, dtype: DTypeCode, op: ReduceOp): void;
  /** Process `root`'s bytes to every process, in place. */
  broadcast(buffer: AB, byteOffset: number, bytes: number, root: number): void;
  /** Every process's `bytes` bytes into `recv`, in rank order. */
  allGather(send: AB, sendByteOffset: number, bytes: number, recv: AB, recvByteOffset: number): void;
  /** Leaves the communicator. */
  destroy(): void;
}

/**
 * native.mpi: MPI's world, every process launched by mpirun. Offsets count bytes; collectives block until every
 * process calls them, and throw where init() has not run.
 */
export interface MpiAddon {
  /** Whether an MPI library loads (FINETUNE_MPI_LIBRARY, else Open MPI's or MPICH's), and why not; no MPI call. */
  load(): { available: boolean; reason: string; library: string; implementation: string };
  /** Initialises MPI once (later calls only read): this process's rank and the world's size. */
  init(): { rank: number; size: number };
  /** In place: the sum, max or min (ReduceOp) of `count` elements of `dtype` (F32, I64 or I32) over the world. */
  allReduce(buffer: AB, byteOffset: number, count: number, dtype: DTypeCode, op: ReduceOp): void;
  /** Process `root`'s bytes to every process. */
  broadcast(buffer: AB, byteOffset: number, bytes: number, root: number): void;
  /** Every process's `bytes` bytes into `recv`, in rank order. */
  allGather(send: AB, sendByteOffset: number, bytes: number, recv: AB, recvByteOffset: number): void;
  barrier(): void;
  /** MPI_Finalize where MPI was initialised; a process joins one world only. */
  finalize(): void;
}

/** The kernel entry points, the same on every device (src/backend/kernels.ts picks the device's). */
export type KernelName =
  | "sgemm" | "copy" | "fill" | "binary" | "binaryScalar" | "compare" | "unary" | "unaryGrad" | "where" | "biasGelu"
  | "reduce" | "argmax" | "sumSquares" | "scaleMany" | "softmaxForward" | "softmaxBackward" | "maskedSoftmaxForward"
  | "layerNormForward" | "layerNormBackward" | "embeddingForward" | "embeddingBackward" | "crossEntropyForward"
  | "crossEntropyBackward" | "adamw" | "uniform" | "normal" | "dropout" | "dropoutAdd" | "dropoutBackward";
export type Kernels = Pick<NativeAddon, KernelName>;

/**
 * native.cuda: every kernel of the CPU contract under the same name and signature, where each buffer argument is
 * a device handle: an empty ArrayBuffer (byteLength 0, so JS cannot touch device memory) from `alloc`. Passing host
 * memory where a device handle is expected is a TypeError naming the argument. All work is queued in order on one
 * stream; only `copyDeviceToHost`, `synchronize` and kernels that return a number (sumSquares) wait for it.
 * Without a usable GPU every function except the tf32 setting throws an Error with cudaInfo().reason.
 */
export interface CudaAddon extends Kernels {
  /** layerNormForward; under autocast `yLowp` (null for none) also receives y rounded to `lowpDtype` (F16 or BF16,
   * numel elements from offset 0), the copy the next product reads (amp/lowp_copy.ts) */
  layerNormForward(rows: number, cols: number, x: AB, xOff: number, w: AB | null, wOff: number, b: AB | null,
    bOff: number, eps: number, y: AB, yOff: number, mean: AB, rstd: AB, lowpDtype?: DTypeCode | null, yLowp?: AB | null): void;
  /** layerNormBackward; with `mask` (uint8, numel) `dxDropout` (float32, numel) also receives mask ? dx * dropoutScale
   * : 0, the backward of the dropout whose output (plus a residual) was x (dropout_add_layer_norm), and with
   * `dxDropoutSums` (float32, cols) that gradient's column sums, and its copy rounded to `lowpDtype` in `dxDropoutLowp`
   * (numel), which a linear layer's backward reads (its bias gradient and GEMM operand). Returns whether it wrote
   * those two (not for rows over 1024 values) */
  layerNormBackward(rows: number, cols: number, x: AB, xOff: number, dy: AB, dyOff: number, w: AB | null,
    wOff: number, mean: AB, rstd: AB, dx: AB, dxOff: number, dw: AB | null, db: AB | null, mask?: AB | null,
    dropoutScale?: number, dxDropout?: AB | null, lowpDtype?: DTypeCode, dxDropoutLowp?: AB, dxDropoutSums?: AB): boolean;
  /** layerNormForward of input = dropout(x) + residual, which it writes to `input` (float32) with the keep bits to `mask`
   * (uint8), drawn as dropoutAdd(rows * cols, seed, offset, p, ...) draws them; rows of at most 1024 values */
  dropoutAddLayerNorm(rows: number, cols: number, seed: number, offset: number, p: number, x: AB, xOff: number, residual: AB,
    residualOff: number, input: AB, mask: AB, w: AB | null, wOff: number, b: AB | null, bOff: number, eps: number, y: AB,
    yOff: number, mean: AB, rstd: AB, lowpDtype?: DTypeCode | null, yLowp?: AB | null): void;
  /** cross_entropy's "mean" of crossEntropyForward's `loss` [N]: out[0] = sum(loss) * inverse[0], inverse[0] = 1 / the
   * number of targets that are not ignoreIndex (the composition's bits), in one launch */
  crossEntropyMean(N: number, loss: AB, targets: AB, tOff: number, ignoreIndex: number, out: AB, inverse: AB): void;
  /** biasGelu; `yLowp` also receives y rounded to `lowpDtype` (numel elements from offset 0; null for none) */
  biasGelu(rows: number, cols: number, h: AB, hOff: number, bias: AB, biasOff: number, y: AB, yOff: number,
    lowpDtype?: DTypeCode | null, yLowp?: AB | null): void;
  /** dropout; `yLowp` also receives y rounded to `lowpDtype` (n elements from offset 0; null for none) */
  dropout(n: number, seed: number, offset: number, p: number, x: AB, xOff: number, y: AB, yOff: number,
    mask: AB, lowpDtype?: DTypeCode | null, yLowp?: AB | null): void;
  /** out [rows, D] = (t0[id0] + t1[id1]) + t2[id2], the sum of three embeddingForward lookups added in that order, in
   * one launch (the tables' ids checked as embeddingForward checks them); rows = B * S, and table k's ids for row
   * b * S + s are at idsOff + b * idsBatch + s: idsBatch S (ids [B, S]) or 0 (ids [S], the same for every b) */
  embeddingSum(rows: number, S: number, D: number, out: AB, outOff: number,
    ids0: AB, ids0Off: number, ids0Batch: number, V0: number, table0: AB, table0Off: number,
    ids1: AB, ids1Off: number, ids1Batch: number, V1: number, table1: AB, table1Off: number,
    ids2: AB, ids2Off: number, ids2Batch: number, V2: number, table2: AB, table2Off: number): void;
  /** y = GELU(pre) rounded to `dtype`, pre and y n 16-bit values of it */
  geluLowp(n: number, pre: AB, preOff: number, dtype: DTypeCode, y: AB, yOff: number): void;
  /** device memory from the caching allocator, zero-filled unless `zero` is false */
  alloc(nbytes: number, zero?: boolean): AB;
  /** returns the memory to the cache now (stream order makes reuse safe); a second call is a no-op */
  free(handle: AB): void;
  /** bytes taken from the cache (tensors, scratch, cuBLASLt's workspace): torch.cuda.memory_allocated */
  memoryAllocated(): number;
  /** the same, under the host contract's name */
  liveBytes(): number;
  maxMemoryAllocated(): number;
  /** The allocator's counters under torch.cuda.memory_stats' names (allocated, reserved and segment counts). */
  memoryStats(): Record<string, number>;
  resetPeakMemoryStats(): void;
  /** freed bytes kept for reuse (memory_reserved() - memory_allocated()) */
  cachedBytes(): number;
  /** waits for the stream, then returns the cached blocks to the driver */
  emptyCache(): void;
  /** [free, total] bytes of the device, as the driver counts them */
  memGetInfo(): [number, number];
  synchronize(): void;
  copyHostToDevice(host: AB, hostByteOffset: number, device: AB, deviceByteOffset: number, nbytes: number): void;
  /** waits for the copy: `host` holds the values on return */
  copyDeviceToHost(device: AB, deviceByteOffset: number, host: AB, hostByteOffset: number, nbytes: number): void;
  copyDeviceToDevice(src: AB, srcByteOffset: number, dst: AB, dstByteOffset: number, nbytes: number): void;
  /**
   * Fused attention (native/cuda/kernels/attention.cc), with no S x T matrix in memory: out = dropout(softmax(
   * q @ k^T * scale + mask)) @ v. q [B, H, S, D], k and v [B, H, T, D] are views with unit stride in D, 1 <= D <= 128;
   * mask is an additive [B, H, S, T] view (zero strides broadcast) or null; causal hides keys t > s. With
   * 0 < dropoutP, probability (b, h, s, t) is kept exactly where `dropout(B*H*S*T, seed, offset, dropoutP, ...)`
   * keeps flat element ((b*H + h)*S + s)*T + t. out is a [B, H, S, D] view with unit stride in D; lse [B, H, S]
   * (each row's logsumexp; -inf marks a row whose logits are all -inf, which is uniform as in maskedSoftmaxForward)
   * is contiguous. q, k and v are stored in `dtype` (float32, bfloat16 or float16's code); out is float32. Where
   * lowp is not null the kernel also writes out rounded to lowpDtype (bfloat16 or float16's code) there, at lowpOff
   * with out's strides. `wholeHeads`: the tensor-core path takes one block a head where attentionHeadKernel says it
   * can.
   */
  attentionForward(B: number, H: number, S: number, T: number, D: number, q: AB, qOff: number, qStrides: number[],
    k: AB, kOff: number, kStrides: number[], v: AB, vOff: number, vStrides: number[], mask: AB | null,
    maskOff: number, maskStrides: number[], causal: boolean, scale: number, dropoutP: number, seed: number,
    offset: number, dtype: number, out: AB, outOff: number, outStrides: number[], lse: AB, lowp: AB | null, lowpOff: number,
    lowpDtype: number, wholeHeads?: boolean): void;
  /** attentionForward's gradients from its arguments, out (in `dtype`, as q, k and v) and lse, and dout [B, H, S, D]
   * (float32): dq [B, H, S, D], dk and dv [B, H, T, D] are assigned in float32, or with `sums` (float32 [3, H, D]) in
   * the 16-bit `dtype`, sums receiving their column sums over (b, s) (where attentionLowpGradients); out, dout and
   * the gradients are views with unit stride in D; probabilities are recomputed from lse. `wholeHeads`: the
   * tensor-core path takes one kernel a head where attentionHeadKernel says it can, instead of the dq and dk/dv
   * kernels */
  attentionBackward(B: number, H: number, S: number, T: number, D: number, q: AB, qOff: number, qStrides: number[],
    k: AB, kOff: number, kStrides: number[], v: AB, vOff: number, vStrides: number[], mask: AB | null,
    maskOff: number, maskStrides: number[], causal: boolean, scale: number, dropoutP: number, seed: number,
    offset: number, dtype: number, out: AB, outOff: number, outStrides: number[], dout: AB, doutOff: number, doutStrides: number[],
    lse: AB, dq: AB, dqOff: number, dqStrides: number[], dk: AB, dkOff: number, dkStrides: number[], dv: AB,
    dvOff: number, dvStrides: number[], sums?: AB | null, wholeHeads?: boolean): void;
  /** Whether attentionBackward writes 16-bit gradients with their column sums for H heads of dim D with operands of
   * `dtype` on this GPU (the tensor-core kernels') */
  attentionLowpGradients(dtype: DTypeCode, H: number, D: number): boolean;
  /** Whether attentionForward and attentionBackward can take one kernel a head for S queries and T keys with operands
   * of `dtype` and head dim D on this GPU: the tensor-core kernels' operands, S and T up to 128, and 159 KiB of shared
   * memory a block for the backward */
  attentionHeadKernel(dtype: DTypeCode, D: number, S: number, T: number): boolean;
  /** Whether the attention takes one kernel a head where it can: "on" (FINETUNE_CUDA_ATTENTION_HEADS=1),
   * "off" (=0), or by default "auto", where timing a shape both ways showed it pays (ops/attention.ts); `mode` sets
   * it from now on */
  attentionHeads(mode?: ChoiceMode): ChoiceMode;
  /** A linear layer's incoming gradient read once for its backward (reduce.cc): v = g, or g * GELU'(pre) (erf GELU;
   * pre float32 or 16-bit of `preDtype`, null for none), is written to `lowp` rounded to `lowpDtype` (F16 or BF16),
   * and sums[c] = the sum over rows of v[r, c], as `reduce` sums the float32 v over its rows, to the bit. g (float32,
   * or of the 16-bit `gDtype`) and pre are contiguous [rows, cols] from their offsets, lowp [rows, cols] and sums
   * [cols] from offset 0 */
  castColumnSums(rows: number, cols: number, g: AB, gOff: number, pre: AB | null, preOff: number, preDtype: DTypeCode,
    lowpDtype: DTypeCode, lowp: AB, sums: AB, gDtype?: DTypeCode): void;
  /** clip_grad_norm_ on the device (CUDA only): norm[normOff] = the total 2-norm (float32, as the host path rounds
   * it); the tensors are scaled by max_norm / (norm + 1e-6) when that is below 1; nothing waits for the GPU. With
   * `coef`, that factor goes to coef[coefOff] and nothing is scaled (adamwDevice's `clip` applies it). A tensor
   * with `partials` (sumSquaresChunks' of its chunks, from double partialOffs[i]) is not read for the norm, one with
   * `rowFlags` (a byte a row of rowLengths[i] values, 0 where the row is all zeros) only where a row is flagged */
  clipGradNorm(bufs: AB[], offs: number[], sizes: number[], maxNorm: number, norm: AB, normOff: number, coef?: AB | null,
    coefOff?: number, partials?: (AB | null)[], partialOffs?: number[], rowFlags?: (AB | null)[], rowLengths?: number[]): void;
  /** partials[partialsOff + c] (doubles) = the sum of squares of chunk c (4096 elements, the last one shorter) of
   * the contiguous float32 tensor, as clipGradNorm sums it; queued on the current stream */
  sumSquaresChunks(buf: AB, off: number, numel: number, partials: AB, partialsOff: number): void;
  /** writes adamwDevice's scalars for one step: [-lr / (1 - beta1^step), sqrt(1 - beta2^step),
   * 1 - lr * weightDecays[i]...] as float32, computed as `adamw` computes them, then the step as int32 (a copy on
   * the stream): weightDecays.length + 3 values */
  adamwScalars(scalars: AB, lr: number, beta1: number, beta2: number, step: number, weightDecays: number[]): void;
  /** `adamw` with the step's scalars read from `scalars` (adamwScalars) when the kernel runs, so that a captured
   * step follows the learning rate and step count written before each replay. A tensor with a row length
   * (rowLengths[i] > 0, at least 32, dividing its size) updates only the rows whose gradient has a nonzero value,
   * each first taking the zero-gradient updates of the steps since lastSteps[i][row] (int32 a row, which it
   * advances), their scalars from `ring` (3 float32 a step, then the last step run as int32, kept by the kernel); the other rows wait for a later
   * nonzero gradient or adamwCatchUp; with `rowFlags[i]` (a byte a row of the gradient, 0 where it is all zeros)
   * the flagged rows, no gradient read to find them. The same bits as the dense update; one call's tensors share one
   * weight decay */
  adamwDevice(params: AB[], grads: AB[], exp_avgs: AB[], exp_avg_sqs: AB[], sizes: number[], scalars: AB,
    beta1: number, beta2: number, eps: number, clip?: AB, clipOff?: number, copies?: (AB | null)[], copyDtypes?: DTypeCode[],
    gradOffs?: number[], copyOffs?: number[], rowLengths?: number[], lastSteps?: (AB | null)[], ring?: AB,
    rowFlags?: (AB | null)[]): void;
  /** The deferred rows of adamwDevice's tensors (rowLengths[i] > 0) brought to step `target`, the last step
   * adamwDevice ran, as the dense update would have left them (the 16-bit copies too) */
  adamwCatchUp(params: AB[], exp_avgs: AB[], exp_avg_sqs: AB[], sizes: number[], rowLengths: number[],
    lastSteps: (AB | null)[], ring: AB, target: number, beta1: number, beta2: number, eps: number,
    copies?: (AB | null)[], copyDtypes?: DTypeCode[], copyOffs?: number[]): void;
  /** The rows of one deferred-row tensor named by ids (int64, contiguous from idsOff; rows outside the table
   * skipped) brought to the last step adamwDevice ran, the ring's last int32 (ring: 3 float32 a step, then it) */
  adamwCatchUpRows(ids: AB, idsOff: number, n: number, param: AB, exp_avg: AB, exp_avg_sq: AB, cols: number,
    lastSteps: AB, ring: AB, beta1: number, beta2: number, eps: number, copy?: AB | null, copyDtype?: DTypeCode): void;

  // ---- CUDA graphs (native/cuda/graphs.cc). While a capture is under way the stream records instead of running;
  // copies to or from the host, synchronize, emptyCache and allocations the cache cannot serve throw "... is not
  // allowed while capturing a CUDA graph". Memory taken during a capture comes from the graph's pool and stays
  // its own until graphReset. An index check (embedding ids, cross-entropy targets) in a captured step reports a
  // bad index as a RangeError at the first sync after the replay.
  /** starts capturing into a new graph whose memory comes from `pool` (graphPoolHandle(), or 0: a new one);
   * returns the graph's number */
  graphCaptureBegin(pool: number): number;
  /** ends the capture and instantiates the graph; on failure the graph is freed and the error thrown */
  graphCaptureEnd(graph: number): void;
  /** ends a capture that failed part-way and frees the graph (nothing when it is not being captured) */
  graphCaptureAbort(graph: number): void;
  /** launches the captured work on the stream; its random kernels (dropout) add `randomBase` to the counter
   * offsets they were captured with (ignored when it draws none) */
  graphReplay(graph: number, randomBase: number): void;
  /** waits for the stream, then frees the graph and gives its pool back to the cache (a no-op for a freed graph) */
  graphReset(graph: number): void;
  /** the pool a graph's memory comes from */
  graphPool(graph: number): number;
  /** a new memory pool that several graphs may share (torch.cuda.graph_pool_handle) */
  graphPoolHandle(): number;
  isCurrentStreamCapturing(): boolean;

  // ---- events and the stream (native/cuda/events.cc): torch.cuda.Event and Stream.query
  /** a new driver event (opaque; destroyed by the garbage collector); `blocking` makes eventSynchronize sleep */
  eventCreate(enableTiming: boolean, blocking: boolean): CudaEventHandle;
  /** places the event after the work queued so far (refused during a capture) */
  eventRecord(event: CudaEventHandle): void;
  /** whether the work before the event's last record has run */
  eventQuery(event: CudaEventHandle): boolean;
  /** waits until the work before the event's last record has run */
  eventSynchronize(event: CudaEventHandle): void;
  /** milliseconds between two completed records of events created with timing; throws while one is pending */
  eventElapsedTime(start: CudaEventHandle, end: CudaEventHandle): number;
  /** whether all queued work has run (refused during a capture) */
  streamQuery(): boolean;
  /** Whether kernels launch with programmatic dependent launch (sm_90+, where FINETUNE_CUDA_PDL=1); `on` turns it
   * on (where supported) or off for the launches and captures from now on. */
  programmaticLaunch(on?: boolean): boolean;
  /** Whether layer norm rows too few for the SMs take a team of warps each (FINETUNE_CUDA_ROW_TEAMS=0: no); `enabled`
   * sets it for the launches from now on. */
  rowTeams(enabled?: boolean): boolean;
  /** Whether the GELU kernels (geluLowp, castColumnSums) look bfloat16 values of magnitude 2^-8 to 2^3 up in a block's
   * shared-memory copy of that part of their table (FINETUNE_CUDA_HOT_TABLES=0: no); `enabled` sets it from now on */
  hotTables(enabled?: boolean): boolean;
  /** Whether a linear layer's backward runs its weight gradient's GEMM on the side stream beside its input
   * gradient's: "on" (FINETUNE_CUDA_SIDE_STREAM=1), "off" (=0), or by default "auto", where timing a pair of GEMM
   * shapes both ways showed it pays (ops/side_stream_choice.ts); `mode` sets it from now on */
  sideStreamGemms(mode?: ChoiceMode): ChoiceMode;
  /** The side stream waits for the main stream's work so far (a deferred join is made first) and becomes the
   * stream GEMMs go to; `uses`: the device buffers its work will read or write, the only memory then held when
   * given back before the join (without it, all of it is) */
  sideStreamFork(uses?: ArrayBuffer[]): void;
  /** The main stream is the stream GEMMs go to again; the side stream's work still runs beside it */
  sideStreamMain(): void;
  /** The main stream is the stream GEMMs go to and waits for the side stream's work so far; with `later` true it
   * waits at the next fork or join instead (meanwhile memory given back is held, not reused), so that the side's
   * work also runs beside what the main stream does next. Joins a deferred join when not forked. */
  sideStreamJoin(later?: boolean): void;
  /** Whether a join was deferred and not yet made (a capture's end makes it) */
  sideStreamJoinDeferred(): boolean;
  /** since the process started: the kernel modules loaded (compiled by NVRTC or read from its disk cache) and the
   * host seconds that took */
  kernelStats(): { modules_loaded: number; module_load_s: number };
  /** torch.backends.cuda.matmul.allow_tf32: sgemm computes in TF32 on tensor cores when true (default false) */
  setAllowTf32(allow: boolean): void;
  getAllowTf32(): boolean;
  /** since the process started: the host seconds spent building GEMM plans and inside cublasLtMatmul, the plans
   * that queried cuBLASLt's heuristic (the others reused the algorithm of a shape differing only in M or K, within
   * a factor of 4), the shape families whose algorithm an earlier process chose (the disk cache), and the families
   * whose algorithm was the fastest of cuBLASLt's first choices timed on the GPU (FINETUNE_CUDA_GEMM_AUTOTUNE=0: none)
   * and, per rank in cuBLASLt's list, how many of those found it there; and the bytes of cuBLASLt workspace the
   * streams hold now */
  gemmStats(): {
    plan_s: number; matmul_s: number; heuristic_queries: number; disk_algos: number; autotuned: number; autotune_ranks: number[];
    workspace_bytes: number;
  };
  /** bufs[i] (sizes[i] contiguous float32 elements from offs[i]) into dsts[i] from dstOffs[i], rounded to dtypes[i]
   * (float16 or bfloat16) or copied (float32), in one launch */
  castMany(bufs: AB[], offs: number[], sizes: number[], dsts: AB[], dstOffs: number[], dtypes: DTypeCode[]): void;
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "build", "Release", "finetune_native.node");
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(
    "finetune's native addon is not built (build/Release/finetune_native.node is missing): run `npm install` " +
      "in the package folder (it builds the addon with node-gyp; a C++17 compiler and python3 are needed)",
  );
}

export const native: NativeAddon = createRequire(import.meta.url)(findAddon()) as NativeAddon;
