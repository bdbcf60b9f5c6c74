// accelerate.Accelerator for one process: places models and batches on the device, runs models under autocast
// in mixed precision, scales fp16 losses, and offers the collective calls (gather, reduce, …) that are identities
// with one process. Several processes need process groups (NCCL, Gloo or MPI), which finetune does not have yet:
// a launch environment asking for more than one process is refused with a clear error.
import { Tensor } from "../tensor/tensor.js";
import { Device } from "../tensor/device.js";
import { bfloat16, float16, type DType } from "../tensor/dtype.js";
import { cuda } from "../backend/cuda.js";
import { autocast } from "../amp/autocast_mode.js";
import { GradScaler, scaledOptimizerStep } from "../amp/grad_scaler.js";
import { clip_grad_norm_ } from "../nn/utils.js";
import { Module } from "../nn/module.js";
import { Optimizer, type OptimizerStateDict, type ParamGroup } from "../optim/optimizer.js";
import { DataLoader } from "../data/dataloader.js";

export type MixedPrecision = "no" | "fp16" | "bf16";

export interface AcceleratorOptions {
  /** "no", "fp16" or "bf16"; default: $ACCELERATE_MIXED_PRECISION (set by a launcher), else "no" */
  mixed_precision?: MixedPrecision | null;
  /** run on the CPU even where a GPU is available (default: $ACCELERATE_USE_CPU) */
  cpu?: boolean;
  /** move prepared models and batches to the device (default true) */
  device_placement?: boolean;
  /** backward() divides the loss by this (default 1) */
  gradient_accumulation_steps?: number;
}

/** accelerate's mixed_precision values */
export const MIXED_PRECISION: readonly string[] = ["no", "fp16", "bf16"] satisfies MixedPrecision[];

function envFlag(name: string): boolean {
  const v = process.env[name]?.toLowerCase();
  return v === "1" || v === "true" || v === "yes";
}

/** Refuses a launch environment of several processes rather than silently training on one of them. */
function checkSingleProcess(): void {
  const world = Number(process.env.WORLD_SIZE ?? "1");
  if (world > 1) {
    throw new Error(
      `WORLD_SIZE=${process.env.WORLD_SIZE}: finetune's Accelerator runs one process only (process groups over NCCL, ` +
        "Gloo or MPI are not implemented yet); launch a single process",
    );
  }
}

/** An optimizer whose step() goes through fp16's loss scaler; everything else is the wrapped optimizer's. */
export class AcceleratedOptimizer {
  /** true when the last step() was skipped for inf/NaN gradients (the scale went down) */
  step_was_skipped = false;

  constructor(readonly optimizer: Optimizer, private readonly scaler: GradScaler | null) {}

  get param_groups(): ParamGroup[] {
    return this.optimizer.param_groups;
  }

  get state(): Optimizer["state"] {
    return this.optimizer.state;
  }

  get defaults(): Optimizer["defaults"] {
    return this.optimizer.defaults;
  }

  add_param_group(group: Parameters<Optimizer["add_param_group"]>[0]): void {
    this.optimizer.add_param_group(group);
  }

  step(): void {
    this.step_was_skipped = !scaledOptimizerStep(this.scaler, this.optimizer);
  }

  zero_grad(set_to_none = true): void {
    this.optimizer.zero_grad(set_to_none);
  }

  state_dict(): OptimizerStateDict {
    return this.optimizer.state_dict();
  }

  load_state_dict(state: OptimizerStateDict): void {
    this.optimizer.load_state_dict(state);
  }

  toString(): string {
    return this.optimizer.toString();
  }
}

/** A DataLoader whose batches arrive on the accelerator's device. */
export class DataLoaderShard<B = any> implements Iterable<B> {
  constructor(readonly base_dataloader: DataLoader<B>, readonly device: Device | null) {}

  get length(): number {
    return this.base_dataloader.length;
  }

  get batch_size(): number | null {
    return this.base_dataloader.batch_size;
  }

  get dataset(): DataLoader<B>["dataset"] {
    return this.base_dataloader.dataset;
  }

  *[Symbol.iterator](): Iterator<B> {
    for (const batch of this.base_dataloader) yield this.device ? send_to_device(batch, this.device) : batch;
  }
}

/** `data` with every tensor (in arrays and plain objects too) moved to `device`; the host copies are released. */
export function send_to_device<T>(data: T, device: Device): T {
  if (data instanceof Tensor) {
    if (data.device.equals(device)) return data;
    const moved = data.to(device);
    data.dispose();
    return moved as T;
  }
  if (Array.isArray(data)) return data.map((v) => send_to_device(v, device)) as T;
  if (data !== null && typeof data === "object" && Object.getPrototypeOf(data) === Object.prototype) {
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, send_to_device(v, device)])) as T;
  }
  return data;
}

type Prepared<T> = T extends Optimizer ? AcceleratedOptimizer : T extends DataLoader<infer B> ? DataLoaderShard<B> : T;

export class Accelerator {
  readonly device: Device;
  readonly mixed_precision: MixedPrecision;
  readonly gradient_accumulation_steps: number;
  readonly device_placement: boolean;
  /** fp16's loss scaler; null otherwise */
  readonly scaler: GradScaler | null;
  readonly distributed_type = "NO";
  readonly num_processes = 1;
  readonly process_index = 0;
  readonly local_process_index = 0;
  private readonly optimizers: AcceleratedOptimizer[] = [];

