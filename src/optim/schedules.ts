// The learning-rate multipliers of transformers' schedulers (transformers/optimization.py), formula for
// formula so the learning rates match Python's bit for bit. LambdaLR multiplies each by the initial lr.

export type LrLambda = (current_step: number) => number;

export interface ScheduleOptions {
  num_warmup_steps?: number | null;
  num_training_steps?: number | null;
  scheduler_specific_kwargs?: Record<string, unknown> | null;
  /** The optimizer's initial lr (`optimizer.defaults["lr"]`); only `polynomial` and `cosine_with_min_lr` use it. */
  initial_lr?: number;
}

/** transformers' SchedulerType values that are pure step → multiplier functions. */
export const SCHEDULER_TYPES = [
  "linear",
  "cosine",
  "cosine_with_restarts",
  "polynomial",
  "constant",
  "constant_with_warmup",
  "inverse_sqrt",
  "cosine_with_min_lr",
] as const;

export type SchedulerType = (typeof SCHEDULER_TYPES)[number];

export function isSchedulerType(name: string): name is SchedulerType {
  return (SCHEDULER_TYPES as readonly string[]).includes(name);
}

function warmup(step: number, num_warmup_steps: number): number {
  return step / Math.max(1, num_warmup_steps);
}

function progressAfterWarmup(step: number, num_warmup_steps: number, num_training_steps: number): number {
  return (step - num_warmup_steps) / Math.max(1, num_training_steps - num_warmup_steps);
}

export function constant(): LrLambda {
  return () => 1;
}

export function constant_with_warmup(num_warmup_steps: number): LrLambda {
  return (step) => (step < num_warmup_steps ? step / Math.max(1.0, num_warmup_steps) : 1.0);
}

export function linear(num_warmup_steps: number, num_training_steps: number): LrLambda {
  return (step) => {
    if (step < num_warmup_steps) return warmup(step, num_warmup_steps);
    return Math.max(0.0, (num_training_steps - step) / Math.max(1, num_training_steps - num_warmup_steps));
  };
}

export function cosine(num_warmup_steps: number, num_training_steps: number, num_cycles = 0.5): LrLambda {
  return (step) => {
    if (step < num_warmup_steps) return warmup(step, num_warmup_steps);
    const progress = progressAfterWarmup(step, num_warmup_steps, num_training_steps);
    return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * num_cycles * 2.0 * progress)));
  };
}

export function cosine_with_restarts(num_warmup_steps: number, num_training_steps: number, num_cycles = 1): LrLambda {
  return (step) => {
    if (step < num_warmup_steps) return warmup(step, num_warmup_steps);
    const progress = progressAfterWarmup(step, num_warmup_steps, num_training_steps);
    if (progress >= 1.0) return 0.0;
    return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * (pyMod(num_cycles * progress, 1.0)))));
  };
}

export function cosine_with_min_lr(
  num_warmup_steps: number,
  num_training_steps: number,
  min_lr_rate: number,
  num_cycles = 0.5,
): LrLambda {
  return (step) => {
    if (step < num_warmup_steps) return warmup(step, num_warmup_steps);
    const progress = progressAfterWarmup(step, num_warmup_steps, num_training_steps);
    const factor = 0.5 * (1.0 + Math.cos(Math.PI * num_cycles * 2.0 * progress));
    return Math.max(0, factor * (1 - min_lr_rate) + min_lr_rate);
  };
}

export function polynomial(
  num_warmup_steps: number,
  num_training_steps: number,
  lr_init: number,
  lr_end = 1e-7,
  power = 1.0,
): LrLambda {
  if (!(lr_init > lr_end)) throw new Error(`lr_end (${lr_end}) must be smaller than initial lr (${lr_init})`);
  return (step) => {
    if (step < num_warmup_steps) return warmup(step, num_warmup_steps);
    // Divided by lr_init because LambdaLR multiplies the result by it.
    if (step > num_training_steps) return lr_end / lr_init;
    const lr_range = lr_init - lr_end;
    const decay_steps = num_training_steps - num_warmup_steps;
    const pct_remaining = 1 - (step - num_warmup_steps) / decay_steps;
    return (lr_range * pct_remaining ** power + lr_end) / lr_init;
  };
}

