// torch.nn.Parameter: a leaf tensor a Module owns. Its memory lives as long as the module (never scope-released).
import { Tensor } from "../tensor/tensor.js";

export class Parameter extends Tensor {
  constructor(data: Tensor, requires_grad = true) {
    data.checkAlive();
    super(data.storage.retain(), data.shape, data.strides, data.offset, data.dtype);
    this._persistent = true;
    if (requires_grad) this.requires_grad_(true);
  }

  override toString(): string {
    return `Parameter containing:\n${super.toString()}`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

/** Marks a tensor as owned by a module or optimizer: scopes never release it. */
export function persistent<T extends Tensor>(t: T): T {
  t._persistent = true;
  return t;
}
