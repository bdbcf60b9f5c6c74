// scipy.stats.pearsonr / spearmanr, which evaluate's correlation metrics call: the statistic and the
// two-sided p-value.

export interface CorrelationResult {
  statistic: number;
  pvalue: number;
}

function checkPair(x: number[], y: number[]): void {
  if (x.length !== y.length) throw new Error(`x and y must have the same length (got ${x.length} and ${y.length})`);
  if (x.length < 2) throw new Error("x and y must have length at least 2.");
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function norm(xs: number[]): number {
  return Math.sqrt(xs.reduce((a, b) => a + b * b, 0));
}

export function pearsonr(x: number[], y: number[]): CorrelationResult {
  checkPair(x, y);
  const n = x.length;
  // scipy warns and returns NaN: the correlation of a constant is undefined
  if (x.every((v) => v === x[0]) || y.every((v) => v === y[0])) return { statistic: NaN, pvalue: NaN };
  if (n === 2) return { statistic: Math.sign(x[1]! - x[0]!) * Math.sign(y[1]! - y[0]!), pvalue: 1.0 };
  const centred = (v: number[]) => {
    const m = mean(v);
    const d = v.map((a) => a - m);
    // scaled by the largest deviation first, as scipy does, to keep the norm from overflowing
    const max = Math.max(...d.map(Math.abs));
    return d.map((a) => a / max);
  };
  const xm = centred(x);
  const ym = centred(y);
  const nx = norm(xm);
  const ny = norm(ym);
  let r = 0;
  for (let i = 0; i < n; i++) r += (xm[i]! / nx) * (ym[i]! / ny);
  r = Math.max(Math.min(r, 1.0), -1.0);
  // r follows Beta(n/2 - 1, n/2 - 1) on [-1, 1] under the null hypothesis
  const ab = n / 2 - 1;
  const pvalue = 2 * regularizedIncompleteBeta((1 - Math.abs(r)) / 2, ab, ab);
  return { statistic: r, pvalue };
}

/** Ranks from 1, ties sharing their average rank (scipy.stats.rankdata's "average"). */
export function rankdata(values: number[]): number[] {
  const order = values.map((_, i) => i).sort((a, b) => values[a]! - values[b]!);
  const ranks = new Array<number>(values.length);
  let start = 0;
  while (start < order.length) {
    let end = start;
    while (end + 1 < order.length && values[order[end + 1]!] === values[order[start]!]) end++;
    const rank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) ranks[order[k]!] = rank;
    start = end + 1;
  }
  return ranks;
}

export function spearmanr(x: number[], y: number[]): CorrelationResult {
  checkPair(x, y);
  if (x.every((v) => v === x[0]) || y.every((v) => v === y[0])) return { statistic: NaN, pvalue: NaN };
  const rs = pearsonr(rankdata(x), rankdata(y)).statistic;
  // scipy's t-test on the rank correlation, n - 2 degrees of freedom
  const dof = x.length - 2;
  const t2 = (rs * rs * dof) / Math.max((rs + 1.0) * (1.0 - rs), 0);
  const pvalue = Number.isFinite(t2) ? regularizedIncompleteBeta(dof / (dof + t2), dof / 2, 0.5) : 0;
  return { statistic: rs, pvalue };
}

// Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for positive arguments.
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

function lgamma(z: number): number {
  if (z < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * z))) - lgamma(1 - z);
  const zz = z - 1;
  let a = LANCZOS[0]!;
  const t = zz + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i]! / (zz + i);
  return 0.5 * Math.log(2 * Math.PI) + (zz + 0.5) * Math.log(t) - t + Math.log(a);
}

/** I_x(a, b) by its continued fraction (modified Lentz), using the symmetry where that converges faster. */
export function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * Math.log(x) + b * Math.log1p(-x));
  if (x > (a + 1) / (a + b + 2)) return 1 - (front * betaContinuedFraction(1 - x, b, a)) / b;
  return (front * betaContinuedFraction(x, a, b)) / a;
}

function betaContinuedFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10_000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return h;
}
