// The Tensor: a strided view (shape, strides, offset) of a Storage, with a dtype, a device and autograd state.
// The maths lives in src/ops; the methods here forward to it so that code reads like PyTorch.
import { Storage } from "../backend/storage.js";
import { Device } from "./device.js";
import { DType, float32, toDType } from "./dtype.js";
import { trackTensor } from "../autograd/scope.js";
import { Node } from "../autograd/node.js";
import { backward as runBackward, type BackwardOptions } from "../autograd/engine.js";
import { contiguousStrides, formatShape } from "./shape.js";
import * as ops from "../ops/index.js";
import { formatTensor } from "./format.js";
import { releaseLowpEntry, type LowpEntry } from "../amp/lowp_copy.js";
import type { IndexSpec } from "../ops/view.js";

const finalizer = new FinalizationRegistry<Storage>((storage) => storage.release(true));

export type Scalar = number;
export type TensorOrScalar = Tensor | number;

export class Tensor {
  readonly _isTensor = true;
  requires_grad = false;
  grad: Tensor | null = null;
  grad_fn: Node | null = null;
  /** memory bookkeeping, see autograd/scope.ts */
  _savedCount = 0;
  _graphOwned = false;
  _persistent = false;
  _disposed = false;
  /**
   * A part of a gradient whose other parts are only other parameters' gradients (packed_linear's rows for each
   * weight it stacked): the engine may make it a leaf's .grad as it is, where another view would be copied first.
   */
  _gradientSlice = false;
  /** the 16-bit copy autocast's products read instead of casting this tensor (amp/lowp_copy.ts) */
  _lowp: LowpEntry | null = null;
  /** register_post_accumulate_grad_hook's hooks in registration order; null until one is (no array per tensor) */
  _postAccumulateGradHooks: ((param: Tensor) => void)[] | null = null;

  constructor(
    readonly storage: Storage,
    readonly shape: readonly number[],
    readonly strides: readonly number[],
    readonly offset: number,
    readonly dtype: DType,
  ) {
    finalizer.register(this, storage, this);
    trackTensor(this);
  }

  /** A new contiguous tensor; its memory is uninitialised unless `zero`. */
  static empty(shape: readonly number[], dtype: DType = float32, device: Device = storageDevice(), zero = false): Tensor {
    const numel = shape.reduce((a, b) => a * b, 1);
    const storage = Storage.allocate(numel * dtype.itemsize, device, zero);
    return new Tensor(storage, [...shape], contiguousStrides(shape), 0, dtype);
  }

  /** A view of this tensor's storage with another layout. */
  _view(shape: readonly number[], strides: readonly number[], offset: number): Tensor {
    this.checkAlive();
    return new Tensor(this.storage.retain(), shape, strides, offset, this.dtype);
  }

  /** A second handle to the same memory and layout (no autograd history). */
  alias(): Tensor {
    return this._view(this.shape, this.strides, this.offset);
  }

