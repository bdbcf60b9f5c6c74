// Reverse-mode differentiation: runs the graph's nodes from the root to the leaves in dependency order.
import { Node } from "./node.js";
import { no_grad } from "./grad_mode.js";
import { withScope } from "./scope.js";
import type { Tensor } from "../tensor/tensor.js";
import { ones_like } from "../tensor/creation.js";
import { float32 } from "../tensor/dtype.js";
import { awaitSideWrites, joinDeferredSideWork } from "../backend/side_stream.js";

export interface BackwardOptions {
  gradient?: Tensor;
  retain_graph?: boolean;
}

export function backward(root: Tensor, options: BackwardOptions = {}): void {
  if (!root.requires_grad) {
    throw new Error("element 0 of tensors does not require grad and does not have a grad_fn");
  }
  let gradient = options.gradient;
  if (gradient === undefined) {
    if (root.numel() !== 1) throw new Error("grad can be implicitly created only for scalar outputs");
    gradient = no_grad(() => ones_like(root));
  } else if (!sameShape(gradient.shape, root.shape)) {
    throw new Error(`backward(gradient): gradient has shape [${gradient.shape}] but the tensor has shape [${root.shape}]`);
  } else {
    gradient = gradient.alias();
  }
  const seed = gradient;
  no_grad(() =>
    withScope(() => {
      if (!root.grad_fn) {
        accumulateLeaf(root, seed);
        runPostAccumulateHooks(root);
        return;
      }
      try {
        runGraph(root.grad_fn, seed, options.retain_graph ?? false);
      } catch (e) {
        // (a capture that failed part-way may refuse the join: the capture's abort drops it)
        try {
          joinDeferredSideWork();
        } catch {
          // the backward's own error says more
        }
        throw e;
      }
      // what side-stream work wrote (backend/side_stream.ts) is read after the backward: the optimizer, clipping
      joinDeferredSideWork();
    }),
  );
}

function runGraph(rootNode: Node, seed: Tensor, retainGraph: boolean): void {
  const { dependencies, hookedLeaves } = countDependencies(rootNode);
  /** Leaves with post-accumulate hooks that received a gradient from this backward. */
  const accumulated = new Set<Tensor>();
  // A hooked leaf's last edge: its hooks run once, after all of its gradients (an input without one counts too)
  const leafEdgeDone = (leaf: Tensor): void => {
    const left = hookedLeaves.get(leaf)! - 1;
    hookedLeaves.set(leaf, left);
    if (left === 0 && accumulated.has(leaf)) runPostAccumulateHooks(leaf);
  };
  const grads = new Map<Node, Tensor>([[rootNode, seed]]);
  const ready: Node[] = [rootNode];
  while (ready.length > 0) {
    const node = ready.pop()!;
    const grad = grads.get(node)!;
    grads.delete(node);
    const into = accumulators(node, grads);
    const inputGrads = withScope(() => node.apply(grad, into));
    const handedOn = new Set<Tensor>();
    node.next.forEach((edge, i) => {
      let g = inputGrads[i] ?? null;
      const hooked = edge !== null && "leaf" in edge && hookedLeaves.has(edge.leaf) ? edge.leaf : null;
      if (g === null) {
        if (hooked) leafEdgeDone(hooked);
        return;
      }
      if (edge === null) {
        if (g !== grad) g.dispose();
        return;
      }
      // A backward may pass its incoming gradient (or one tensor) on to several inputs: give each its own handle.
      if (g === grad || handedOn.has(g)) g = g.alias();
      handedOn.add(g);
      // As PyTorch's engine does, an input's gradient takes the input's dtype (a float32 product's gradient
      // reaching a 16-bit tensor, say).
      const dtype = "leaf" in edge ? edge.leaf.dtype : edge.dtype;
      // Side-stream work may still be writing g: the main stream reads it only after that work, unless g becomes
      // a leaf's .grad as it is (accumulateLeaf waits where it reads g).
      if (!("leaf" in edge) || g.dtype !== dtype || hooked) awaitSideWrites(g);
      if (g.dtype !== dtype) {
        const cast = g.to(dtype);
        g.dispose();
        g = cast;
      }
      if ("leaf" in edge) {
        accumulateLeaf(edge.leaf, g);
        if (hooked) {
          accumulated.add(hooked);
          leafEdgeDone(hooked);
        }
        return;
      }
      const previous = grads.get(edge.node);
      if (previous === g) {
        // the backward added its gradient into the one it was offered
      } else if (previous) {
        grads.set(edge.node, previous.add(g));
        previous.dispose();
        g.dispose();
      } else {
        grads.set(edge.node, g);
      }
      const left = dependencies.get(edge.node)! - 1;
      dependencies.set(edge.node, left);
      if (left === 0) ready.push(edge.node);
    });
    grad.dispose();
    if (!retainGraph) node.release();
  }
  for (const g of grads.values()) g.dispose();
}

/**
 * The gradients already summed for `node`'s inputs that its backward may add to in place (BackwardFn's `into`):
 * float32, contiguous, held by no other tensor (a backward that handed one tensor to two inputs made them share
 * it) and without a 16-bit copy to go stale, each offered to one input only.
 */
function accumulators(node: Node, grads: Map<Node, Tensor>): (Tensor | null)[] {
  const offered = new Set<Tensor>();
  return node.next.map((edge) => {
    const g = edge !== null && "node" in edge ? grads.get(edge.node) : undefined;
    if (!g || offered.has(g) || g.dtype !== float32 || !g.isExclusive() || g.storage.shared || g._lowp !== null) return null;
    offered.add(g);
    return g;
  });
}

/** Each node's count of incoming edges, and each leaf with post-accumulate hooks its count. */
function countDependencies(root: Node): { dependencies: Map<Node, number>; hookedLeaves: Map<Tensor, number> } {
  const dependencies = new Map<Node, number>([[root, 0]]);
  const hookedLeaves = new Map<Tensor, number>();
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!;
    for (const edge of node.next) {
      if (edge === null) continue;
      if ("leaf" in edge) {
        if (edge.leaf._postAccumulateGradHooks?.length) hookedLeaves.set(edge.leaf, (hookedLeaves.get(edge.leaf) ?? 0) + 1);
        continue;
      }
      const seen = dependencies.has(edge.node);
      dependencies.set(edge.node, (dependencies.get(edge.node) ?? 0) + 1);
      if (!seen) stack.push(edge.node);
    }
  }
  return { dependencies, hookedLeaves };
}

/** Runs the leaf's post-accumulate hooks over a copy of their list, so that a hook may remove itself. */
function runPostAccumulateHooks(leaf: Tensor): void {
  for (const hook of [...(leaf._postAccumulateGradHooks ?? [])]) hook(leaf);
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.grad === null) {
    // As PyTorch's AccumulateGrad, .grad takes the gradient itself only where nothing else holds its memory: a
    // backward that handed one tensor to several inputs made them share it, and a later accumulation into .grad
    // would change what the others read.
    const exclusive = (g.isExclusive() && !g.storage.shared) || g._gradientSlice;
    if (!exclusive) awaitSideWrites(g);
    const owned = exclusive ? g : g.clone();
    if (owned !== g) g.dispose();
    owned._persistent = true;
    leaf.grad = owned;
  } else {
    awaitSideWrites(g);
    awaitSideWrites(leaf.grad);
    leaf.grad.add_(g);
    g.dispose();
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
