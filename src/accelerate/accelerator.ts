// accelerate.Accelerator: places models and batches on the device, runs models under autocast in mixed precision,
// scales fp16 losses. Launched as several processes (finetune launch, or mpirun), it joins them in a process group,
// as accelerate's MULTI_CPU (MPI) and MULTI_GPU (NCCL, one GPU a process): prepared models start from process 0's
// weights, backward() averages the gradients over the processes as DistributedDataParallel does, each process runs
// its share of the batches, and gather / reduce combine tensors across processes.
import { Tensor } from "../tensor/tensor.js";
import { Device } from "../tensor/device.js";
import { bfloat16, float16, type DType } from "../tensor/dtype.js";
import { cuda } from "../backend/cuda.js";
import { autocast } from "../amp/autocast_mode.js";
import { GradScaler, scaledOptimizerStep } from "../amp/grad_scaler.js";
import { clip_grad_norm_ } from "../nn/utils.js";
import { Module } from "../nn/module.js";
import { Optimizer, type OptimizerStateDict, type ParamGroup } from "../optim/optimizer.js";
import { LambdaLR } from "../optim/lr_scheduler.js";
import { DataLoader } from "../data/dataloader.js";
import { launchEnvironment } from "../distributed/launch_environment.js";
import * as dist from "../distributed/process_group.js";
import { average_gradients } from "../distributed/gradients.js";
import { DataLoaderShard, newGradientState, type GradientState } from "./data_loader.js";
import { gatherAcross, gatherForMetrics, mapTensors, padAcross } from "./operations.js";

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

/** Whether the environment variable `name` is set to 1, true or yes. */
export function envFlag(name: string): boolean {
  const v = process.env[name]?.toLowerCase();
  return v === "1" || v === "true" || v === "yes";
}

/**
 * An optimizer whose step() goes through fp16's loss scaler and, with zero_grad(), waits on the steps accumulate()
 * accumulates over; everything else is the wrapped optimizer's.
 */
export class AcceleratedOptimizer {
  /** true when the last step() was skipped for inf/NaN gradients (the scale went down) */
  step_was_skipped = false;

