// torch.optim.AdamW (decoupled weight decay), every parameter of a group updated by one native call.
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import { backendFor, checkSameDevice } from "../backend/kernels.js";
import { Optimizer, type ParamsArg } from "./optimizer.js";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weight_decay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
}

export class AdamW extends Optimizer {
  constructor(params: ParamsArg, options: AdamWOptions = {}) {
    const defaults = { lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weight_decay: 1e-2, amsgrad: false, maximize: false, ...options };
    if (defaults.lr < 0) throw new RangeError(`Invalid learning rate: ${defaults.lr}`);
    if (defaults.eps < 0) throw new RangeError(`Invalid epsilon value: ${defaults.eps}`);
    for (const b of defaults.betas) if (b < 0 || b >= 1) throw new RangeError(`Invalid beta parameter: ${b}`);
    if (defaults.weight_decay < 0) throw new RangeError(`Invalid weight_decay value: ${defaults.weight_decay}`);
    if (defaults.amsgrad || defaults.maximize) throw new Error("AdamW: amsgrad and maximize are not supported");
    super(params, defaults);
  }

  step(): void {
    for (const group of this.param_groups) {
      const [beta1, beta2] = group.betas as [number, number];
      // Parameters that have taken the same number of steps share one bias correction: one call per step count.
      const byStep = new Map<number, Tensor[]>();
      for (const p of group.params) {
        if (!p.grad) continue;
        if (p.dtype !== float32 || !p.isExclusive() || !p.grad.isExclusive()) {
          throw new Error("AdamW: parameters and gradients must be contiguous float32 tensors");
        }
        let s = this.state.get(p);
        if (!s) {
          s = { step: 0, exp_avg: persistentZeros(p), exp_avg_sq: persistentZeros(p) };
          this.state.set(p, s);
        }
        s.step = (s.step as number) + 1;
        const list = byStep.get(s.step as number) ?? [];
        list.push(p);
        byStep.set(s.step as number, list);
      }
      for (const [step, params] of byStep) {
        const states = params.map((p) => this.state.get(p)!);
        checkSameDevice(...params, ...params.map((p) => p.grad!));
        backendFor(params[0]).adamw(
          params.map((p) => p.buffer),
          params.map((p) => p.grad!.buffer),
          states.map((s) => (s.exp_avg as Tensor).buffer),
          states.map((s) => (s.exp_avg_sq as Tensor).buffer),
          params.map((p) => p.numel()),
          params.map(() => group.weight_decay as number),
          group.lr, beta1, beta2, group.eps as number, step,
        );
      }
    }
  }
}

function persistentZeros(p: Tensor): Tensor {
  const t = Tensor.empty(p.shape, p.dtype, p.device, true);
  t._persistent = true;
  return t;
}