  get device(): Device {
    return this.storage.device;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get is_leaf(): boolean {
    return this.grad_fn === null;
  }

  get is_cuda(): boolean {
    return this.device.type === "cuda";
  }

  get buffer(): ArrayBuffer {
    this.checkAlive();
    return this.storage.buffer;
  }

  dim(): number {
    return this.shape.length;
  }

  size(dim?: number): number[] | number {
    if (dim === undefined) return [...this.shape];
    return this.shape[ops.normDim(dim, this.ndim)];
  }

  numel(): number {
    let n = 1;
    for (const s of this.shape) n *= s;
    return n;
  }

  stride(): number[] {
    return [...this.strides];
  }

  element_size(): number {
    return this.dtype.itemsize;
  }

  is_contiguous(): boolean {
    const expected = contiguousStrides(this.shape);
    return this.shape.every((s, i) => s === 1 || this.strides[i] === expected[i]);
  }

  is_floating_point(): boolean {
    return this.dtype.is_floating_point;
  }

  /** True when this tensor is the only user of its storage and covers it exactly: it may be mutated freely. */
  isExclusive(): boolean {
    return this.offset === 0 && this.is_contiguous() && this.numel() * this.dtype.itemsize === this.storage.nbytes;
  }

  checkAlive(): void {
    if (this._disposed || this.storage.released) {
      throw new Error(
        "this tensor's memory has been released (it was an intermediate result of a finished module call or " +
          "backward()); keep a copy with .clone() or .detach() while it is alive if you need it later",
      );
    }
  }

  /** Releases this tensor's hold on its memory now. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    finalizer.unregister(this);
    this.storage.release();
    if (this._lowp) releaseLowpEntry(this._lowp);
    this._lowp = null;
  }

  requires_grad_(requires_grad = true): this {
    if (!this.is_leaf) {
      throw new Error(
        "you can only change requires_grad flags of leaf variables. If you want to use a computed variable in a " +
          "subgraph that doesn't require differentiation use var_no_grad = var.detach().",
      );
    }
    if (requires_grad && !this.dtype.is_floating_point) {
      throw new Error(`only Tensors of floating point dtype can require gradients (got ${this.dtype})`);
    }
    this.requires_grad = requires_grad;
    return this;
  }

  /**
   * torch.Tensor.register_post_accumulate_grad_hook: `hook(this)` runs once a backward has accumulated every
   * gradient it computes for this leaf into .grad (it may read and change .grad). Returns a handle whose remove()
   * unregisters it.
   */
  register_post_accumulate_grad_hook(hook: (param: Tensor) => void): { remove(): void } {
    if (!this.requires_grad) throw new Error("cannot register a hook on a tensor that doesn't require gradient");
    if (!this.is_leaf) throw new Error("post accumulate grad hooks cannot be registered on non-leaf tensors");
    const hooks = (this._postAccumulateGradHooks ??= []);
    hooks.push(hook);
    return {
      remove: () => {
        const i = hooks.indexOf(hook);
        if (i >= 0) hooks.splice(i, 1);
      },
    };
  }

  backward(gradient?: Tensor, options: Omit<BackwardOptions, "gradient"> = {}): void {
    runBackward(this, { ...options, gradient });
  }

  detach(): Tensor {
    return this.alias();
  }

  detach_(): this {
    this.grad_fn = null;
    this.requires_grad = false;
    return this;
  }

  // ---- conversion
  to(target: Device | string | DType | { dtype?: DType | string; device?: Device | string }): Tensor {
    return ops.to(this, target);
  }
  cpu(): Tensor {
    return ops.to(this, "cpu");
  }
  cuda(): Tensor {
    return ops.to(this, "cuda");
  }
  float(): Tensor {
    return ops.to(this, float32);
  }
  long(): Tensor {
    return ops.to(this, toDType("int64"));
  }
  int(): Tensor {
    return ops.to(this, toDType("int32"));
  }
  half(): Tensor {
    return ops.to(this, toDType("float16"));
  }
  bfloat16(): Tensor {
    return ops.to(this, toDType("bfloat16"));
  }
  bool(): Tensor {
    return ops.to(this, toDType("bool"));
  }
  type(dtype: DType | string): Tensor {
    return ops.to(this, toDType(dtype));
  }
  contiguous(): Tensor {
    return ops.contiguous(this);
  }
  clone(): Tensor {
    return ops.clone(this);
  }
  item(): number {
    return ops.item(this);
  }
  tolist(): unknown {
    return ops.tolist(this);
  }
  /** The values as a flat typed array (a copy), in row-major order. */
  data(): Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array {
    return ops.toTypedArray(this);
  }

  // ---- views
  view(...shape: (number | number[])[]): Tensor {
    return ops.view(this, flattenShapeArgs(shape));
  }
  reshape(...shape: (number | number[])[]): Tensor {
    return ops.reshape(this, flattenShapeArgs(shape));
  }
  view_as(other: Tensor): Tensor {
    return ops.view(this, other.shape);
  }
  flatten(start_dim = 0, end_dim = -1): Tensor {
    return ops.flatten(this, start_dim, end_dim);
  }
  permute(...dims: (number | number[])[]): Tensor {
    return ops.permute(this, flattenShapeArgs(dims));
  }
  transpose(dim0: number, dim1: number): Tensor {
    return ops.transpose(this, dim0, dim1);
  }
  get T(): Tensor {
    return ops.permute(this, this.shape.map((_, i) => this.ndim - 1 - i));
  }
  t(): Tensor {
    if (this.ndim > 2) throw new Error(`t() expects a tensor with <= 2 dimensions, but self is ${this.ndim}D`);
    return this.ndim < 2 ? this.alias() : ops.transpose(this, 0, 1);
  }
  unsqueeze(dim: number): Tensor {
    return ops.unsqueeze(this, dim);
  }
  squeeze(dim?: number): Tensor {
    return ops.squeeze(this, dim);
  }
  expand(...shape: (number | number[])[]): Tensor {
    return ops.expand(this, flattenShapeArgs(shape));
  }
  expand_as(other: Tensor): Tensor {
    return ops.expand(this, other.shape);
  }
  select(dim: number, index: number): Tensor {
    return ops.select(this, dim, index);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return ops.narrow(this, dim, start, length);
  }
  /** Python indexing `x[i, a:b, None, ...]` as `x.index(i, [a, b], null, "...")`. */
  index(...spec: IndexSpec[]): Tensor {
    return ops.index(this, spec);
  }
  chunk(chunks: number, dim = 0): Tensor[] {
    return ops.chunk(this, chunks, dim);
  }
  split(split_size: number | number[], dim = 0): Tensor[] {
    return ops.split(this, split_size, dim);
  }

  // ---- arithmetic
  add(other: TensorOrScalar, options: { alpha?: number } = {}): Tensor {
    return ops.add(this, other, options);
  }
  sub(other: TensorOrScalar, options: { alpha?: number } = {}): Tensor {
    return ops.sub(this, other, options);
  }
  mul(other: TensorOrScalar): Tensor {
    return ops.mul(this, other);
  }
  div(other: TensorOrScalar): Tensor {
    return ops.div(this, other);
  }
  pow(exponent: number): Tensor {
    return ops.pow(this, exponent);
  }
  neg(): Tensor {
    return ops.neg(this);
  }
  rsub(other: TensorOrScalar): Tensor {
    return ops.sub(typeof other === "number" ? ops.fullLike(this, other) : other, this);
  }
  maximum(other: Tensor): Tensor {
    return ops.maximum(this, other);
  }
  minimum(other: Tensor): Tensor {
    return ops.minimum(this, other);
  }
  clamp(min?: number | null, max?: number | null): Tensor {
    return ops.clamp(this, min ?? null, max ?? null);
  }
  exp(): Tensor {
    return ops.exp(this);
  }
  log(): Tensor {
    return ops.log(this);
  }
  log1p(): Tensor {
    return ops.log1p(this);
  }
  sqrt(): Tensor {
    return ops.sqrt(this);
  }
  rsqrt(): Tensor {
    return ops.rsqrt(this);
  }
  abs(): Tensor {
    return ops.abs(this);
  }
  square(): Tensor {
    return ops.square(this);
  }
  reciprocal(): Tensor {
    return ops.reciprocal(this);
  }
  tanh(): Tensor {
    return ops.tanh(this);
  }
  sigmoid(): Tensor {
    return ops.sigmoid(this);
  }
  relu(): Tensor {
    return ops.relu(this);
  }
  sign(): Tensor {
    return ops.sign(this);
  }
  matmul(other: Tensor): Tensor {
    return ops.matmul(this, other);
  }
  mm(other: Tensor): Tensor {
    return ops.mm(this, other);
  }
  bmm(other: Tensor): Tensor {
    return ops.bmm(this, other);
  }
  softmax(dim: number): Tensor {
    return ops.softmax(this, dim);
  }
  log_softmax(dim: number): Tensor {
    return ops.log_softmax(this, dim);
  }

  // ---- comparison and selection
  eq(other: TensorOrScalar): Tensor {
    return ops.eq(this, other);
  }
  ne(other: TensorOrScalar): Tensor {
    return ops.ne(this, other);
  }
  lt(other: TensorOrScalar): Tensor {
    return ops.lt(this, other);
  }
  le(other: TensorOrScalar): Tensor {
    return ops.le(this, other);
  }
  gt(other: TensorOrScalar): Tensor {
    return ops.gt(this, other);
  }
  ge(other: TensorOrScalar): Tensor {
    return ops.ge(this, other);
  }
  logical_not(): Tensor {
    return ops.logical_not(this);
  }
  masked_fill(mask: Tensor, value: number): Tensor {
    return ops.masked_fill(this, mask, value);
  }
  where(condition: Tensor, other: TensorOrScalar): Tensor {
    return ops.where(condition, this, other);
  }

  // ---- reductions
  sum(dim?: number | number[] | null, keepdim = false, options: { dtype?: DType } = {}): Tensor {
    return ops.sum(this, dim ?? null, keepdim, options.dtype);
  }
  mean(dim?: number | number[] | null, keepdim = false): Tensor {
    return ops.mean(this, dim ?? null, keepdim);
  }
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    return dim === undefined ? ops.amax(this, null, false) : ops.maxDim(this, dim, keepdim);
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    return dim === undefined ? ops.amin(this, null, false) : ops.minDim(this, dim, keepdim);
  }
  amax(dim?: number | number[] | null, keepdim = false): Tensor {
    return ops.amax(this, dim ?? null, keepdim);
  }
  argmax(dim?: number | null, keepdim = false): Tensor {
    return ops.argmax(this, dim ?? null, keepdim);
  }
  argmin(dim?: number | null, keepdim = false): Tensor {
    return ops.argmin(this, dim ?? null, keepdim);
  }
  norm(p = 2): Tensor {
    return ops.norm(this, p);
  }
  var(dim?: number | number[] | null, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return ops.variance(this, dim ?? null, options.unbiased ?? true, options.keepdim ?? false);
  }
  std(dim?: number | number[] | null, options: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return ops.variance(this, dim ?? null, options.unbiased ?? true, options.keepdim ?? false).sqrt();
  }
  all(): boolean {
    return ops.all(this);
  }
  any(): boolean {
    return ops.any(this);
  }

