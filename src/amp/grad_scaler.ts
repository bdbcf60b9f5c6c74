// torch.amp.GradScaler: dynamic loss scaling for float16 training. The loss is multiplied by the scale before
// backward so that small float16 gradients do not flush to zero; step() unscales the gradients, skips the
// optimizer step when any of them is inf or NaN, and update() halves the scale after such a step or doubles it
// after growth_interval clean ones — PyTorch's algorithm and defaults.
import { Tensor } from "../tensor/tensor.js";
import { gradNorm, gradsOf, scaleGrads } from "../nn/utils.js";
import type { Optimizer } from "../optim/optimizer.js";

export interface GradScalerOptions {
  init_scale?: number;
  growth_factor?: number;
  backoff_factor?: number;
  growth_interval?: number;
  enabled?: boolean;
}

export interface GradScalerState {
  scale: number;
  growth_factor: number;
  backoff_factor: number;
  growth_interval: number;
  _growth_tracker: number;
}

type Stage = "ready" | "unscaled" | "stepped";

interface OptimizerRecord {
  stage: Stage;
  found_inf: boolean;
}

export class GradScaler {
  private _scale: number;
  private _growth_factor: number;
  private _backoff_factor: number;
  private _growth_interval: number;
  private _growth_tracker = 0;
  private readonly _enabled: boolean;
  private _per_optimizer = new Map<Optimizer, OptimizerRecord>();

  constructor(readonly device: string = "cuda", options: GradScalerOptions = {}) {
    const { init_scale = 2 ** 16, growth_factor = 2, backoff_factor = 0.5, growth_interval = 2000, enabled = true } = options;
    if (device !== "cpu" && device !== "cuda") throw new Error(`GradScaler: device must be "cpu" or "cuda", got ${JSON.stringify(device)}`);
    if (!(growth_factor > 1)) throw new RangeError(`The growth factor must be > 1, got ${growth_factor}`);
    if (!(backoff_factor < 1) || !(backoff_factor > 0)) throw new RangeError(`The backoff factor must be < 1 and > 0, got ${backoff_factor}`);
    if (!Number.isInteger(growth_interval) || growth_interval <= 0) throw new RangeError(`growth_interval must be a positive integer, got ${growth_interval}`);
    this._scale = Math.fround(init_scale);
    this._growth_factor = growth_factor;
    this._backoff_factor = backoff_factor;
    this._growth_interval = growth_interval;
    this._enabled = enabled;
  }

  is_enabled(): boolean {
    return this._enabled;
  }

  /** outputs * scale (a tensor, or each tensor of an array); the outputs themselves when disabled. */
  scale(outputs: Tensor): Tensor;
  scale(outputs: Tensor[]): Tensor[];
  scale(outputs: Tensor | Tensor[]): Tensor | Tensor[] {
    if (!this._enabled) return outputs;
    if (Array.isArray(outputs)) return outputs.map((o) => this.scale(o));
    if (outputs.device.type !== this.device) {
      throw new Error(`GradScaler(${JSON.stringify(this.device)}) cannot scale a tensor on ${outputs.device}: create the scaler for that device`);
    }
    return outputs.mul(this._scale);
  }

  private record(optimizer: Optimizer): OptimizerRecord {
    let r = this._per_optimizer.get(optimizer);
    if (!r) {
      r = { stage: "ready", found_inf: false };
      this._per_optimizer.set(optimizer, r);
    }
    return r;
  }

  /** Divides the optimizer's gradients by the scale, in place, and notes whether any is inf or NaN. */
  unscale_(optimizer: Optimizer): void {
    if (!this._enabled) return;
    const r = this.record(optimizer);
    if (r.stage === "unscaled") throw new Error("unscale_() has already been called on this optimizer since the last update().");
    if (r.stage === "stepped") throw new Error("unscale_() is being called after step().");
    const grads = gradsOf(optimizer.param_groups.flatMap((g) => g.params), "GradScaler");
    if (grads.length > 0) {
      // PyTorch's inverse scale: the float64 reciprocal rounded to float32 (exact for the powers of two it uses)
      scaleGrads(grads, Math.fround(1 / this._scale));
      // The squares accumulate in float64, where no finite float32 overflows: the norm is finite unless a value is not.
      r.found_inf = !Number.isFinite(gradNorm(grads));
    }
    r.stage = "unscaled";
  }

  /** Unscales (unless unscale_ was called) and runs optimizer.step() unless a gradient is inf or NaN. */
  step(optimizer: Optimizer): void {
    if (!this._enabled) {
      optimizer.step();
      return;
    }
    const r = this.record(optimizer);
    if (r.stage === "stepped") throw new Error("step() has already been called since the last update().");
    if (r.stage === "ready") this.unscale_(optimizer);
    if (!r.found_inf) optimizer.step();
    r.stage = "stepped";
  }

  /** Backs the scale off after a step that found inf/NaN gradients, or grows it after growth_interval clean steps. */
  update(new_scale?: number | Tensor): void {
    if (!this._enabled) return;
    if (new_scale !== undefined) {
      const value = new_scale instanceof Tensor ? new_scale.item() : new_scale;
      this._scale = Math.fround(value);
    } else {
      const records = [...this._per_optimizer.values()].filter((r) => r.stage !== "ready");
      if (records.length === 0) throw new Error("No inf checks were recorded prior to update.");
      if (records.some((r) => r.found_inf)) {
        this._scale = Math.fround(this._scale * this._backoff_factor);
        this._growth_tracker = 0;
      } else if (++this._growth_tracker === this._growth_interval) {
        const grown = Math.fround(this._scale * this._growth_factor);
        if (Number.isFinite(grown)) this._scale = grown;
        this._growth_tracker = 0;
      }
    }
    this._per_optimizer = new Map();
  }

  get_scale(): number {
    return this._enabled ? this._scale : 1;
  }

  get_growth_factor(): number {
    return this._growth_factor;
  }

  set_growth_factor(new_factor: number): void {
    this._growth_factor = new_factor;
  }

  get_backoff_factor(): number {
    return this._backoff_factor;
  }

  set_backoff_factor(new_factor: number): void {
    this._backoff_factor = new_factor;
  }

  get_growth_interval(): number {
    return this._growth_interval;
  }

  set_growth_interval(new_interval: number): void {
    this._growth_interval = new_interval;
  }

  state_dict(): GradScalerState | Record<string, never> {
    if (!this._enabled) return {};
    return {
      scale: this._scale,
      growth_factor: this._growth_factor,
      backoff_factor: this._backoff_factor,
      growth_interval: this._growth_interval,
      _growth_tracker: this._growth_tracker,
    };
  }

  load_state_dict(state: GradScalerState | Record<string, never>): void {
    if (!this._enabled) return;
    if (!("scale" in state)) throw new Error("The source state dict is empty, possibly because it was saved from a disabled instance of GradScaler.");
    this._scale = Math.fround(state.scale);
    this._growth_factor = state.growth_factor;
    this._backoff_factor = state.backoff_factor;
    this._growth_interval = state.growth_interval;
    this._growth_tracker = state._growth_tracker;
  }
}

/**
 * One optimizer step, through fp16's scaler when there is one (scaler.step then scaler.update); false when the
 * scaler skipped it for inf/NaN gradients (the scale went down), which is how accelerate tells its
 * optimizer_step_was_skipped.
 */
export function scaledOptimizerStep(scaler: GradScaler | null, optimizer: Optimizer): boolean {
  if (!scaler) {
    optimizer.step();
    return true;
  }
  const before = scaler.get_scale();
  scaler.step(optimizer);
  scaler.update();
  return scaler.get_scale() >= before;
}
