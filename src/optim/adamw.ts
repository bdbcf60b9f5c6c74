// torch.optim.AdamW (decoupled weight decay), every parameter of a group updated by one native call, which also
// writes each parameter's 16-bit copy, where it has one (autocast's, amp/autocast_weight.ts), with the new values.
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import { checkSameDevice } from "../backend/kernels.js";
import { native } from "../backend/native.js";
import { Optimizer, type ParamGroup, type ParamsArg } from "./optimizer.js";
import { gradsOf, scaleGrads } from "../nn/utils.js";
import { lowpCopiesToWrite, wroteInPlace } from "../amp/lowp_copy.js";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weight_decay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
}

const ONE_STEP_COUNT = "AdamW: a step captured in a CUDA graph needs every parameter of a group at the same step count";

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

  /** Per group, the device buffer adamwDevice reads the step's scalars from (CUDA only). */
  #scalars = new Map<ParamGroup, Tensor>();
  /** Per group, the parameters a step captured in a CUDA graph updates: their gradients exist only in the graph. */
  #captured = new Map<ParamGroup, Tensor[]>();
  /** During step_clipped: the clip factor the step applies to the gradients as it reads them. */
  #clip: Tensor | null = null;

  /**
   * finetune-specific: step() on the gradients scaled by `clip_coef` where it is below 1, as clip_grad_norm_ would
   * have scaled them (clip_grad_norm_deferred computes the factor), without writing the scaled gradients: on a GPU
   * the update applies the factor as it reads them, saving a pass over all gradients. The gradients are left
   * unscaled, so call it only where nothing reads them after the step (zero_grad follows).
   */
  step_clipped(clip_coef: Tensor): void {
    if (clip_coef.device.type !== "cuda") {
      const factor = clip_coef.item();
      const grads = gradsOf(this.param_groups.flatMap((g) => g.params), "AdamW.step_clipped");
      if (factor < 1 && grads.length > 0) scaleGrads(grads, factor);
      return this.step();
    }
    this.#clip = clip_coef;
    try {
      this.step();
    } finally {
      this.#clip = null;
    }
  }

  step(): void {
    // While a CUDA graph captures the step nothing is counted nor uploaded: that happens before each replay
    // (prepare_replay), since the captured kernels run then and only then.
    for (const group of this.param_groups) {
      const capturing = group.params[0]?.device.type === "cuda" && native.cuda.isCurrentStreamCapturing();
      const byStep = this.#stepGroups(group, !capturing);
      if (capturing && byStep.size > 1) throw new Error(ONE_STEP_COUNT);
      for (const [step, params] of byStep) {
        if (capturing) this.#captured.set(group, params);
        const states = params.map((p) => this.state.get(p)!);
        checkSameDevice(...params, ...params.map((p) => p.grad!));
        const lists = [
          params.map((p) => p.buffer),
          params.map((p) => p.grad!.buffer),
          states.map((s) => (s.exp_avg as Tensor).buffer),
          states.map((s) => (s.exp_avg_sq as Tensor).buffer),
        ] as const;
        const [beta1, beta2] = group.betas as [number, number];
        const copies = lowpCopiesToWrite(params);
        // the native calls' optional tail: the 16-bit copies, their dtypes, where each gradient and copy starts
        const tailArgs = [copies.map((c) => c?.buffer ?? null), copies.map((c) => c?.dtype.code ?? float32.code),
          params.map((p) => p.grad!.offset), copies.map((c) => c?.offset ?? 0)] as const;
        if (params[0].device.type === "cpu") {
          native.adamw(...lists, params.map((p) => p.numel()), params.map(() => group.weight_decay as number), group.lr, beta1, beta2, group.eps as number, step, ...tailArgs);
        } else {
          // On a GPU the step's scalars go through a device buffer, so that eager and captured steps are one path.
          const scalars = this.#scalarsOf(group, params);
          if (!capturing) this.#upload(group, scalars, params.length, step);
          native.cuda.adamwDevice(...lists, params.map((p) => p.numel()), scalars.buffer, beta1, beta2, group.eps as number, this.#clip?.buffer, this.#clip?.offset, ...tailArgs);
        }
        // A captured step is stamped once, at the capture: each replay writes the parameters and their copies alike.
        wroteInPlace(params, copies);
      }
    }
  }

  /**
   * finetune-specific, for a step() captured in a CUDA graph (the Trainer's cuda_graphs): does step()'s host part
   * for the next replay — counts the step and writes the learning rate and bias corrections the captured kernels
   * read — without launching anything. Call it before each replay.
   */
  prepare_replay(): void {
    if (this.#captured.size === 0) throw new Error("AdamW.prepare_replay: no step of this optimizer was captured in a CUDA graph");
    for (const [group, params] of this.#captured) {
      let step = 0;
      for (const p of params) {
        const s = this.state.get(p)!;
        step = s.step = (s.step as number) + 1;
      }
      this.#upload(group, this.#scalars.get(group)!, params.length, step);
    }
  }

  /** The group's parameters with gradients by step count (one native call each), after counting this step if `count`. */
  #stepGroups(group: ParamGroup, count: boolean): Map<number, Tensor[]> {
    const byStep = new Map<number, Tensor[]>();
    for (const p of group.params) {
      if (!p.grad) continue;
      if (p.dtype !== float32 || !p.isExclusive() || p.grad.dtype !== float32 || !p.grad.is_contiguous()) {
        throw new Error("AdamW: parameters and gradients must be contiguous float32 tensors");
      }
      let s = this.state.get(p);
      if (!s) {
        s = { step: 0, exp_avg: persistentZeros(p), exp_avg_sq: persistentZeros(p) };
        this.state.set(p, s);
      }
      if (count) s.step = (s.step as number) + 1;
      const list = byStep.get(s.step as number) ?? [];
      list.push(p);
      byStep.set(s.step as number, list);
    }
    return byStep;
  }

  /** Room for every parameter of the group, so that the buffer a graph captured is never replaced. */
  #scalarsOf(group: ParamGroup, params: Tensor[]): Tensor {
    let scalars = this.#scalars.get(group);
    if (scalars === undefined) {
      scalars = persistentZeros(params[0], [group.params.length + 2]);
      this.#scalars.set(group, scalars);
    }
    return scalars;
  }

  #upload(group: ParamGroup, scalars: Tensor, count: number, step: number): void {
    const [beta1, beta2] = group.betas as [number, number];
    native.cuda.adamwScalars(scalars.buffer, group.lr, beta1, beta2, step, new Array<number>(count).fill(group.weight_decay as number));
  }
}

/** Zeros on p's device and of its dtype, of p's shape unless `shape` is given; kept until the optimizer drops them. */
function persistentZeros(p: Tensor, shape: readonly number[] = p.shape): Tensor {
  const t = Tensor.empty(shape, p.dtype, p.device, true);
  t._persistent = true;
  return t;
}
