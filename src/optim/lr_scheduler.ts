// Learning-rate schedulers: torch.optim.lr_scheduler.LambdaLR and transformers' get_scheduler on top of it.
import type { Optimizer } from "./optimizer.js";
import { lrLambdaFor, type LrLambda } from "./schedules.js";

export class LambdaLR {
  last_epoch: number;
  readonly base_lrs: number[];
  private _last_lr: number[] = [];
  private readonly lambdas: LrLambda[];

  constructor(readonly optimizer: Optimizer, lr_lambda: LrLambda | LrLambda[], last_epoch = -1) {
    for (const g of optimizer.param_groups) {
      if (last_epoch === -1) g.initial_lr = g.lr;
      else if (g.initial_lr === undefined) throw new Error("param 'initial_lr' is not specified in param_groups when resuming an optimizer");
    }
    this.base_lrs = optimizer.param_groups.map((g) => g.initial_lr as number);
    this.lambdas = Array.isArray(lr_lambda) ? lr_lambda : optimizer.param_groups.map(() => lr_lambda);
    if (this.lambdas.length !== optimizer.param_groups.length) {
      throw new Error(`Expected ${optimizer.param_groups.length} lr_lambdas, but got ${this.lambdas.length}`);
    }
    this.last_epoch = last_epoch;
    this.step();
  }

  get_lr(): number[] {
    return this.base_lrs.map((base, i) => base * this.lambdas[i](this.last_epoch));
  }

  step(): void {
    this.last_epoch += 1;
    const lrs = this.get_lr();
    this.optimizer.param_groups.forEach((g, i) => (g.lr = lrs[i]));
    this._last_lr = lrs;
  }

  get_last_lr(): number[] {
    return [...this._last_lr];
  }

  state_dict(): { last_epoch: number; base_lrs: number[]; _last_lr: number[]; _step_count: number } {
    return { last_epoch: this.last_epoch, base_lrs: [...this.base_lrs], _last_lr: [...this._last_lr], _step_count: this.last_epoch + 1 };
  }

  load_state_dict(state: { last_epoch: number; _last_lr?: number[] }): void {
    this.last_epoch = state.last_epoch;
    this._last_lr = state._last_lr ? [...state._last_lr] : this.get_lr();
    this.optimizer.param_groups.forEach((g, i) => (g.lr = this._last_lr[i]));
  }
}

export interface GetSchedulerOptions {
  optimizer: Optimizer;
  num_warmup_steps?: number | null;
  num_training_steps?: number | null;
  scheduler_specific_kwargs?: Record<string, unknown> | null;
}

/** transformers.get_scheduler */
export function get_scheduler(name: string, options: GetSchedulerOptions): LambdaLR {
  const { optimizer } = options;
  const lambda = lrLambdaFor(name, {
    num_warmup_steps: options.num_warmup_steps,
    num_training_steps: options.num_training_steps,
    scheduler_specific_kwargs: options.scheduler_specific_kwargs,
    initial_lr: optimizer.defaults.lr,
  });
  return new LambdaLR(optimizer, lambda);
}