export function inverse_sqrt(num_warmup_steps: number, timescale?: number | null): LrLambda {
  const ts = timescale ?? (num_warmup_steps || 10_000);
  return (step) => {
    if (step < num_warmup_steps) return warmup(step, num_warmup_steps);
    const shift = ts - num_warmup_steps;
    return 1.0 / Math.sqrt((step + shift) / ts);
  };
}

/** Python's `%` on floats: the result has the divisor's sign. */
function pyMod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

function numberKwarg(kwargs: Record<string, unknown>, key: string, fallback?: number): number | undefined {
  const v = kwargs[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number") throw new TypeError(`lr_scheduler_kwargs.${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function checkKwargs(name: string, kwargs: Record<string, unknown>, allowed: string[]): void {
  const unknown = Object.keys(kwargs).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) {
    const valid = allowed.length > 0 ? allowed.join(", ") : "none";
    throw new TypeError(`the ${name} schedule got unexpected lr_scheduler_kwargs ${unknown.join(", ")} (it takes: ${valid})`);
  }
}

/**
 * The multiplier function `get_scheduler(name, ...)` would wrap in a LambdaLR, with get_scheduler's checks:
 * the warmup and training step counts each schedule needs, and its `scheduler_specific_kwargs`.
 */
export function lrLambdaFor(name: string, options: ScheduleOptions = {}): LrLambda {
  if (!isSchedulerType(name)) {
    throw new Error(`${name} is not a valid SchedulerType, please select one of [${SCHEDULER_TYPES.map((t) => `'${t}'`).join(", ")}]`);
  }
  const kwargs = options.scheduler_specific_kwargs ?? {};
  if (name === "constant") {
    checkKwargs(name, kwargs, []);
    return constant();
  }
  const num_warmup_steps = options.num_warmup_steps;
  if (num_warmup_steps === undefined || num_warmup_steps === null) {
    throw new Error(`${name} requires \`num_warmup_steps\`, please provide that argument.`);
  }
  if (name === "constant_with_warmup") {
    checkKwargs(name, kwargs, []);
    return constant_with_warmup(num_warmup_steps);
  }
  if (name === "inverse_sqrt") {
    checkKwargs(name, kwargs, ["timescale"]);
    return inverse_sqrt(num_warmup_steps, numberKwarg(kwargs, "timescale"));
  }
  const num_training_steps = options.num_training_steps;
  if (num_training_steps === undefined || num_training_steps === null) {
    throw new Error(`${name} requires \`num_training_steps\`, please provide that argument.`);
  }
  switch (name) {
    case "linear":
      checkKwargs(name, kwargs, []);
      return linear(num_warmup_steps, num_training_steps);
    case "cosine":
      checkKwargs(name, kwargs, ["num_cycles"]);
      return cosine(num_warmup_steps, num_training_steps, numberKwarg(kwargs, "num_cycles", 0.5));
    case "cosine_with_restarts":
      checkKwargs(name, kwargs, ["num_cycles"]);
      return cosine_with_restarts(num_warmup_steps, num_training_steps, numberKwarg(kwargs, "num_cycles", 1));
    case "polynomial":
      checkKwargs(name, kwargs, ["lr_end", "power"]);
      return polynomial(
        num_warmup_steps,
        num_training_steps,
        requireInitialLr(name, options),
        numberKwarg(kwargs, "lr_end", 1e-7),
        numberKwarg(kwargs, "power", 1.0),
      );
    case "cosine_with_min_lr": {
      checkKwargs(name, kwargs, ["num_cycles", "min_lr", "min_lr_rate"]);
      const min_lr = numberKwarg(kwargs, "min_lr");
      const min_lr_rate = numberKwarg(kwargs, "min_lr_rate");
      if (min_lr !== undefined && min_lr_rate !== undefined) throw new Error("Only one of min_lr or min_lr_rate should be set");
      if (min_lr === undefined && min_lr_rate === undefined) {
        throw new Error("One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`");
      }
      const rate = min_lr_rate ?? min_lr! / requireInitialLr(name, options);
      return cosine_with_min_lr(num_warmup_steps, num_training_steps, rate, numberKwarg(kwargs, "num_cycles", 0.5));
    }
  }
}

function requireInitialLr(name: string, options: ScheduleOptions): number {
  if (options.initial_lr === undefined) throw new Error(`the ${name} schedule depends on the optimizer's initial lr: pass \`initial_lr\``);
  return options.initial_lr;
}
