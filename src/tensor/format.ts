// Printing tensors the way PyTorch does: tensor([[ 0.1000, -2.0000]], requires_grad=True).
import type { Tensor } from "./tensor.js";
import { bool, float32, int64 } from "./dtype.js";
import { readFlat } from "../ops/convert.js";

const EDGE_ITEMS = 3;
const SUMMARIZE_THRESHOLD = 1000;

function formatFloats(values: number[]): (v: number) => string {
  const finite = values.filter(Number.isFinite);
  const allInts = finite.every((v) => Number.isInteger(v));
  const maxAbs = finite.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const minAbs = finite.filter((v) => v !== 0).reduce((m, v) => Math.min(m, Math.abs(v)), Infinity);
  const sci = finite.length > 0 && (maxAbs >= 1e8 || (minAbs < 1e-4 && minAbs !== Infinity) || maxAbs / minAbs > 1e3 && !allInts && minAbs < 0.1);
  const special = (v: number) => (Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf");
  if (sci) return (v) => (Number.isFinite(v) ? v.toExponential(4).replace(/e([+-])(\d)$/, "e$10$2") : special(v));
  if (allInts) return (v) => (Number.isFinite(v) ? `${v.toFixed(0)}.` : special(v));
  return (v) => (Number.isFinite(v) ? v.toFixed(4) : special(v));
}

export function formatTensor(t: Tensor): string {
  if (t._disposed || t.storage.released) return "tensor(<released>)";
  const values = readFlat(t);
  const summarize = values.length > SUMMARIZE_THRESHOLD;
  let fmt: (v: number | boolean) => string;
  if (t.dtype === bool) fmt = (v) => (v ? "True" : "False");
  else if (t.dtype.is_floating_point) {
    const f = formatFloats(values as number[]);
    fmt = (v) => f(v as number);
  } else fmt = (v) => String(v);
  const width = Math.max(1, ...values.map((v) => fmt(v).length));
  const cell = (v: number | boolean) => fmt(v).padStart(width);
  const indent = "tensor(".length;
  const build = (dim: number, start: number): string => {
    if (t.ndim === 0) return fmt(values[0]);
    const size = t.shape[dim];
    const inner = t.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
    const pick = summarize && size > 2 * EDGE_ITEMS
      ? [...Array(EDGE_ITEMS).keys(), -1, ...Array.from({ length: EDGE_ITEMS }, (_, i) => size - EDGE_ITEMS + i)]
      : [...Array(size).keys()];
    if (dim === t.ndim - 1) {
      return `[${pick.map((i) => (i < 0 ? "..." : cell(values[start + i]))).join(", ")}]`;
    }
    const sep = `,${"\n".repeat(t.ndim - dim - 1)}${" ".repeat(indent + dim + 1)}`;
    return `[${pick.map((i) => (i < 0 ? "..." : build(dim + 1, start + i * inner))).join(sep)}]`;
  };
  const body = t.numel() === 0 && t.ndim > 0 ? "[]" : build(0, 0);
  const extras: string[] = [];
  if (t.numel() === 0 && t.ndim > 1) extras.push(`size=(${t.shape.join(", ")})`);
  if (t.device.type !== "cpu") extras.push(`device='${t.device}'`);
  if (t.dtype !== float32 && t.dtype !== int64 && t.dtype !== bool) extras.push(`dtype=${t.dtype}`);
  if (t.grad_fn) extras.push(`grad_fn=<${t.grad_fn.name()}>`);
  else if (t.requires_grad) extras.push("requires_grad=True");
  return `tensor(${body}${extras.map((e) => `, ${e}`).join("")})`;
}
