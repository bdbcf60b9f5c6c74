// Python's float formatting (`repr`, `f"{x:.4g}"`, `f"{x:5.2f}"`) reproduced exactly. The logs, progress bars
// and reprs must print what transformers and tqdm print, and JS's toFixed/toPrecision differ on exact ties
// (Python rounds half to even on the double's exact decimal value) and on when to switch to exponents.

/** The exact decimal value of a finite |x|: the integer `digits` times 10^-scale. */
function exactDecimal(x: number): { digits: bigint; scale: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mantissa = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (biased !== 0) mantissa |= 1n << 52n;
  const exp = (biased === 0 ? 1 : biased) - 1075;
  if (exp >= 0) return { digits: mantissa << BigInt(exp), scale: 0 };
  // m / 2^k = m * 5^k / 10^k
  return { digits: mantissa * 5n ** BigInt(-exp), scale: -exp };
}

/** Rounds |x| half-to-even to `f` fraction digits; returns the integer of units of 10^-f. */
function roundedUnits(x: number, f: number): bigint {
  const { digits, scale } = exactDecimal(x);
  if (scale <= f) return digits * 10n ** BigInt(f - scale);
  const div = 10n ** BigInt(scale - f);
  const q = digits / div;
  const twiceRem = (digits % div) * 2n;
  if (twiceRem > div || (twiceRem === div && q % 2n === 1n)) return q + 1n;
  return q;
}

function nonFinite(x: number): string | undefined {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  return undefined;
}

function sign(x: number): string {
  return x < 0 || Object.is(x, -0) ? "-" : "";
}

function unitsToFixed(units: bigint, f: number): string {
  const s = units.toString().padStart(f + 1, "0");
  return f === 0 ? s : `${s.slice(0, s.length - f)}.${s.slice(s.length - f)}`;
}

/** Python `f"{x:.{f}f}"`. */
export function formatFixed(x: number, f: number): string {
  return nonFinite(x) ?? sign(x) + unitsToFixed(roundedUnits(x, f), f);
}

/** Python `f"{x:{width}.{f}f}"` (right-aligned). */
export function formatFixedWidth(x: number, width: number, f: number): string {
  return formatFixed(x, f).padStart(width);
}

/** Decimal exponent of |x| after rounding to p significant digits, and the p digits. */
function significant(x: number, p: number): { mant: string; exp: number } {
  const { digits, scale } = exactDecimal(x);
  let exp = digits.toString().length - 1 - scale;
  let units = roundedUnits(x, p - 1 - exp);
  if (units.toString().length > p) {
    exp += 1; // rounding carried into a new digit (9.9995 → 10.00)
    units = roundedUnits(x, p - 1 - exp);
  }
  return { mant: units.toString(), exp };
}

function expSuffix(exp: number): string {
  return `e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
}

/** Python `f"{x:.{p}g}"`. */
export function formatG(x: number, p: number): string {
  const nf = nonFinite(x);
  if (nf !== undefined) return nf;
  if (x === 0) return `${sign(x)}0`;
  const precision = Math.max(1, p);
  const { mant, exp } = significant(x, precision);
  const strip = (s: string) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
  if (exp >= -4 && exp < precision) {
    return sign(x) + strip(formatFixed(Math.abs(x), precision - 1 - exp));
  }
  const m = mant.length > 1 ? `${mant[0]}.${mant.slice(1)}` : mant;
  return sign(x) + strip(m) + expSuffix(exp);
}

/** Python `repr(float)`: shortest round-trip digits, exponent outside 1e-4 <= |x| < 1e16, always a `.0`. */
export function floatRepr(x: number): string {
  const nf = nonFinite(x);
  if (nf !== undefined) return nf;
  if (x === 0) return `${sign(x)}0.0`;
  const [m, e] = Math.abs(x).toExponential().split("e");
  const digits = m!.replace(".", "");
  const exp = Number(e);
  if (exp >= -4 && exp < 16) {
    let s: string;
    if (exp < 0) s = `0.${"0".repeat(-exp - 1)}${digits}`;
    else if (digits.length <= exp + 1) s = `${digits}${"0".repeat(exp + 1 - digits.length)}.0`;
    else s = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
    return sign(x) + s;
  }
  return sign(x) + (digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits) + expSuffix(exp);
}

/** Python `repr(str)`: single quotes unless the text has a single quote and no double quote. */
export function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = "";
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === quote || ch === "\\") out += `\\${ch}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return quote + out + quote;
}

/**
 * Python `repr` of a JSON-like value. JS has one number type, so `floats` decides how whole numbers print:
 * "auto" prints them as ints (`3`), "all" as floats (`3.0`) — metrics and hyperparameters are floats in Python.
 */
export function pyRepr(value: unknown, floats: "auto" | "all" = "auto"): string {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return Number.isInteger(value) && floats === "auto" ? String(value) : floatRepr(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return strRepr(value);
  if (Array.isArray(value)) return `[${value.map((v) => pyRepr(v, floats)).join(", ")}]`;
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>);
    return `{${entries.map(([k, v]) => `${strRepr(k)}: ${pyRepr(v, floats)}`).join(", ")}}`;
  }
  return String(value);
}
