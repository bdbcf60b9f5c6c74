// torch.optim.AdamW (decoupled weight decay), every parameter of a group updated by one native call, which also
// writes each parameter's 16-bit copy, where it has one (autocast's, amp/autocast_weight.ts), with the new values.
// On CUDA, embedding tables may defer their zero-gradient rows (defer_zero_gradient_rows): a batch touches a few
// hundred of bert-base's 30,522 word rows, and the dense update of the others moves 0.7 GB a step for values that
// only decay; deferred, each row catches up, to the same bits, before a lookup reads it, when its gradient is next
// nonzero, or at catch_up(). Where embedding's backward flagged the rows it gave values (ops/row_flags.ts), the
// update reads the flags instead of the whole gradient to find them.
import { Tensor } from "../tensor/tensor.js";
import { float32, int32, type DType } from "../tensor/dtype.js";
import { checkSameDevice } from "../backend/kernels.js";
import { native } from "../backend/native.js";
import { Optimizer, type ParamGroup, type ParamsArg } from "./optimizer.js";
import { gradsOf, scaleGrads } from "../nn/utils.js";
import { lowpCopiesToWrite, wroteInPlace } from "../amp/lowp_copy.js";
import { setDeferredRows } from "../ops/deferred_rows.js";
import { rowFlagsOf } from "../ops/row_flags.js";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weight_decay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
}

const ONE_STEP_COUNT = "AdamW: a step captured in a CUDA graph needs every parameter of a group at the same step count";
const DEFERRED_STEP_COUNT =
  "AdamW: deferred zero-gradient rows need every parameter of a group at the same step count (defer_zero_gradient_rows([]) ends them)";
/** Steps the ring of deferred rows' scalars holds: rows are brought up to date at least this often. */
const RING_STEPS = 4096;
/** Rows shorter than this are updated densely (the kernel's bound). */
const MIN_DEFERRED_ROW = 32;

type DeferredArgs = [number[] | undefined, (ArrayBuffer | null)[] | undefined, ArrayBuffer | undefined, (ArrayBuffer | null)[] | undefined];

/** A group's deferred rows: the ring of step scalars, and the step every row has been brought to at least. */
interface DeferredGroup {
  ring: Tensor;
  floor: number;
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

  /** Per group, the device buffer adamwDevice reads the step's scalars from (CUDA only). */
  #scalars = new Map<ParamGroup, Tensor>();
  /** Per group, the parameters a step captured in a CUDA graph updates: their gradients exist only in the graph. */
  #captured = new Map<ParamGroup, Tensor[]>();
  /** During step_clipped: the clip factor the step applies to the gradients as it reads them. */
  #clip: Tensor | null = null;
  /** The parameters whose zero-gradient rows may wait (defer_zero_gradient_rows), with each row's last step once
   * they have optimizer state. */
  #deferred = new Map<Tensor, Tensor | null>();
  #deferredGroups = new Map<ParamGroup, DeferredGroup>();

