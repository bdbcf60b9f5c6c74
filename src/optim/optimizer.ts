// torch.optim.Optimizer: parameter groups with their hyper-parameters, per-parameter state, zero_grad, and the
// state_dict layout PyTorch uses ({ state: { index: {...} }, param_groups: [{ ..., params: [indices] }] }).
import { Tensor } from "../tensor/tensor.js";


export type Hyper = Record<string, unknown>;

export interface ParamGroup extends Hyper {
  params: Tensor[];
  lr: number;
}

export type ParamsArg = Iterable<Tensor> | Iterable<{ params: Iterable<Tensor> } & Hyper>;

export interface OptimizerStateDict {
  state: Record<number, Record<string, number | Tensor>>;
  param_groups: (Hyper & { params: number[] })[];
}

export abstract class Optimizer {
  readonly param_groups: ParamGroup[] = [];
  readonly state = new Map<Tensor, Record<string, number | Tensor>>();

  constructor(params: ParamsArg, readonly defaults: Hyper & { lr: number }) {
    const list = [...(params as Iterable<unknown>)];
    if (list.length === 0) throw new Error("optimizer got an empty parameter list");
    const groups = list[0] instanceof Tensor ? [{ params: list as Tensor[] }] : (list as ({ params: Iterable<Tensor> } & Hyper)[]);
    for (const g of groups) this.add_param_group(g);
  }

  add_param_group(group: { params: Iterable<Tensor> } & Hyper): void {
    const params = [...group.params];
    for (const p of params) {
      if (!(p instanceof Tensor)) throw new TypeError("optimizer can only optimize Tensors");
      if (!p.is_leaf) throw new Error("can't optimize a non-leaf Tensor");
    }
    const seen = new Set(this.param_groups.flatMap((g) => g.params));
    if (params.some((p) => seen.has(p))) throw new Error("some parameters appear in more than one parameter group");
    this.param_groups.push({ ...this.defaults, ...group, params } as ParamGroup);
  }

  abstract step(): void;

  zero_grad(set_to_none = true): void {
    for (const group of this.param_groups) {
      for (const p of group.params) {
        if (!p.grad) continue;
        if (set_to_none) {
          p.grad.dispose();
          p.grad = null;
        } else {
          p.grad.zero_();
        }
      }
    }
  }

  state_dict(): OptimizerStateDict {
    const index = new Map<Tensor, number>();
    const param_groups = this.param_groups.map((g) => {
      const { params, ...hyper } = g;
      return { ...hyper, params: params.map((p) => index.get(p) ?? index.set(p, index.size).get(p)!) };
    });
    const state: OptimizerStateDict["state"] = {};
    for (const [p, s] of this.state) {
      const i = index.get(p);
      if (i !== undefined) state[i] = { ...s };
    }
    return { state, param_groups };
  }

  load_state_dict(stateDict: OptimizerStateDict): void {
    if (stateDict.param_groups.length !== this.param_groups.length) {
      throw new Error("loaded state dict has a different number of parameter groups");
    }
    const byIndex = new Map<number, Tensor>();
    stateDict.param_groups.forEach((saved, gi) => {
      const group = this.param_groups[gi];
      if (saved.params.length !== group.params.length) {
        throw new Error("loaded state dict contains a parameter group that doesn't match the size of optimizer's group");
      }
      saved.params.forEach((idx, k) => byIndex.set(idx, group.params[k]));
      const { params: _ignored, ...hyper } = saved;
      Object.assign(group, hyper);
    });
    for (const old of this.state.values()) for (const v of Object.values(old)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
    for (const [idx, s] of Object.entries(stateDict.state)) {
      const p = byIndex.get(Number(idx));
      if (!p) throw new Error(`optimizer state refers to parameter ${idx}, which no group holds`);
      const copy: Record<string, number | Tensor> = {};
      for (const [k, v] of Object.entries(s)) {
        if (v instanceof Tensor) {
          if (v.numel() !== p.numel()) throw new Error(`optimizer state '${k}' of parameter ${idx} has ${v.numel()} values, the parameter ${p.numel()}`);
          const t = Tensor.empty(p.shape, p.dtype, p.device).copy_(v.reshape([...p.shape]));
          t._persistent = true;
          copy[k] = t;
        } else copy[k] = v;
      }
      this.state.set(p, copy);
    }
  }

  toString(): string {
    const groups = this.param_groups.map((g, i) => {
      const { params: _p, ...hyper } = g;
      return `Parameter Group ${i}\n${Object.entries(hyper).map(([k, v]) => `    ${k}: ${Array.isArray(v) ? `(${v.join(", ")})` : v}`).join("\n")}`;
    });
    return `${this.constructor.name} (\n${groups.join("\n")}\n)`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