  constructor(options: AcceleratorOptions = {}) {
    checkSingleProcess();
    const mixed = options.mixed_precision ?? (process.env.ACCELERATE_MIXED_PRECISION as MixedPrecision | undefined) ?? "no";
    if (!MIXED_PRECISION.includes(mixed)) {
      throw new Error(`Accelerator: mixed_precision must be one of ${MIXED_PRECISION.map((m) => `"${m}"`).join(", ")}, got ${JSON.stringify(mixed)}`);
    }
    this.mixed_precision = mixed;
    const cpu = options.cpu ?? envFlag("ACCELERATE_USE_CPU");
    this.device = !cpu && cuda.is_available() ? new Device("cuda:0") : new Device("cpu");
    this.device_placement = options.device_placement ?? true;
    this.gradient_accumulation_steps = options.gradient_accumulation_steps ?? 1;
    if (!Number.isInteger(this.gradient_accumulation_steps) || this.gradient_accumulation_steps < 1) {
      throw new Error(`Accelerator: gradient_accumulation_steps must be a positive integer, got ${options.gradient_accumulation_steps}`);
    }
    this.scaler = mixed === "fp16" ? new GradScaler(this.device.type) : null;
  }

  get is_main_process(): boolean {
    return true;
  }

  get is_local_main_process(): boolean {
    return true;
  }

  get is_last_process(): boolean {
    return true;
  }

  get use_distributed(): boolean {
    return false;
  }

  /** The 16-bit dtype of mixed precision, null in float32. */
  private get autocast_dtype(): DType | null {
    return this.mixed_precision === "bf16" ? bfloat16 : this.mixed_precision === "fp16" ? float16 : null;
  }

  /** Each object ready for training, in the order given: models on the device (and under autocast in mixed
   * precision), optimizers stepping through the loss scaler, dataloaders yielding batches on the device. */
  prepare<T extends unknown[]>(...objects: T): { [K in keyof T]: Prepared<T[K]> } {
    return objects.map((o) => {
      if (o instanceof Module) return this.prepare_model(o);
      if (o instanceof Optimizer) return this.prepare_optimizer(o);
      if (o instanceof DataLoader) return this.prepare_data_loader(o);
      return o;
    }) as { [K in keyof T]: Prepared<T[K]> };
  }

  prepare_model<M extends Module>(model: M): M {
    if (this.device_placement) model.to(this.device);
    const dtype = this.autocast_dtype;
    if (dtype) {
      // accelerate wraps forward in autocast the same way, so the loss the model computes is under it too
      const forward = model.forward.bind(model);
      model.forward = (...args: unknown[]) => autocast(this.device.type, { dtype }, () => forward(...args));
    }
    return model;
  }

  prepare_optimizer(optimizer: Optimizer): AcceleratedOptimizer {
    const wrapped = new AcceleratedOptimizer(optimizer, this.scaler);
    this.optimizers.push(wrapped);
    return wrapped;
  }

  prepare_data_loader<B>(dataloader: DataLoader<B>): DataLoaderShard<B> {
    return new DataLoaderShard(dataloader, this.device_placement && this.device.type !== "cpu" ? this.device : null);
  }

  /** loss.backward(), divided over the accumulation steps and scaled in fp16. */
  backward(loss: Tensor): void {
    const divided = this.gradient_accumulation_steps > 1 ? loss.div(this.gradient_accumulation_steps) : loss;
    const scaled = this.scaler ? this.scaler.scale(divided) : divided;
    scaled.backward();
    if (scaled !== divided) scaled.dispose();
    if (divided !== loss) divided.dispose();
  }

  /** `with accelerator.autocast(): ...` is `accelerator.autocast(() => ...)`. */
  autocast<T>(fn: () => T): T {
    const dtype = this.autocast_dtype;
    return dtype ? autocast(this.device.type, { dtype }, fn) : fn();
  }

  /** Divides fp16 gradients by the loss scale (once per step), so that they can be clipped or inspected. */
  unscale_gradients(optimizer?: AcceleratedOptimizer): void {
    if (!this.scaler) return;
    for (const o of optimizer ? [optimizer] : this.optimizers) this.scaler.unscale_(o.optimizer);
  }

  clip_grad_norm_(parameters: Iterable<Tensor>, max_norm: number, norm_type = 2): Tensor {
    this.unscale_gradients();
    return clip_grad_norm_(parameters, max_norm, norm_type);
  }

  /** Whether the last optimizer step was skipped by fp16's scaler (inf/NaN gradients). */
  get optimizer_step_was_skipped(): boolean {
    return this.optimizers.some((o) => o.step_was_skipped);
  }

  // With one process, gathering and reducing return their input.
  gather<T>(input: T): T {
    return input;
  }

  gather_for_metrics<T>(input: T): T {
    return input;
  }

  reduce<T>(input: T, _reduction: "sum" | "mean" = "sum"): T {
    return input;
  }

  pad_across_processes<T>(input: T): T {
    return input;
  }

  wait_for_everyone(): void {}

  /** print() on the main process only */
  print(...args: unknown[]): void {
    if (this.is_local_main_process) console.log(...args);
  }

  unwrap_model<M extends Module>(model: M): M {
    return model;
  }

  end_training(): void {}
}
