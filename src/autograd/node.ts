// A node of the autograd graph: the backward function of one operation, the tensors it saved, and where the
// gradients of its inputs go. Parameter gradients are accumulated into .grad (+=), activation gradients are
// handed on; backward() releases what a node saved once it has run.
import type { Tensor } from "../tensor/tensor.js";
import type { DType } from "../tensor/dtype.js";

/** Where an input's gradient goes: its node (with the input's dtype, which the gradient is cast to), or the leaf. */
export type Edge = { node: Node; dtype: DType } | { leaf: Tensor } | null;

/**
 * Returns one gradient per input (null where an input needs none), each with that input's shape. `into[i]`, where
 * not null, already holds a gradient for input i that the engine would add this one to: a float32 contiguous
 * tensor no one else holds, which the function may add its gradient to in place (a GEMM with beta 1) and return
 * as input i's, saving the engine's addition.
 */
export type BackwardFn = (gradOutput: Tensor, into: readonly (Tensor | null)[]) => (Tensor | null)[];

export class Node {
  private backwardFn: BackwardFn | null;
  private saved: Tensor[];

  constructor(
    readonly opName: string,
    readonly next: Edge[],
    backwardFn: BackwardFn,
    saved: Tensor[],
  ) {
    this.backwardFn = backwardFn;
    this.saved = saved;
    for (const t of saved) t._savedCount++;
  }

  /** PyTorch's name for the node, e.g. "MulBackward0". */
  name(): string {
    return `${this.opName}Backward0`;
  }

  apply(gradOutput: Tensor, into: readonly (Tensor | null)[] = []): (Tensor | null)[] {
    if (!this.backwardFn) {
      throw new Error(
        "Trying to backward through the graph a second time (or directly access saved tensors after they have " +
          "already been freed). Saved intermediate values of the graph are freed when you call .backward(). " +
          "Specify retain_graph=true if you need to backward through the graph a second time.",
      );
    }
    return this.backwardFn(gradOutput, into);
  }

  release(): void {
    for (const t of this.saved) {
      t._savedCount--;
      if (t._savedCount === 0 && t._graphOwned) t.dispose();
    }
    this.saved = [];
    this.backwardFn = null;
  }

  toString(): string {
    return `<${this.name()}>`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}
