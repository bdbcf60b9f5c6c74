// torch.optim.SGD with momentum, dampening, Nesterov and (coupled) weight decay.
import { Tensor } from "../tensor/tensor.js";
import { no_grad } from "../autograd/grad_mode.js";
import { Optimizer, type ParamsArg } from "./optimizer.js";

export interface SGDOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  weight_decay?: number;
  nesterov?: boolean;
  maximize?: boolean;
}

export class SGD extends Optimizer {
  constructor(params: ParamsArg, options: SGDOptions = {}) {
    const defaults = { lr: 1e-3, momentum: 0, dampening: 0, weight_decay: 0, nesterov: false, maximize: false, ...options };
    if (defaults.lr < 0) throw new RangeError(`Invalid learning rate: ${defaults.lr}`);
    if (defaults.nesterov && (defaults.momentum <= 0 || defaults.dampening !== 0)) {
      throw new Error("Nesterov momentum requires a momentum and zero dampening");
    }
    super(params, defaults);
  }

  step(): void {
    no_grad(() => {
      for (const group of this.param_groups) {
        const { lr, momentum, dampening, weight_decay, nesterov, maximize } = group as unknown as Required<SGDOptions>;
        for (const p of group.params) {
          if (!p.grad) continue;
          let d = maximize ? p.grad.neg() : p.grad.clone();
          if (weight_decay !== 0) d.add_(p, { alpha: weight_decay });
          if (momentum !== 0) {
            const s = this.state.get(p);
            let buf = s?.momentum_buffer as Tensor | undefined;
            if (!buf) {
              buf = d.clone();
              buf._persistent = true;
              this.state.set(p, { momentum_buffer: buf });
            } else {
              buf.mul_(momentum).add_(d, { alpha: 1 - dampening });
            }
            if (nesterov) d.add_(buf, { alpha: momentum });
            else {
              d.dispose();
              d = buf.alias();
            }
          }
          p.add_(d, { alpha: -lr });
          d.dispose();
        }
      }
    });
  }
}
