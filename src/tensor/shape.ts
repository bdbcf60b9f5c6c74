// Shape arithmetic shared by the ops: strides, broadcasting, dimension normalisation.
export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function formatShape(shape: readonly unknown[]): string {
  return `[${shape.join(", ")}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Wraps a possibly negative dim into [0, ndim); PyTorch's error otherwise. */
export function normDim(dim: number, ndim: number): number {
  const n = Math.max(ndim, 1);
  if (!Number.isInteger(dim) || dim < -n || dim >= n) {
    throw new RangeError(`Dimension out of range (expected to be in range of [${-n}, ${n - 1}], but got ${dim})`);
  }
  return dim < 0 ? dim + n : dim;
}

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(
        `The size of tensor a (${da}) must match the size of tensor b (${db}) at non-singleton dimension ${i}`,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read a tensor of `shape`/`strides` as if it had `target` shape (stride 0 on broadcast dims). */
export function broadcastStrides(shape: readonly number[], strides: readonly number[], target: readonly number[]): number[] {
  const out = new Array<number>(target.length).fill(0);
  const lead = target.length - shape.length;
  if (lead < 0) throw new Error(`cannot broadcast shape ${formatShape(shape)} to ${formatShape(target)}`);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === target[lead + i]) out[lead + i] = shape[i] === 1 ? 0 : strides[i];
    else if (shape[i] === 1) out[lead + i] = 0;
    else throw new Error(`The expanded size of the tensor (${target[lead + i]}) must match the existing size (${shape[i]}) at non-singleton dimension ${lead + i}.  Target sizes: ${formatShape(target)}.  Tensor sizes: ${formatShape(shape)}`);
  }
  return out;
}
