// A tqdm progress bar: the same line format (format_meter), smoothed rate and ~10 refreshes a second on a
// terminal. Where stderr is not a terminal (CI logs, files) carriage-return redraws would pile up, so it
// prints a plain line at each tenth of the total (or every 10 s without a total) and the final state.
import { floatRepr, formatFixedWidth, formatG } from "../util/pyformat.js";

export interface TqdmOptions {
  total?: number | null;
  desc?: string;
  unit?: string;
  disable?: boolean;
  /** Keep the finished bar on screen (true) or erase it (false). */
  leave?: boolean;
  /** Line offset below the cursor, for bars nested under another one. */
  position?: number;
  /** Bar line width; defaults to the terminal's width (tqdm's dynamic_ncols). */
  ncols?: number;
  mininterval?: number;
  /** Where the bar goes; tests pass a fake. */
  file?: ProgressStream;
}

/** The slice of a Node write stream the bar uses. */
export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** tqdm.format_interval: `MM:SS`, or `H:MM:SS` past an hour. */
export function format_interval(seconds: number): string {
  const whole = Math.trunc(seconds);
  const s = whole % 60;
  const mins = Math.trunc(whole / 60);
  const h = Math.trunc(mins / 60);
  const m = mins % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s)}` : `${two(mins)}:${two(s)}`;
}

/** tqdm.format_num: 3 significant digits when that is shorter than Python's str(n). */
export function format_num(n: number): string {
  const short = formatG(n, 3).replace("+0", "+").replace("-0", "-");
  const plain = Number.isInteger(n) ? String(n) : floatRepr(n);
  return short.length < plain.length ? short : plain;
}

// tqdm's unicode bar: eighth blocks for the partially filled cell
const BAR_CHARS = " ▏▎▍▌▋▊▉█";

function bar(frac: number, width: number): string {
  const nsyms = BAR_CHARS.length - 1;
  const clamped = Math.max(0, Math.min(1, frac));
  const units = Math.trunc(clamped * width * nsyms);
  const full = Math.trunc(units / nsyms);
  const partial = units % nsyms;
  let out = BAR_CHARS[nsyms]!.repeat(full);
  if (full < width) out += BAR_CHARS[partial]! + " ".repeat(width - full - 1);
  return out;
}

export interface FormatMeterOptions {
  prefix?: string;
  unit?: string;
  /** Items per second; n / elapsed when not given. */
  rate?: number | null;
  postfix?: string;
  ncols?: number | null;
}

/**
 * tqdm.format_meter: `desc: 45%|████▌     | 620/1377 [00:12<00:15, 50.20it/s, loss=0.41]`.
 * Without ncols the bar is 10 cells wide; with it the whole line is ncols wide.
 */
export function format_meter(n: number, total: number | null | undefined, elapsed: number, options: FormatMeterOptions = {}): string {
  const unit = options.unit ?? "it";
  const prefix = options.prefix ? `${options.prefix}: ` : "";
  const rate = options.rate ?? (elapsed > 0 ? n / elapsed : null);
  const inv_rate = rate ? 1 / rate : null;
  const rate_fmt =
    inv_rate !== null && inv_rate > 1
      ? `${formatFixedWidth(inv_rate, 5, 2)}s/${unit}`
      : `${rate ? formatFixedWidth(rate, 5, 2) : "?"}${unit}/s`;
  const postfix = options.postfix ? `, ${options.postfix}` : "";
  const elapsed_str = format_interval(elapsed);
  if (total === null || total === undefined || total <= 0 || n > total) {
    return `${prefix}${n}${unit} [${elapsed_str}, ${rate_fmt}${postfix}]`;
  }
  const frac = n / total;
  const remaining_str = rate ? format_interval((total - n) / rate) : "?";
  const l_bar = `${prefix}${formatFixedWidth(frac * 100, 3, 0)}%|`;
  const r_bar = `| ${n}/${total} [${elapsed_str}<${remaining_str}, ${rate_fmt}${postfix}]`;
  const width = options.ncols ? Math.max(1, options.ncols - [...l_bar].length - [...r_bar].length) : 10;
  return l_bar + bar(frac, width) + r_bar;
}

/** tqdm's EMA of the rate: weight `smoothing` for the newest sample, bias-corrected. */
class Ema {
  private last = 0;
  private calls = 0;
  constructor(private readonly alpha: number) {}
  add(x: number): void {
    this.last = this.alpha * x + (1 - this.alpha) * this.last;
    this.calls++;
  }
  get value(): number {
    return this.calls ? this.last / (1 - (1 - this.alpha) ** this.calls) : this.last;
  }
}

function formatPostfixValue(v: unknown): string {
  if (typeof v === "number") return format_num(v);
  return String(v).trim();
}

export class Tqdm {
  n = 0;
  total: number | null;
  desc: string;
  readonly disable: boolean;
  private readonly unit: string;
  private readonly leave: boolean;
  private readonly position: number;
  private readonly ncols: number | undefined;
  private readonly mininterval: number;
  private readonly file: ProgressStream;
  private readonly tty: boolean;
  private postfix = "";
  private readonly start: number;
  private lastPrintTime: number;
  private lastPrintN = 0;
  private lastLen = 0;
  private lastTenth = 0;
  private readonly dn = new Ema(0.3);
  private readonly dt = new Ema(0.3);
  private closed = false;
  private lastLogTime = -Infinity;

  constructor(options: TqdmOptions = {}) {
    this.total = options.total ?? null;
    this.desc = options.desc ?? "";
    this.unit = options.unit ?? "it";
    this.disable = options.disable ?? false;
    this.leave = options.leave ?? true;
    this.position = options.position ?? 0;
    this.mininterval = options.mininterval ?? 0.1;
    this.file = options.file ?? process.stderr;
    this.tty = this.file.isTTY === true;
    this.ncols = options.ncols ?? (this.tty ? this.file.columns : undefined);
    this.start = now();
    this.lastPrintTime = this.start;
    if (!this.disable && this.tty) this.display();
  }

  get elapsed(): number {
    return now() - this.start;
  }

  update(n = 1): void {
    if (this.disable || this.closed) return;
    this.n += n;
    const t = now();
    if (t - this.lastPrintTime < this.mininterval) return;
    this.dn.add(this.n - this.lastPrintN);
    this.dt.add(t - this.lastPrintTime);
    this.lastPrintN = this.n;
    this.lastPrintTime = t;
    if (this.tty) this.display();
    else this.logProgress(t);
  }

  /** Shown after the rate as `k=v` pairs; numbers with 3 significant digits, as tqdm does. */
  set_postfix(values: Record<string, unknown>, refresh = true): void {
    this.postfix = Object.entries(values)
      .map(([k, v]) => `${k}=${formatPostfixValue(v)}`)
      .join(", ");
    if (refresh && this.tty && !this.disable && !this.closed) this.display();
  }

  set_description(desc: string): void {
    this.desc = desc;
  }

  /** The current line, as format_meter renders it. */
  toString(): string {
    const dt = this.dt.value;
    const rate = dt > 0 ? this.dn.value / dt : null;
    return format_meter(this.n, this.total, this.elapsed, {
      prefix: this.desc,
      unit: this.unit,
      rate,
      postfix: this.postfix,
      ncols: this.ncols,
    });
  }

  /** Prints a message (to stdout, like tqdm.write) without breaking the bar. */
  write(message: string): void {
    if (this.tty && !this.disable && !this.closed) {
      this.clearLine();
      process.stdout.write(`${message}\n`);
      this.display();
    } else {
      process.stdout.write(`${message}\n`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.disable) return;
    if (!this.tty) {
      this.file.write(`${this}\n`);
      return;
    }
    if (this.leave) {
      this.display();
      if (this.position === 0) this.file.write("\n");
    } else {
      this.clearLine();
    }
  }

  private display(): void {
    const line = this.toString();
    const len = [...line].length;
    this.inPosition(`\r${line}${" ".repeat(Math.max(this.lastLen - len, 0))}`);
    this.lastLen = len;
  }

  private clearLine(): void {
    this.inPosition(`\r${" ".repeat(this.lastLen)}\r`);
    this.lastLen = 0;
  }

  /** Writes on the bar's own line: `position` lines below the cursor, moving back up afterwards. */
  private inPosition(text: string): void {
    if (this.position === 0) this.file.write(text);
    else this.file.write(`${"\n".repeat(this.position)}${text}\x1b[${this.position}A`);
  }

  private logProgress(t: number): void {
    if (this.total) {
      const tenth = Math.floor((10 * this.n) / this.total);
      if (tenth <= this.lastTenth || this.n >= this.total) return; // the final line comes from close()
      this.lastTenth = tenth;
    } else if (t - this.lastLogTime < 10) return;
    this.lastLogTime = t;
    this.file.write(`${this}\n`);
  }
}

function now(): number {
  return performance.now() / 1000;
}

/** `tqdm(total=..., desc=...)` */
export function tqdm(options: TqdmOptions = {}): Tqdm {
  return new Tqdm(options);
}

