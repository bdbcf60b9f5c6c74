// Random expression graphs for autograd tests: on [2, 3] nodes, each node an op of earlier nodes (node 0 is the
// leaf x), so that leaves and subexpressions feed several ops and an op may take one node twice. The ops include
// linear layers over a weight leaf w (whose backward may add into a gradient already summed) and w's rows looked up
// by embedding; a bias leaf c broadcast over rows and also taken by a layer norm as its weight and bias; softmax;
// and views (narrow, cat) and a reduction whose backwards hand on views of one gradient. The same plan runs on
// tensors (any device) and, in double precision, on JS numbers.
import * as F from "../../src/nn/functional.js";
import { torch } from "../../src/torch.js";
import type { Tensor } from "../../src/tensor/tensor.js";

export const ROWS = 2;
export const COLS = 3;

/** The leaves' values, row-major: x [ROWS, COLS], w [COLS, COLS], c [COLS]. */
export interface LeafValues {
  x: number[];
  w: number[];
  c: number[];
}
export interface LeafTensors {
  x: Tensor;
  w: Tensor;
  c: Tensor;
}

type Mat = number[];
type Op = [(n: Tensor[], l: LeafTensors, i: number, j: number) => Tensor, (n: Mat[], l: LeafValues, i: number, j: number) => Mat];

const map = (m: Mat, f: (v: number, e: number) => number): Mat => m.map(f);
const linear = (m: Mat, w: number[], c: number[] | null): Mat =>
  Array.from({ length: ROWS * COLS }, (_, e) => {
    const [row, out] = [Math.floor(e / COLS), e % COLS];
    let acc = c ? c[out]! : 0;
    for (let k = 0; k < COLS; k++) acc += m[row * COLS + k]! * w[out * COLS + k]!;
    return acc;
  });

/** Row r of a row-major matrix of COLS columns. */
const rowOf = (m: number[], r: number): number[] => m.slice(r * COLS, r * COLS + COLS);
/** Each row's values through f(row) (a function of the row's COLS values). */
const rows = (m: Mat, f: (row: number[]) => number[]): Mat => Array.from({ length: ROWS }, (_, r) => f(rowOf(m, r))).flat();
const softmax = (row: number[]): number[] => {
  const top = Math.max(...row);
  const e = row.map((v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
};

const layerNorm = (row: number[], c: number[]): number[] => {
  const mean = row.reduce((a, b) => a + b, 0) / COLS;
  const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / COLS;
  return row.map((v, e) => ((v - mean) / Math.sqrt(variance + 1e-5)) * c[e]! + c[e]!);
};

const OPS: Op[] = [
  [(n, _, i, j) => n[i]!.add(n[j]!), (n, _, i, j) => map(n[i]!, (v, e) => v + n[j]![e]!)],
  [(n, _, i, j) => n[i]!.sub(n[j]!), (n, _, i, j) => map(n[i]!, (v, e) => v - n[j]![e]!)],
  [(n, _, i, j) => n[i]!.mul(n[j]!), (n, _, i, j) => map(n[i]!, (v, e) => v * n[j]![e]!)],
  [(n, l, i) => F.linear(n[i]!, l.w, l.c), (n, l, i) => linear(n[i]!, l.w, l.c)],
  [(n, l, i) => F.linear(n[i]!, l.w), (n, l, i) => linear(n[i]!, l.w, null)],
  [(n, _, i) => n[i]!.tanh(), (n, _, i) => map(n[i]!, Math.tanh)],
  [(n, l, i) => n[i]!.add(l.c), (n, l, i) => map(n[i]!, (v, e) => v + l.c[e % COLS]!)],
  [(n, _, i) => F.softmax(n[i]!, -1), (n, _, i) => rows(n[i]!, softmax)],
  // the columns rotated left by one: narrow views joined by cat
  [(n, _, i) => torch.cat([n[i]!.narrow(1, 1, COLS - 1), n[i]!.narrow(1, 0, 1)], 1),
    (n, _, i) => rows(n[i]!, (row) => [...row.slice(1), row[0]!])],
  // layer norm with c as both its weight and its bias: two edges of one op to one leaf
  [(n, l, i) => F.layer_norm(n[i]!, [COLS], l.c, l.c), (n, l, i) => rows(n[i]!, (row) => layerNorm(row, l.c))],
  // rows i % COLS and j % COLS of the weight leaf, looked up by embedding (whose backward scatters into its grad)
  [(_, l, i, j) => F.embedding(torch.tensor([i % COLS, j % COLS]).to(l.w.device), l.w),
    (_, l, i, j) => [...rowOf(l.w, i % COLS), ...rowOf(l.w, j % COLS)]],
  // each row scaled by the sum of node j's row (a reduction kept as a column, broadcast back)
  [(n, _, i, j) => n[i]!.mul(n[j]!.sum(1, true)),
    (n, _, i, j) => map(n[i]!, (v, e) => v * rowOf(n[j]!, Math.floor(e / COLS)).reduce((a, b) => a + b, 0))],
];

/** Node s + 1 is steps[s] = [op, i, j] of nodes i and j; the loss sums the last node and node k. */
export interface GraphPlan {
  steps: (readonly [number, number, number])[];
  k: number;
}

export function randomPlan(random: () => number): GraphPlan {
  const steps = Array.from({ length: 2 + Math.floor(random() * 5) }, (_, s) =>
    [Math.floor(random() * OPS.length), Math.floor(random() * (s + 1)), Math.floor(random() * (s + 1))] as const);
  return { steps, k: Math.floor(random() * (steps.length + 1)) };
}

/** Leaf values in [-1, 1] (w in [-0.6, 0.6], c in [-0.5, 0.5], so that the graphs' values stay small). */
export function randomLeafValues(random: () => number): LeafValues {
  const values = (n: number, scale: number) => Array.from({ length: n }, () => (random() * 2 - 1) * scale);
  return { x: values(ROWS * COLS, 1), w: values(COLS * COLS, 0.6), c: values(COLS, 0.5) };
}

/** The leaves as float32 tensors on `device` that require gradients. */
export function leafTensors(values: LeafValues, device: "cpu" | "cuda" = "cpu"): LeafTensors {
  const leaf = (v: number[], shape: number[]) => torch.tensor(v, { dtype: torch.float32 }).reshape(shape).to(device).requires_grad_();
  return { x: leaf(values.x, [ROWS, COLS]), w: leaf(values.w, [COLS, COLS]), c: leaf(values.c, [COLS]) };
}

/** The plan's loss on the leaves, and its backward run `passes` times (retain_graph between them). */
export function planBackward(plan: GraphPlan, leaves: LeafTensors, passes: number): void {
  const nodes: Tensor[] = [leaves.x];
  for (const [o, i, j] of plan.steps) nodes.push(OPS[o]![0](nodes, leaves, i, j));
  const loss = nodes.at(-1)!.sum().add(nodes[plan.k]!.sum());
  for (let pass = 1; pass <= passes; pass++) loss.backward(undefined, { retain_graph: pass < passes });
}

/** The plan's loss in double precision. */
export function planLossValue(plan: GraphPlan, leaves: LeafValues): number {
  const nodes: Mat[] = [leaves.x];
  for (const [o, i, j] of plan.steps) nodes.push(OPS[o]![1](nodes, leaves, i, j));
  return [...nodes.at(-1)!, ...nodes[plan.k]!].reduce((a, b) => a + b, 0);
}