  // ---- in place (never on tensors that need grad)
  zero_(): this {
    return ops.fill_(this, 0);
  }
  fill_(value: number): this {
    return ops.fill_(this, value);
  }
  copy_(src: Tensor): this {
    return ops.copy_(this, src);
  }
  add_(other: TensorOrScalar, options: { alpha?: number } = {}): this {
    return ops.inplace(this, ops.add(this, other, options));
  }
  sub_(other: TensorOrScalar, options: { alpha?: number } = {}): this {
    return ops.inplace(this, ops.sub(this, other, options));
  }
  mul_(other: TensorOrScalar): this {
    return ops.inplace(this, ops.mul(this, other));
  }
  div_(other: TensorOrScalar): this {
    return ops.inplace(this, ops.div(this, other));
  }
  clamp_(min?: number | null, max?: number | null): this {
    return ops.inplace(this, ops.clamp(this, min ?? null, max ?? null));
  }
  masked_fill_(mask: Tensor, value: number): this {
    return ops.inplace(this, ops.masked_fill(this, mask, value));
  }
  normal_(mean = 0, std = 1): this {
    return ops.normal_(this, mean, std);
  }
  uniform_(from = 0, to = 1): this {
    return ops.uniform_(this, from, to);
  }

  toString(): string {
    return formatTensor(this);
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return formatTensor(this);
  }
}

function storageDevice(): Device {
  return new Device("cpu");
}

function flattenShapeArgs(args: (number | number[] | readonly number[])[]): number[] {
  if (args.length === 1 && Array.isArray(args[0])) return [...(args[0] as number[])];
  for (const a of args) {
    if (typeof a !== "number") throw new TypeError(`expected sizes as numbers or one array, got ${formatShape(args as never)}`);
  }
  return args as number[];
}
