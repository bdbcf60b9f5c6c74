// Attaching an operation's backward to its output: the single place where graph nodes are made.
import { Node, type BackwardFn } from "../autograd/node.js";
import { is_grad_enabled } from "../autograd/grad_mode.js";
import type { Tensor } from "../tensor/tensor.js";

export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return is_grad_enabled() && inputs.some((t) => t?.requires_grad === true);
}

/** Makes `out` the result of a differentiable op of `inputs` when any of them requires grad. */
export function record(
  out: Tensor,
  opName: string,
  inputs: (Tensor | null | undefined)[],
  backward: BackwardFn,
  saved: Tensor[] = [],
): Tensor {
  if (!needsGrad(...inputs)) return out;
  const edges = inputs.map((t) => {
    if (!t || !t.requires_grad) return null;
    return t.grad_fn ? { node: t.grad_fn, dtype: t.dtype } : { leaf: t };
  });
  out.grad_fn = new Node(opName, edges, backward, saved);
  out.requires_grad = true;
  return out;
}