  constructor(
    readonly optimizer: Optimizer,
    private readonly scaler: GradScaler | null,
    private readonly gradient_state: GradientState = newGradientState(),
  ) {}

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
    if (this.gradient_state.sync_gradients) this.step_was_skipped = !scaledOptimizerStep(this.scaler, this.optimizer);
  }

  zero_grad(set_to_none = true): void {
    if (this.gradient_state.sync_gradients) this.optimizer.zero_grad(set_to_none);
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

/**
 * A learning-rate scheduler that steps with its optimizers, as accelerate's AcceleratedScheduler: not on the steps
 * accumulate() accumulates over nor where fp16's scaler skipped the step, and once a process on the others (the
 * schedule counts the batches of one process, while each step trains on one of every process).
 */
export class AcceleratedScheduler {
  constructor(
    readonly scheduler: LambdaLR,
    private readonly optimizers: AcceleratedOptimizer[],
    private readonly gradient_state: GradientState,
    private readonly num_processes: number,
  ) {}

  step(): void {
    if (!this.gradient_state.sync_gradients || this.optimizers.some((o) => o.step_was_skipped)) return;
    for (let i = 0; i < this.num_processes; i++) this.scheduler.step();
  }

  get_last_lr(): number[] {
    return this.scheduler.get_last_lr();
  }

  get_lr(): number[] {
    return this.scheduler.get_lr();
  }

  state_dict(): ReturnType<LambdaLR["state_dict"]> {
    return this.scheduler.state_dict();
  }

  load_state_dict(state: Parameters<LambdaLR["load_state_dict"]>[0]): void {
    this.scheduler.load_state_dict(state);
  }
}

type Prepared<T> = T extends Optimizer
  ? AcceleratedOptimizer
  : T extends LambdaLR ? AcceleratedScheduler : T extends DataLoader<infer B> ? DataLoaderShard<B> : T;

export class Accelerator {
  readonly device: Device;
  readonly mixed_precision: MixedPrecision;
  readonly gradient_accumulation_steps: number;
  readonly device_placement: boolean;
  /** fp16's loss scaler; null otherwise */
  readonly scaler: GradScaler | null;
  /** "NO" for one process, "MULTI_CPU" or "MULTI_GPU" for several */
  readonly distributed_type: "NO" | "MULTI_CPU" | "MULTI_GPU";
  readonly num_processes: number;
  readonly process_index: number;
  readonly local_process_index: number;
  /** what gather_for_metrics needs to know of the dataloader iterated last */
  readonly gradient_state: GradientState = newGradientState();
  /** micro-batches accumulate() has seen since the last sync */
  private accumulated = 0;
  private readonly optimizers: AcceleratedOptimizer[] = [];
  private readonly models: Module[] = [];

  constructor(options: AcceleratorOptions = {}) {
    const launch = launchEnvironment();
    const mixed = options.mixed_precision ?? (process.env.ACCELERATE_MIXED_PRECISION as MixedPrecision | undefined) ?? "no";
    if (!MIXED_PRECISION.includes(mixed)) {
      throw new Error(`Accelerator: mixed_precision must be one of ${MIXED_PRECISION.map((m) => `"${m}"`).join(", ")}, got ${JSON.stringify(mixed)}`);
    }
    this.mixed_precision = mixed;
    const cpu = options.cpu ?? envFlag("ACCELERATE_USE_CPU");
    this.device = !cpu && cuda.is_available() ? new Device("cuda:0") : new Device("cpu");
    this.num_processes = launch.world_size;
    this.process_index = launch.rank;
    this.local_process_index = launch.local_rank;
    this.distributed_type = launch.world_size === 1 ? "NO" : this.device.type === "cpu" ? "MULTI_CPU" : "MULTI_GPU";
    if (launch.world_size > 1 && !dist.is_initialized()) dist.init_process_group(this.device.type === "cpu" ? "mpi" : "nccl");
    this.device_placement = options.device_placement ?? true;
    this.gradient_accumulation_steps = options.gradient_accumulation_steps ?? 1;
    if (!Number.isInteger(this.gradient_accumulation_steps) || this.gradient_accumulation_steps < 1) {
      throw new Error(`Accelerator: gradient_accumulation_steps must be a positive integer, got ${options.gradient_accumulation_steps}`);
    }
    this.scaler = mixed === "fp16" ? new GradScaler(this.device.type) : null;
  }

  get is_main_process(): boolean {
    return this.process_index === 0;
  }

  get is_local_main_process(): boolean {
    return this.local_process_index === 0;
  }

  get is_last_process(): boolean {
    return this.process_index === this.num_processes - 1;
  }

  get use_distributed(): boolean {
    return this.num_processes > 1;
  }

  /** The 16-bit dtype of mixed precision, null in float32. */
  private get autocast_dtype(): DType | null {
    return this.mixed_precision === "bf16" ? bfloat16 : this.mixed_precision === "fp16" ? float16 : null;
  }

  /** Each object ready for training, in the order given: models on the device (and under autocast in mixed
   * precision), optimizers stepping through the loss scaler, dataloaders yielding batches on the device. As in
   * Python, one object comes back as itself, not in a list. */
  prepare<T>(object: T): Prepared<T>;
  prepare<T extends unknown[]>(...objects: T): { [K in keyof T]: Prepared<T[K]> };
  prepare(...objects: unknown[]): unknown {
    const prepared = objects.map((o) => {
      if (o instanceof Module) return this.prepare_model(o);
      if (o instanceof Optimizer) return this.prepare_optimizer(o);
      if (o instanceof LambdaLR) return this.prepare_scheduler(o);
      if (o instanceof DataLoader) return this.prepare_data_loader(o);
      return o;
    });
    return prepared.length === 1 ? prepared[0] : prepared;
  }

  /** The model on the device; with several processes, process 0's parameters and buffers on every process. */
  prepare_model<M extends Module>(model: M): M {
    if (this.device_placement) model.to(this.device);
    if (this.use_distributed) {
      for (const t of Object.values(model.state_dict())) dist.broadcast(t, 0);
      this.models.push(model);
    }
    const dtype = this.autocast_dtype;
    if (dtype) {
      // accelerate wraps forward in autocast the same way, so the loss the model computes is under it too
      const forward = model.forward.bind(model);
      model.forward = (...args: unknown[]) => autocast(this.device.type, { dtype }, () => forward(...args));
    }
    return model;
  }

  prepare_optimizer(optimizer: Optimizer): AcceleratedOptimizer {
    const wrapped = new AcceleratedOptimizer(optimizer, this.scaler, this.gradient_state);
    this.optimizers.push(wrapped);
    return wrapped;
  }

  prepare_scheduler(scheduler: LambdaLR): AcceleratedScheduler {
    const stepping = this.optimizers.filter((o) => o.optimizer === scheduler.optimizer);
    return new AcceleratedScheduler(scheduler, stepping, this.gradient_state, this.num_processes);
  }

  prepare_data_loader<B>(dataloader: DataLoader<B>): DataLoaderShard<B> {
    const device = this.device_placement && this.device.type !== "cpu" ? this.device : null;
    return new DataLoaderShard(dataloader, device, { num_processes: this.num_processes, process_index: this.process_index }, this.gradient_state);
  }

  /**
   * loss.backward(), divided over the accumulation steps and scaled in fp16; with several processes, then every
   * prepared model's gradients averaged over them (each divided by the process count, then summed, as
   * DistributedDataParallel's default hook), in one all-reduce.
   */
  backward(loss: Tensor): void {
    const divided = this.gradient_accumulation_steps > 1 ? loss.div(this.gradient_accumulation_steps) : loss;
    const scaled = this.scaler ? this.scaler.scale(divided) : divided;
    scaled.backward();
    if (scaled !== divided) scaled.dispose();
    if (divided !== loss) divided.dispose();
    if (this.use_distributed && this.gradient_state.sync_gradients) average_gradients(this.models.flatMap((m) => m.parameters()));
  }

  /** Whether this step syncs: the optimizer steps and the gradients are averaged over the processes. */
  get sync_gradients(): boolean {
    return this.gradient_state.sync_gradients;
  }

  /**
   * `with accelerator.accumulate(model): ...` is `accelerator.accumulate(model, () => ...)`: runs one micro-batch's
   * step, which syncs on every gradient_accumulation_steps-th call and at the dataloader's end; the others only add
   * to this process's gradients: the prepared optimizer and scheduler wait, and backward() skips the all-reduce,
   * as DistributedDataParallel's no_sync (the sync's average covers what accumulated).
   */
  accumulate<T>(_models: Module | Module[], fn: () => T): T {
    if (this.gradient_state.end_of_dataloader) {
      this.accumulated = 0;
      this.gradient_state.sync_gradients = true;
    } else {
      this.accumulated += 1;
      this.gradient_state.sync_gradients = this.accumulated % this.gradient_accumulation_steps === 0;
    }
    return fn();
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

  /** Every process's tensors (in arrays and plain objects too), concatenated along the first dim in process
   * order; a 0-dim tensor gathers to one value a process. With one process, the input itself. */
  gather<T>(input: T): T {
    return this.use_distributed ? gatherAcross(input) : input;
  }

  /**
   * gather(), less the samples the last round of batches repeated to give every process a full batch (the
   * dataloader's remainder): the metrics see each evaluation sample once.
   */
  gather_for_metrics<T>(input: T): T {
    const { end_of_dataloader, remainder } = this.gradient_state;
    return this.use_distributed ? gatherForMetrics(input, end_of_dataloader, remainder) : input;
  }

  /** The sum (or mean) over the processes of each tensor, as new tensors; with one process, the input itself. */
  reduce<T>(input: T, reduction: "sum" | "mean" = "sum"): T {
    if (!this.use_distributed) return input;
    return mapTensors(input, (t) => {
      const reduced = t.clone();
      dist.all_reduce(reduced);
      if (reduction === "mean") reduced.div_(this.num_processes);
      return reduced;
    });
  }

  /** Each tensor padded along `dim` with `pad_index` to the largest size any process has there. */
  pad_across_processes<T>(input: T, options: { dim?: number; pad_index?: number; pad_first?: boolean } = {}): T {
    return this.use_distributed ? mapTensors(input, (t) => padAcross(t, options.dim ?? 0, options.pad_index ?? 0, options.pad_first ?? false)) : input;
  }

  /** Waits until every process reaches this point. */
  wait_for_everyone(): void {
    if (this.use_distributed) dist.barrier();
  }

  /** print() on the local main process only */
  print(...args: unknown[]): void {
    if (this.is_local_main_process) console.log(...args);
  }

  unwrap_model<M extends Module>(model: M): M {
    return model;
  }

  end_training(): void {}
}