  /**
   * finetune-specific: on CUDA, the rows of these 2-D parameters (embedding tables, [rows, dim]) whose gradient is
   * zero in a step are not updated then: each catches up on the zero-gradient updates it missed, to the bits the
   * dense update would have written, before an embedding lookup reads it, when its gradient is next nonzero, at
   * least every 4096 steps, and at catch_up(), which state_dict() calls. Until then those rows of the parameters and their exp_avg / exp_avg_sq
   * are behind: call catch_up() before reading them (the Trainer does before evaluating and saving). An empty list
   * ends it (after catching up). Set it before the first step a CUDA graph captures, and keep it while the graph
   * replays.
   */
  defer_zero_gradient_rows(params: Iterable<Tensor>): void {
    this.catch_up();
    const wanted = new Set(params);
    for (const [p, last] of this.#deferred) {
      if (!wanted.has(p)) {
        last?.dispose();
        this.#deferred.delete(p);
        setDeferredRows(p, null);
      }
    }
    const held = new Set(this.param_groups.flatMap((g) => g.params));
    for (const p of wanted) {
      if (!held.has(p)) throw new Error("AdamW.defer_zero_gradient_rows: a parameter is not in the optimizer's groups");
      if (!this.#deferred.has(p)) this.#deferred.set(p, null);
    }
    if (this.#deferred.size === 0) {
      for (const d of this.#deferredGroups.values()) d.ring.dispose();
      this.#deferredGroups.clear();
    }
  }

  /** finetune-specific: brings every deferred row (defer_zero_gradient_rows) up to the last step. */
  catch_up(): void {
    for (const group of this.param_groups) this.#catchUp(group);
  }

  override state_dict(): ReturnType<Optimizer["state_dict"]> {
    this.catch_up();
    return super.state_dict();
  }

  override load_state_dict(stateDict: Parameters<Optimizer["load_state_dict"]>[0]): void {
    super.load_state_dict(stateDict);
    // Loaded rows are all at their step: each deferred parameter's row steps start again from it
    for (const [p, last] of this.#deferred) {
      last?.dispose();
      this.#deferred.set(p, null);
      setDeferredRows(p, null);
    }
  }

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
      if (byStep.size > 1 && group.params.some((p) => this.#deferred.has(p))) throw new Error(DEFERRED_STEP_COUNT);
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
          const deferred = this.#deferredArgs(group, params, step, capturing);
          if (!capturing) {
            this.#keepRing(group, step);
            this.#upload(group, scalars, params.length, step);
          }
          native.cuda.adamwDevice(...lists, params.map((p) => p.numel()), scalars.buffer, beta1, beta2, group.eps as number, this.#clip?.buffer, this.#clip?.offset, ...tailArgs, ...deferred);
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
      this.#keepRing(group, step);
      this.#upload(group, this.#scalars.get(group)!, params.length, step);
    }
  }

  /**
   * adamwDevice's deferred-row arguments for the group's step `step` over `params` (none where no parameter defers
   * rows). A deferred parameter's row steps start at the step before this one, when it first has state.
   */
  #deferredArgs(group: ParamGroup, params: Tensor[], step: number, capturing: boolean): DeferredArgs {
    const rowLengths = params.map((p) => (this.#deferred.has(p) && defersRows(p) ? p.shape[1]! : 0));
    if (rowLengths.every((n) => n === 0)) return [undefined, undefined, undefined, undefined];
    const lastSteps = params.map((p, i) => {
      if (rowLengths[i] === 0) return null;
      let last = this.#deferred.get(p) ?? null;
      if (last === null) {
        if (capturing) throw new Error("AdamW: a parameter's first step with deferred rows must run outside a CUDA graph capture");
        last = persistentZeros(p, [p.shape[0]!], int32).fill_(step - 1);
        this.#deferred.set(p, last);
      }
      return last;
    });
    let d = this.#deferredGroups.get(group);
    if (d === undefined) {
      if (capturing) throw new Error("AdamW: a group's first step with deferred rows must run outside a CUDA graph capture");
      d = { ring: persistentZeros(params[0]!, [3 * RING_STEPS + 1], float32), floor: step - 1 };
      this.#deferredGroups.set(group, d);
    }
    const ring = d.ring;
    params.forEach((p, i) => {
      const last = lastSteps[i];
      if (last) setDeferredRows(p, (ids) => this.#catchUpRows(group, p, last, ring, ids));
    });
    // where the gradient's maker flagged its rows with values (embedding's backward), the kernel reads the flags
    const flags = params.map((p, i) => (rowLengths[i]! > 0 ? rowFlagsOf(p.grad!, rowLengths[i]!) : null));
    return [rowLengths, lastSteps.map((t) => t?.buffer ?? null), ring.buffer, flags];
  }

  /** The rows of deferred parameter `p` named by `ids` brought to the last step run, before a lookup reads them. */
  #catchUpRows(group: ParamGroup, p: Tensor, last: Tensor, ring: Tensor, ids: Tensor): void {
    const s = this.state.get(p)!;
    const copy = lowpCopiesToWrite([p])[0] ?? null;
    const [beta1, beta2] = group.betas as [number, number];
    native.cuda.adamwCatchUpRows(ids.buffer, ids.offset, ids.numel(), p.buffer, (s.exp_avg as Tensor).buffer,
      (s.exp_avg_sq as Tensor).buffer, p.shape[1]!, last.buffer, ring.buffer, beta1, beta2, group.eps as number,
      copy?.buffer ?? null, copy?.dtype.code);
    wroteInPlace([p], [copy]);
  }

  /** Before the group's step `step` runs: rows about to fall out of the ring's reach catch up first. */
  #keepRing(group: ParamGroup, step: number): void {
    const d = this.#deferredGroups.get(group);
    if (d !== undefined && step - d.floor >= RING_STEPS) this.#catchUp(group, step - 1);
  }

  /** The group's deferred rows brought to `target` (by default the step its parameters last took). */
  #catchUp(group: ParamGroup, target?: number): void {
    const d = this.#deferredGroups.get(group);
    if (d === undefined) return;
    const params = group.params.filter((p) => (this.#deferred.get(p) ?? null) !== null && this.state.has(p));
    if (params.length === 0) return;
    if (native.cuda.isCurrentStreamCapturing()) throw new Error("AdamW.catch_up: not while a CUDA graph is being captured");
    const states = params.map((p) => this.state.get(p)!);
    const upto = target ?? Math.max(...states.map((s) => s.step as number));
    const copies = lowpCopiesToWrite(params);
    const [beta1, beta2] = group.betas as [number, number];
    native.cuda.adamwCatchUp(params.map((p) => p.buffer), states.map((s) => (s.exp_avg as Tensor).buffer),
      states.map((s) => (s.exp_avg_sq as Tensor).buffer), params.map((p) => p.numel()), params.map((p) => p.shape[1]!),
      params.map((p) => this.#deferred.get(p)!.buffer), d.ring.buffer, upto, beta1, beta2, group.eps as number,
      copies.map((c) => c?.buffer ?? null), copies.map((c) => c?.dtype.code ?? float32.code), copies.map((c) => c?.offset ?? 0));
    wroteInPlace(params, copies);
    d.floor = upto;
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
      scalars = persistentZeros(params[0], [group.params.length + 3]);
      this.#scalars.set(group, scalars);
    }
    return scalars;
  }

  #upload(group: ParamGroup, scalars: Tensor, count: number, step: number): void {
    const [beta1, beta2] = group.betas as [number, number];
    native.cuda.adamwScalars(scalars.buffer, group.lr, beta1, beta2, step, new Array<number>(count).fill(group.weight_decay as number));
  }
}

/** Whether `p` can defer rows: a CUDA [rows, dim] table with rows of at least MIN_DEFERRED_ROW values. */
function defersRows(p: Tensor): boolean {
  return p.device.type === "cuda" && p.ndim === 2 && p.shape[1]! >= MIN_DEFERRED_ROW;
}

/** Zeros on p's device, of p's shape and dtype unless `shape` or `dtype` is given; kept until the optimizer drops them. */
function persistentZeros(p: Tensor, shape: readonly number[] = p.shape, dtype: DType = p.dtype): Tensor {
  const t = Tensor.empty(shape, dtype, p.device, true);
  t._persistent = true;
  return t;
}
