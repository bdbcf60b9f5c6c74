// transformers' Trainer: the training loop (gradient accumulation, clipping, schedules, logging, evaluation and
// checkpoints through the callbacks, in transformers' order), evaluation and prediction, and resuming.
import fs from "node:fs";
import path from "node:path";
import { Tensor } from "../tensor/tensor.js";
import type { Module } from "../nn/module.js";
import { clip_grad_norm_ } from "../nn/utils.js";
import { no_grad } from "../autograd/grad_mode.js";
import { autocast } from "../amp/autocast_mode.js";
import { GradScaler, scaledOptimizerStep } from "../amp/grad_scaler.js";
import { cat } from "../ops/join.js";
import { fromFlat } from "../tensor/creation.js";
import { bfloat16, float16, int64, type DType } from "../tensor/dtype.js";
import { Generator, default_generator } from "../ops/random.js";
import type { Optimizer } from "../optim/optimizer.js";
import type { AdamW } from "../optim/adamw.js";
import { Embedding } from "../nn/layers.js";
import type { LambdaLR } from "../optim/lr_scheduler.js";
import { DataLoader, type DataSource } from "../data/dataloader.js";
import { RandomSampler, SequentialSampler, sizeOf, type Sized } from "../data/samplers.js";
import { DataCollatorWithPadding, default_data_collator, type Batch } from "../data/data_collator.js";
import type { Features } from "../data/features.js";
import type { PreTrainedTokenizerFast } from "../tokenizers/tokenization.js";
import { TrainingArguments } from "./training_args.js";
import {
  CallbackHandler,
  DefaultFlowCallback,
  EarlyStoppingCallback,
  PrinterCallback,
  ProgressCallback,
  type CallbackLike,
  type TrainerCallback,
} from "./callbacks.js";
import { TrainerControl, TrainerState, type ExportableState } from "./trainer_state.js";
import {
  EvalPrediction,
  PREFIX_CHECKPOINT_DIR,
  get_last_checkpoint,
  set_seed,
  sortedCheckpointDirs,
  speed_metrics,
  type EvalLoopOutput,
  type Metrics,
  type PredictionOutput,
  type TrainOutput,
} from "./trainer_utils.js";
import {
  TRAINER_STATE_NAME,
  TRAINING_ARGS_NAME,
  loadModelWeights,
  loadOptimizer,
  loadScaler,
  loadRngState,
  loadScheduler,
  saveOptimizer,
  saveScaler,
  saveRngState,
  saveScheduler,
  writeFolderAtomically,
} from "./checkpoint_io.js";
import { createOptimizer, createScheduler } from "./optimizer_setup.js";
import { CudaGraphStep, useCudaGraphs } from "./cuda_graph_step.js";
import { metrics_format } from "./metrics_format.js";
import * as dist from "../distributed/process_group.js";
import { average_gradients } from "../distributed/gradients.js";
import { gatherEvalBatch, meanAcross } from "./data_parallel.js";
import { lastRoundRemainder, processBatches, shardLength } from "../accelerate/data_loader.js";

/** A model the Trainer can drive: called with a batch, returning at least `logits` and, given labels, `loss`. */
export type TrainableModel = Module & {
  save_pretrained?(dir: string): void;
  config?: unknown;
};

/** Anything with save_pretrained and, for the default collator, pad (a tokenizer). */
export type ProcessingClass = { save_pretrained?(dir: string): unknown; pad?: unknown };

type Collator = (features: Features) => Batch;
type ComputeMetrics = (eval_pred: EvalPrediction) => Metrics | Promise<Metrics> | Record<string, unknown> | Promise<Record<string, unknown>>;
type TrainDataset = DataSource;

export interface TrainerOptions {
  train_dataset?: TrainDataset | null;
  eval_dataset?: TrainDataset | null;
  data_collator?: Collator | null;
  processing_class?: ProcessingClass | null;
  /** transformers' older name for processing_class */
  tokenizer?: ProcessingClass | null;
  compute_metrics?: ComputeMetrics | null;
  callbacks?: CallbackLike[] | null;
  optimizers?: [Optimizer | null, LambdaLR | null];
}

/** Columns the model takes, when it declares them (PreTrainedModel.forward_input_names). */
function forwardInputNames(model: TrainableModel): string[] | null {
  const own = (model as { forward_input_names?: string[] }).forward_input_names;
  const declared = own ?? (model.constructor as { forward_input_names?: string[] }).forward_input_names;
  return Array.isArray(declared) ? declared : null;
}

function isColumnDataset(d: unknown): d is { column_names: string[]; remove_columns(names: string[]): DataSource } & Sized {
  return typeof d === "object" && d !== null && Array.isArray((d as { column_names?: unknown }).column_names) && typeof (d as { remove_columns?: unknown }).remove_columns === "function";
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Trainer {
  readonly args: TrainingArguments;
  model: TrainableModel;
  processing_class: ProcessingClass | null;
  data_collator: Collator;
  train_dataset: TrainDataset | null;
  eval_dataset: TrainDataset | null;
  compute_metrics: ComputeMetrics | null;
  optimizer: Optimizer | null;
  lr_scheduler: LambdaLR | null;
  callback_handler: CallbackHandler;
  state: TrainerState;
  control: TrainerControl;
  label_names: string[];
  /** The train sampler's own generator, seeded from data_seed (or seed), so shuffling can be replayed on resume. */
  readonly train_generator: Generator;
  /** The 16-bit dtype of mixed precision (args.bf16 / args.fp16), null in float32 */
  readonly amp_dtype: DType | null;
  /** fp16's dynamic loss scaler (bf16 has float32's range and needs none) */
  readonly scaler: GradScaler | null;

  private _signature_columns: string[] | null = null;
  private _total_loss_scalar = 0;
  private _globalstep_last_logged = 0;
  private _epoch_sampler_state: ReturnType<Generator["get_state"]> | null = null;

  constructor(model: TrainableModel, args?: TrainingArguments | null, options: TrainerOptions = {}) {
    if (!model || typeof model !== "function") throw new TypeError("Trainer needs a model (a Module, e.g. from AutoModelForSequenceClassification.from_pretrained)");
    this.args = args ?? new TrainingArguments("trainer_output");
    // Launched as several processes, they train together (data_parallel.ts), one GPU each or on the CPU
    if (this.args.world_size > 1 && !dist.is_initialized()) dist.init_process_group(this.args.device.type === "cpu" ? "mpi" : "nccl");
    set_seed(this.args.seed);
    this.model = model;
    // transformers places the model on args.device; on the CPU there is nothing to move.
    if (this.args.device.type !== "cpu") model.to(this.args.device);
    this.processing_class = options.processing_class ?? options.tokenizer ?? null;
    this.data_collator =
      options.data_collator ??
      (typeof this.processing_class?.pad === "function"
        ? new DataCollatorWithPadding({ tokenizer: this.processing_class as PreTrainedTokenizerFast })
        : default_data_collator);
    this.train_dataset = options.train_dataset ?? null;
    this.eval_dataset = options.eval_dataset ?? null;
    this.compute_metrics = options.compute_metrics ?? null;
    [this.optimizer, this.lr_scheduler] = options.optimizers ?? [null, null];
    this.train_generator = new Generator().manual_seed(this.args.data_seed ?? this.args.seed);
    this.amp_dtype = this.args.bf16 ? bfloat16 : this.args.fp16 ? float16 : null;
    this.scaler = this.args.fp16 ? new GradScaler(this.args.device.type) : null;
    const unsupported = this.args.report_to.filter((r) => r !== "none");
    if (unsupported.length) console.warn(`report_to ${JSON.stringify(unsupported)}: no such integration in finetune; logs go to the console and trainer_state.json`);
    this.callback_handler = new CallbackHandler([DefaultFlowCallback, ...(options.callbacks ?? [])], this.model, this.processing_class, this.optimizer, this.lr_scheduler);
    this.add_callback(this.args.disable_tqdm ? PrinterCallback : ProgressCallback);
    this.label_names = this.args.label_names ?? ["labels"];
    this.state = new TrainerState({ stateful_callbacks: this.statefulCallbacks() });
    this.control = new TrainerControl();
    this.control = this.callback_handler.on_init_end(this.args, this.state, this.control);
  }

  add_callback(callback: CallbackLike): void {
    this.callback_handler.add_callback(callback);
  }

  pop_callback(callback: CallbackLike): TrainerCallback | undefined {
    return this.callback_handler.pop_callback(callback);
  }

  remove_callback(callback: CallbackLike): void {
    this.callback_handler.remove_callback(callback);
  }

  private statefulCallbacks(): ExportableState[] {
    return [...this.callback_handler.callbacks, this.control].filter(
      (cb): cb is TrainerCallback & ExportableState => typeof (cb as Partial<ExportableState> | undefined)?.state === "function",
    );
  }

  // ---- data

  private signatureColumns(): string[] | null {
    if (this._signature_columns === null) {
      const names = forwardInputNames(this.model);
      if (names === null) return null;
      this._signature_columns = [...new Set([...names, "label", "label_ids", ...this.label_names])];
    }
    return this._signature_columns;
  }

  /** Drops the dataset columns the model's forward does not take (args.remove_unused_columns). */
  _remove_unused_columns(dataset: DataSource, description: string): DataSource {
    const signature = this.signatureColumns();
    if (!this.args.remove_unused_columns || signature === null || !isColumnDataset(dataset)) return dataset;
    const ignored = dataset.column_names.filter((c) => !signature.includes(c));
    const labels = new Set(["label", "label_ids", ...this.label_names]);
    // Labels alone are no input: the text columns must have been tokenized into model inputs
    if (!dataset.column_names.some((c) => signature.includes(c) && !labels.has(c))) {
      throw new Error(
        `No columns in the ${description} dataset match the model's forward method signature (${signature.join(", ")}); ` +
          `it has ${JSON.stringify(dataset.column_names)}. Tokenize the text columns first (dataset.map(...)), or pass remove_unused_columns: false.`,
      );
    }
    return ignored.length ? dataset.remove_columns(ignored) : dataset;
  }

  /** For datasets without columns (arrays of examples): the same filtering, per batch. */
  private collatorRemovingColumns(): Collator {
    const signature = this.signatureColumns();
    if (!this.args.remove_unused_columns || signature === null) return this.data_collator;
    return (features: Features) => {
      const keep = (ex: Record<string, unknown>) => Object.fromEntries(Object.entries(ex).filter(([k]) => signature.includes(k)));
      return this.data_collator(Array.isArray(features) ? features.map(keep) : keep(features));
    };
  }

  private checkNotEmpty(dataset: DataSource, description: string): void {
    if (sizeOf(dataset as Sized) === 0) throw new Error(`The ${description} dataset is empty (0 rows): there is nothing to ${description === "training" ? "train" : "evaluate"} on`);
  }

  private checkHasLabels(dataset: DataSource): void {
    if (!isColumnDataset(dataset)) return;
    const accepted = [...this.label_names, "label", "label_ids"];
    if (!accepted.some((c) => dataset.column_names.includes(c))) {
      throw new Error(
        `The training dataset has no label column (looked for ${accepted.map((c) => `'${c}'`).join(", ")}); its columns are ` +
          `${JSON.stringify(dataset.column_names)}. Rename the column holding the labels to 'label' (dataset.rename_column) or set label_names.`,
      );
    }
  }

  /** Overridable: the order of the training examples (random, from train_generator, by default). */
  _get_train_sampler(train_dataset: TrainDataset | null = this.train_dataset): Iterable<number> & { readonly length: number } {
    if (this.args.train_sampling_strategy === "sequential") return new SequentialSampler(train_dataset as Sized);
    return new RandomSampler(train_dataset as Sized, { generator: this.train_generator });
  }

  get_train_dataloader(): DataLoader<Batch> {
    if (this.train_dataset === null) throw new Error("Trainer: training requires a train_dataset.");
    this.checkNotEmpty(this.train_dataset, "training");
    const dataset = this._remove_unused_columns(this.train_dataset, "training");
    this.checkHasLabels(dataset);
    return new DataLoader(dataset, {
      batch_size: this.args.train_batch_size,
      sampler: this._get_train_sampler(dataset),
      collate_fn: isColumnDataset(dataset) ? this.data_collator : this.collatorRemovingColumns(),
      drop_last: this.args.dataloader_drop_last,
    });
  }

  get_eval_dataloader(eval_dataset: TrainDataset | null = null, description = "evaluation"): DataLoader<Batch> {
    const source = eval_dataset ?? this.eval_dataset;
    if (source === null) throw new Error("Trainer: evaluation requires an eval_dataset.");
    this.checkNotEmpty(source, description);
    const dataset = this._remove_unused_columns(source, description);
    return new DataLoader(dataset, {
      batch_size: this.args.eval_batch_size,
      sampler: new SequentialSampler(dataset as Sized),
      collate_fn: isColumnDataset(dataset) ? this.data_collator : this.collatorRemovingColumns(),
      drop_last: this.args.dataloader_drop_last,
    });
  }

  // ---- optimisation

  create_optimizer(): Optimizer {
    this.optimizer ??= createOptimizer(this.model, this.args);
    return this.optimizer;
  }

  create_scheduler(num_training_steps: number, optimizer: Optimizer = this.optimizer!): LambdaLR {
    this.lr_scheduler ??= createScheduler(optimizer, this.args, num_training_steps);
    return this.lr_scheduler;
  }

  create_optimizer_and_scheduler(num_training_steps: number): void {
    this.create_scheduler(num_training_steps, this.create_optimizer());
  }

  private _get_learning_rate(): number {
    return this.lr_scheduler!.get_last_lr()[0]!;
  }

  /** The model's loss on a batch, with its outputs when asked. */
  compute_loss(model: TrainableModel, inputs: Batch, return_outputs?: false): Tensor;
  compute_loss(model: TrainableModel, inputs: Batch, return_outputs: true): [Tensor, Record<string, unknown>];
  compute_loss(model: TrainableModel, inputs: Batch, return_outputs = false): Tensor | [Tensor, Record<string, unknown>] {
    const outputs = model(inputs) as Record<string, unknown>;
    const loss = outputs["loss"];
    if (!(loss instanceof Tensor)) {
      throw new Error(
        `The model did not return a loss from the inputs, only the following keys: ${Object.keys(outputs).filter((k) => outputs[k] != null).join(",")}. ` +
          `For reference, the inputs it received are ${Object.keys(inputs).join(",")}.`,
      );
    }
    return return_outputs ? [loss, outputs] : loss;
  }

  /** Runs the forward pass (and loss) of `fn` under autocast when training in mixed precision. */
  compute_loss_context_manager<T>(fn: () => T): T {
    return this.amp_dtype ? autocast(this.args.device.type, { dtype: this.amp_dtype }, fn) : fn();
  }

  /** Forward and backward on one batch; returns the loss (divided over the accumulation steps) as a number. */
  training_step(model: TrainableModel, batch: Batch, accumulation_steps = 1): number {
    model.train();
    const inputs = this._prepare_inputs(batch);
    try {
      const [loss, outputs] = this.compute_loss_context_manager(() => this.compute_loss(model, inputs, true));
      const scaled = accumulation_steps > 1 ? loss.div(accumulation_steps) : loss;
      const value = scaled.item();
      if (!Number.isFinite(value)) {
        disposeOutputs(outputs, scaled, loss);
        throw new NonFiniteLossError(value);
      }
      if (this.scaler) {
        const lossScaled = this.scaler.scale(scaled);
        lossScaled.backward();
        lossScaled.dispose();
      } else {
        scaled.backward();
      }
      disposeOutputs(outputs, scaled, loss);
      return value;
    } finally {
      disposeMoved(inputs, batch);
    }
  }

  /** The batch on args.device: the collator builds it on the CPU. The caller still owns `batch`. */
  _prepare_inputs(batch: Batch): Batch {
    const device = this.args.device;
    if (device.type === "cpu") return batch;
    const out: Batch = {};
    for (const [k, v] of Object.entries(batch)) out[k] = v instanceof Tensor ? v.to(device) : v;
    return out;
  }

  // ---- training

  async train(options: { resume_from_checkpoint?: string | boolean | null } = {}): Promise<TrainOutput> {
    let resume = options.resume_from_checkpoint ?? null;
    if (resume === false) resume = null;
    if (resume === true) {
      resume = get_last_checkpoint(this.args.output_dir);
      if (resume === null) throw new Error(`No valid checkpoint found in output directory (${this.args.output_dir})`);
    }
    if (resume !== null && !fs.existsSync(path.join(resume, TRAINER_STATE_NAME))) {
      throw new Error(`Can't find a valid checkpoint at ${resume} (no ${TRAINER_STATE_NAME} there)`);
    }
    checkWritable(this.args.output_dir);
    if (resume !== null) loadModelWeights(this.model, resume);
    try {
      return await this._inner_training_loop(resume);
    } finally {
      this._end_deferred_rows();
    }
  }

  private async _inner_training_loop(resume: string | null): Promise<TrainOutput> {
    const args = this.args;
    const train_dataloader = this.get_train_dataloader();
    const GA = args.gradient_accumulation_steps;
    const world = args.world_size;
    const total_train_batch_size = args.train_batch_size * GA * world;
    const len_dataloader = world > 1 ? shardLength(train_dataloader.length, args.dataloader_drop_last, world) : train_dataloader.length;
    if (len_dataloader === 0) {
      throw new Error(`The training dataset gives no batch (${sizeOf(train_dataloader.dataset as Sized)} rows, batch size ${args.train_batch_size}, drop_last ${args.dataloader_drop_last})`);
    }
    const num_update_steps_per_epoch = Math.max(Math.floor(len_dataloader / GA), 1);
    const num_examples = sizeOf(train_dataloader.dataset as Sized);
    let max_steps: number;
    let num_train_epochs: number;
    let num_train_samples: number;
    if (args.max_steps > 0) {
      max_steps = args.max_steps;
      num_train_epochs = Math.floor(max_steps / num_update_steps_per_epoch) + (max_steps % num_update_steps_per_epoch > 0 ? 1 : 0);
      num_train_samples = max_steps * total_train_batch_size;
    } else {
      max_steps = Math.ceil(args.num_train_epochs * num_update_steps_per_epoch);
      num_train_epochs = Math.ceil(args.num_train_epochs);
      num_train_samples = num_examples * args.num_train_epochs;
    }

    this.state = new TrainerState({ stateful_callbacks: this.statefulCallbacks(), train_batch_size: args.train_batch_size });
    this.state.compute_steps(args, max_steps);
    this.create_optimizer_and_scheduler(max_steps);
    const model = this.model;
    const optimizer = this.optimizer!;
    const scheduler = this.lr_scheduler!;

    let epochs_trained = 0;
    let steps_trained_in_current_epoch = 0;
    let rng = resume === null ? null : loadRngState(resume);
    if (resume !== null) {
      loadOptimizer(optimizer, resume);
      loadScheduler(scheduler, resume);
      if (this.scaler) loadScaler(this.scaler, resume);
      this.state = TrainerState.load_from_json(path.join(resume, TRAINER_STATE_NAME));
      if (args.restore_callback_states_from_checkpoint) this.restoreCallbackStates();
      epochs_trained = Math.floor(this.state.global_step / num_update_steps_per_epoch);
      if (!args.ignore_data_skip) steps_trained_in_current_epoch = (this.state.global_step % num_update_steps_per_epoch) * GA;
      if (rng?.sampler) this.train_generator.set_state(steps_trained_in_current_epoch > 0 ? rng.sampler.epoch_start : rng.sampler.current);
    }

    Object.assign(this.callback_handler, { model, optimizer, lr_scheduler: scheduler, train_dataloader });
    this.state.max_steps = max_steps;
    this.state.num_train_epochs = num_train_epochs;
    this.state.is_local_process_zero = args.local_process_index === 0;
    this.state.is_world_process_zero = args.process_index === 0;

    let tr_loss = 0;
    this._total_loss_scalar = 0;
    this._globalstep_last_logged = this.state.global_step;
    model.zero_grad();
    let grad_norm: number | null = null;
    let learning_rate: number | null = null;
    const start_time = performance.now();
    const graphStep = this._cuda_graph_step(GA);
    this.control = this.callback_handler.on_train_begin(args, this.state, this.control);
    if (args.eval_on_start) await this.evaluate();

    for (let epoch = epochs_trained; epoch < num_train_epochs; epoch++) {
      const steps_in_epoch = len_dataloader;
      this.control = this.callback_handler.on_epoch_begin(args, this.state, this.control);
      this._epoch_sampler_state = this.train_generator.get_state();
      const batches = world > 1
        ? processBatches(train_dataloader, { num_processes: world, process_index: args.process_index }).values()
        : train_dataloader.index_batches();
      const skip = steps_trained_in_current_epoch;
      for (let i = 0; i < skip; i++) batches.next();
      if (rng) {
        // The global generator continues where the interrupted run left it, once its batches are skipped
        default_generator.set_state(rng.cpu);
        rng = null;
      }
      steps_trained_in_current_epoch = 0;

      const remainder = steps_in_epoch % GA || GA;
      const total_updates = Math.floor(steps_in_epoch / GA) + (remainder < GA ? 1 : 0);
      let batch_index = skip;
      for (let update = Math.floor(skip / GA); update < total_updates; update++) {
        const group = update === total_updates - 1 ? remainder : GA;
        for (let j = 0; j < group; j++, batch_index++) {
          const next = batches.next();
          if (next.done) break;
          if (j === 0) this.control = this.callback_handler.on_step_begin(args, this.state, this.control);
          const inputs = train_dataloader.fetch(next.value);
          try {
            if (graphStep !== null) graphStep.step(inputs);
            else tr_loss = Math.fround(tr_loss + Math.fround(this.training_step(model, inputs, group)));
          } catch (err) {
            if (err instanceof NonFiniteLossError) throw this.nonFiniteLossError(err.value, epoch + (batch_index + 1) / steps_in_epoch);
            throw err;
          } finally {
            for (const t of Object.values(inputs)) if (t instanceof Tensor) t.dispose();
          }
          if (j < group - 1) this.control = this.callback_handler.on_substep_end(args, this.state, this.control);
        }
        if (world > 1) average_gradients(model.parameters());
        if (graphStep === null && args.max_grad_norm !== null && args.max_grad_norm > 0) {
          // clipping sees the true gradients: fp16's are unscaled first (step() then does not unscale again)
          this.scaler?.unscale_(optimizer);
          const norm = clip_grad_norm_(model.parameters(), args.max_grad_norm);
          grad_norm = norm.item();
          norm.dispose();
        }
        this.control = this.callback_handler.on_pre_optimizer_step(args, this.state, this.control);
        // the scheduler waits when fp16's scaler skips a step, as in transformers
        const optimizer_was_run = graphStep === null ? scaledOptimizerStep(this.scaler, optimizer) : true;
        this.control = this.callback_handler.on_optimizer_step(args, this.state, this.control);
        learning_rate = this._get_learning_rate();
        if (optimizer_was_run) scheduler.step();
        model.zero_grad();
        this.state.global_step += 1;
        this.state.epoch = epoch + batch_index / steps_in_epoch;
        this.control = this.callback_handler.on_step_end(args, this.state, this.control);
        if (graphStep !== null && this.control.should_log) [tr_loss, grad_norm] = this._drain_graph_step(graphStep, tr_loss);
        tr_loss = await this._maybe_log_save_evaluate(tr_loss, grad_norm, learning_rate);
        await yieldToEventLoop();
        if (this.control.should_epoch_stop || this.control.should_training_stop) break;
      }
      this.control = this.callback_handler.on_epoch_end(args, this.state, this.control);
      if (graphStep !== null && this.control.should_log) [tr_loss, grad_norm] = this._drain_graph_step(graphStep, tr_loss);
      tr_loss = await this._maybe_log_save_evaluate(tr_loss, grad_norm, learning_rate);
      if (this.control.should_training_stop) break;
    }

    if (graphStep !== null) {
      [tr_loss] = this._drain_graph_step(graphStep, tr_loss);
      graphStep.dispose();
      this._graph_step = null;
    }
    this._end_deferred_rows();

    if (args.load_best_model_at_end && this.state.best_model_checkpoint !== null && fs.existsSync(this.state.best_model_checkpoint)) {
      loadModelWeights(model, this.state.best_model_checkpoint);
    }
    this._total_loss_scalar += world > 1 ? meanAcross(tr_loss, world) : tr_loss;
    const train_loss = this._total_loss_scalar / Math.max(this.state.global_step, 0.001);
    const metrics: Metrics = speed_metrics("train", start_time, num_train_samples, this.state.max_steps);
    metrics["total_flos"] = this.state.total_flos;
    metrics["train_loss"] = train_loss;
    this.log(metrics);
    if (this.state.best_model_checkpoint !== null && args.save_total_limit === 1) {
      const best = path.resolve(this.state.best_model_checkpoint);
      for (const dir of sortedCheckpointDirs(args.output_dir)) if (path.resolve(dir) !== best) fs.rmSync(dir, { recursive: true, force: true });
    }
    this.control = this.callback_handler.on_train_end(args, this.state, this.control);
    return { global_step: this.state.global_step, training_loss: train_loss, metrics };
  }

  // ---- CUDA graphs (src/training/cuda_graph_step.ts)

  /** The graphs of the current train() call; those of a call that threw are freed by the next one. */
  private _graph_step: CudaGraphStep | null = null;

  /** The graph-replaying step when the model trains on a GPU (FINETUNE_CUDA_GRAPHS=0: never), else null. */
  private _cuda_graph_step(GA: number): CudaGraphStep | null {
    this._graph_step?.dispose();
    this._graph_step = null;
    const optimizer = this.optimizer!;
    // fp16's loss scaler reads every step's gradients on the host to decide whether to step: no graph for it.
    // A subclass's own training_step would be bypassed by a replay: it keeps the eager loop.
    if (this.scaler || this.training_step !== Trainer.prototype.training_step) return null;
    // the gradients' average across processes runs between backward and clipping, outside what a graph holds
    if (this.args.world_size > 1 || !useCudaGraphs(this.args.device, GA, optimizer)) return null;
    const model = this.model;
    this._defer_embedding_rows(optimizer);
    return this._graph_step = new CudaGraphStep(model, optimizer, this.args.device, this.args.max_grad_norm, (inputs, addLoss) => {
      model.train();
      const [loss, outputs] = this.compute_loss_context_manager(() => this.compute_loss(model, inputs, true));
      addLoss(loss);
      loss.backward();
      disposeOutputs(outputs, loss);
    }, this.args.train_batch_size);
  }

  /**
   * With CUDA graphs, AdamW defers the zero-gradient rows of the model's embedding tables (optim/adamw.ts). Their
   * rows are behind between catch-ups, which the Trainer makes before it evaluates, predicts or saves and when
   * training ends; so only where no callback of the user's could read the weights during training (the built-in
   * callbacks do not). FINETUNE_CUDA_DEFER_ROWS=0: never; =1: with any callbacks.
   */
  private _defer_embedding_rows(optimizer: Optimizer): void {
    const setting = process.env["FINETUNE_CUDA_DEFER_ROWS"];
    if (setting === "0" || setting === "false") return;
    const builtIn = new Set<unknown>([DefaultFlowCallback, ProgressCallback, PrinterCallback, EarlyStoppingCallback]);
    const anyCallbacks = setting === "1" || setting === "true";
    if (!anyCallbacks && !this.callback_handler.callbacks.every((cb) => builtIn.has(cb.constructor))) return;
    const defer = (optimizer as Partial<AdamW>).defer_zero_gradient_rows;
    if (typeof defer !== "function") return;
    const tables = [...this.model.modules()].filter((m): m is Embedding => m instanceof Embedding).map((m) => m.weight);
    const held = new Set(optimizer.param_groups.flatMap((g) => g.params));
    defer.call(optimizer, tables.filter((w) => held.has(w)));
  }

  /** Brings the weights AdamW's deferred rows hold back up to date (before they are read). */
  private _catch_up_deferred_rows(): void {
    (this.optimizer as Partial<AdamW> | null)?.catch_up?.();
  }

  /** Catches up and ends the deferral (at the end of train(), or when it throws). */
  private _end_deferred_rows(): void {
    const optimizer = this.optimizer as Partial<AdamW> | null;
    if (typeof optimizer?.defer_zero_gradient_rows === "function") optimizer.defer_zero_gradient_rows([]);
  }

  /** The loss summed on the GPU since the last read added to tr_loss, and the latest gradient norm. */
  private _drain_graph_step(graphStep: CudaGraphStep, tr_loss: number): [number, number | null] {
    const { loss, grad_norm } = graphStep.drain();
    if (!Number.isFinite(loss)) {
      throw new Error(
        `Training stopped: the loss summed since the last log is ${loss} at step ${this.state.global_step} (CUDA graphs check it when ` +
          "logging, after the updates; FINETUNE_CUDA_GRAPHS=0 checks every step before its update). Lower the learning rate, or check the inputs and labels.",
      );
    }
    return [Math.fround(tr_loss + loss), grad_norm];
  }

  private nonFiniteLossError(value: number, epoch: number): Error {
    const last = get_last_checkpoint(this.args.output_dir);
    return new Error(
      `Training stopped: the loss is ${value} at step ${this.state.global_step + 1} (epoch ${epoch.toFixed(2)}). No update was applied ` +
        `for that step; ${last ? `the last checkpoint, ${last}, is intact` : "no checkpoint had been saved yet"}. ` +
        "Lower the learning rate, or check the inputs and labels of that batch.",
    );
  }

  private restoreCallbackStates(): void {
    for (const cb of this.callback_handler.callbacks) {
      const saved = this.state.stateful_callbacks[cb.constructor.name] as { attributes?: Record<string, unknown> } | undefined;
      if (saved?.attributes && !Array.isArray(saved)) Object.assign(cb, saved.attributes);
    }
  }

  /** After each step and epoch: log the running loss, evaluate and save as the control asks. */
  private async _maybe_log_save_evaluate(tr_loss: number, grad_norm: number | null, learning_rate: number | null): Promise<number> {
    if (this.control.should_log && this.state.global_step > this._globalstep_last_logged) {
      const world = this.args.world_size;
      if (world > 1) tr_loss = meanAcross(tr_loss, world);
      const logs: Record<string, number> = { loss: tr_loss / (this.state.global_step - this._globalstep_last_logged) };
      if (grad_norm !== null) logs["grad_norm"] = grad_norm;
      logs["learning_rate"] = learning_rate ?? this._get_learning_rate();
      this._total_loss_scalar += tr_loss;
      tr_loss = 0;
      this._globalstep_last_logged = this.state.global_step;
      this.log(logs);
    }
    if (this.control.should_evaluate) {
      const metrics = await this.evaluate();
      const is_new_best = this._determine_best_metric(metrics);
      if (this.args.save_strategy === "best") this.control.should_save = is_new_best;
    }
    if (this.control.should_save) {
      this._save_checkpoint();
      this.control = this.callback_handler.on_save(this.args, this.state, this.control);
    }
    return tr_loss;
  }

  private _determine_best_metric(metrics: Metrics): boolean {
    const name = this.args.metric_for_best_model;
    if (name === null) return false;
    const key = name.startsWith("eval_") ? name : `eval_${name}`;
    const value = metrics[key];
    if (value === undefined) {
      throw new Error(
        `The \`metric_for_best_model\` training argument is set to '${key}', which is not found in the evaluation metrics. ` +
          `The available evaluation metrics are: ${JSON.stringify(Object.keys(metrics))}. Consider changing the \`metric_for_best_model\` via the TrainingArguments.`,
      );
    }
    const better = this.args.greater_is_better ? (a: number, b: number) => a > b : (a: number, b: number) => a < b;
    this.state.best_metric ??= this.args.greater_is_better ? -Infinity : Infinity;
    if (!better(value, this.state.best_metric)) return false;
    this.state.best_metric = value;
    this.state.best_global_step = this.state.global_step;
    return true;
  }

  /** Adds the epoch, appends to the log history and hands the logs to the callbacks (which print them). */
  log(logs: Record<string, number>): void {
    if (this.state.epoch !== null) logs["epoch"] = this.state.epoch;
    this.state.log_history.push({ ...logs, step: this.state.global_step });
    this.control = this.callback_handler.on_log(this.args, this.state, this.control, { logs });
  }

  // ---- checkpoints

  /** model.safetensors + config.json, the tokenizer's files and training_args.json, in `output_dir`. */
  save_model(output_dir: string | null = null): void {
    this._catch_up_deferred_rows();
    // with several processes the first writes, as transformers' should_save
    if (!this.args.should_save) return;
    const dir = output_dir ?? this.args.output_dir;
    fs.mkdirSync(dir, { recursive: true });
    if (typeof this.model.save_pretrained !== "function") {
      throw new Error(`save_model: ${this.model.constructor.name} has no save_pretrained (use a PreTrainedModel)`);
    }
    this.model.save_pretrained(dir);
    this.processing_class?.save_pretrained?.(dir);
    fs.writeFileSync(path.join(dir, TRAINING_ARGS_NAME), this.args.to_json_string() + "\n");
  }

  private _save_checkpoint(): void {
    const run_dir = this.args.output_dir;
    const name = `${PREFIX_CHECKPOINT_DIR}-${this.state.global_step}`;
    const final = path.join(run_dir, name);
    if (this.state.best_global_step) {
      const best = path.join(run_dir, `${PREFIX_CHECKPOINT_DIR}-${this.state.best_global_step}`);
      if (this.state.best_global_step === this.state.global_step || fs.existsSync(best)) this.state.best_model_checkpoint = best;
    }
    if (this.args.should_save) this._write_checkpoint(final);
    // the others go on once it is written (load_best_model_at_end reads it)
    if (this.args.world_size > 1) dist.barrier();
  }

  private _write_checkpoint(final: string): void {
    writeFolderAtomically(final, (dir) => {
      this.save_model(dir);
      if (!this.args.save_only_model) {
        saveOptimizer(this.optimizer!, dir);
        saveScheduler(this.lr_scheduler!, dir);
        if (this.scaler) saveScaler(this.scaler, dir);
        saveRngState(
          { cpu: default_generator.get_state(), sampler: { epoch_start: this._epoch_sampler_state ?? this.train_generator.get_state(), current: this.train_generator.get_state() } },
          dir,
        );
      }
      for (const cb of this.statefulCallbacks()) this.state.stateful_callbacks[cb.constructor.name] = cb.state();
      this.state.save_to_json(path.join(dir, TRAINER_STATE_NAME));
    });
    this._rotate_checkpoints(path.dirname(final));
  }

  /** Keeps the newest save_total_limit checkpoints, and always the best one. */
  private _rotate_checkpoints(run_dir: string): void {
    const limit = this.args.save_total_limit;
    if (limit === null || limit <= 0) return;
    const sorted = sortedCheckpointDirs(run_dir);
    if (sorted.length <= limit) return;
    const best = this.state.best_model_checkpoint === null ? null : path.resolve(this.state.best_model_checkpoint);
    const bestIndex = best === null ? -1 : sorted.findIndex((d) => path.resolve(d) === best);
    if (bestIndex >= 0) {
      // Moved next to the newest, so it is never among the oldest that get deleted
      for (let i = bestIndex; i < sorted.length - 2; i++) [sorted[i], sorted[i + 1]] = [sorted[i + 1]!, sorted[i]!];
    }
    const keep = best !== null && limit === 1 && path.resolve(sorted[sorted.length - 1]!) !== best ? 2 : limit;
    for (const dir of sorted.slice(0, Math.max(0, sorted.length - keep))) fs.rmSync(dir, { recursive: true, force: true });
  }

  // ---- evaluation and prediction

  async evaluate(eval_dataset: TrainDataset | null = null, options: { metric_key_prefix?: string } = {}): Promise<Metrics> {
    this._catch_up_deferred_rows();
    const prefix = options.metric_key_prefix ?? "eval";
    const dataloader = this.get_eval_dataloader(eval_dataset);
    const start = performance.now();
    const output = await this.evaluation_loop(dataloader, this.compute_metrics === null, prefix);
    Object.assign(output.metrics, speed_metrics(prefix, start, output.num_samples, Math.ceil(output.num_samples / this.args.eval_batch_size)));
    output.predictions?.dispose();
    output.label_ids?.dispose();
    this.log(output.metrics);
    this.control = this.callback_handler.on_evaluate(this.args, this.state, this.control, { metrics: output.metrics });
    return output.metrics;
  }

  async predict(test_dataset: TrainDataset, options: { metric_key_prefix?: string } = {}): Promise<PredictionOutput> {
    this._catch_up_deferred_rows();
    const prefix = options.metric_key_prefix ?? "test";
    const dataloader = this.get_eval_dataloader(test_dataset, "test");
    const start = performance.now();
    const output = await this.evaluation_loop(dataloader, false, prefix);
    Object.assign(output.metrics, speed_metrics(prefix, start, output.num_samples, Math.ceil(output.num_samples / this.args.eval_batch_size)));
    this.control = this.callback_handler.on_predict(this.args, this.state, this.control, { metrics: output.metrics });
    if (output.predictions === null) throw new Error("predict: the model returned no logits");
    return { predictions: output.predictions, label_ids: output.label_ids ?? fromFlat([], [0], int64), metrics: output.metrics };
  }

  /**
   * Runs the model over a dataloader without gradients; losses are averaged per example. With several processes
   * each runs its share of the batches and every process gets every sample's logits, labels and loss.
   */
  async evaluation_loop(dataloader: DataLoader<Batch>, prediction_loss_only: boolean, metric_key_prefix = "eval"): Promise<EvalLoopOutput> {
    const model = this.model;
    model.eval();
    this.callback_handler.eval_dataloader = dataloader;
    const world = this.args.world_size;
    const logits: Tensor[] = [];
    const labels: Tensor[] = [];
    let loss_sum = 0;
    let loss_count = 0;
    let num_samples = 0;
    const batches = processBatches(dataloader, { num_processes: world, process_index: this.args.process_index });
    const remainder = lastRoundRemainder(dataloader, world);
    for (const [index, indices] of batches.entries()) {
      const batch = dataloader.fetch(indices);
      const inputs = this._prepare_inputs(batch);
      disposeMoved(batch, inputs);
      let batch_size = findBatchSize(inputs);
      const has_labels = this.label_names.every((k) => inputs[k] !== undefined);
      const outputs = no_grad(() => this.compute_loss_context_manager(() => model(inputs))) as Record<string, unknown>;
      const loss = outputs["loss"];
      let batch_loss = has_labels && loss instanceof Tensor ? loss.item() : null;
      const output_logits = outputs["logits"];
      let batch_logits = !prediction_loss_only && output_logits instanceof Tensor ? output_logits.detach() : null;
      const input_labels = has_labels && this.label_names.length === 1 ? inputs[this.label_names[0]!] : undefined;
      let batch_labels = !prediction_loss_only && input_labels instanceof Tensor ? input_labels : null;
      for (const v of Object.values(outputs)) if (v instanceof Tensor && (v !== output_logits || batch_logits === null)) v.dispose();
      for (const v of Object.values(inputs)) if (v !== batch_labels) v.dispose();
      if (world > 1) {
        const gathered = gatherEvalBatch(batch_logits, batch_labels, batch_loss, batch_size, index === batches.length - 1, remainder);
        [batch_logits, batch_labels, batch_size] = [gathered.logits, gathered.labels, gathered.samples];
        if (gathered.losses) {
          const summed = gathered.losses.sum();
          loss_sum += summed.item();
          loss_count += batch_size;
          summed.dispose();
          gathered.losses.dispose();
          batch_loss = null;
        }
      }
      num_samples += batch_size;
      if (batch_loss !== null) {
        loss_sum += batch_loss * batch_size;
        loss_count += batch_size;
      }
      if (batch_logits) logits.push(batch_logits);
      if (batch_labels) labels.push(batch_labels);
      this.control = this.callback_handler.on_prediction_step(this.args, this.state, this.control);
      await yieldToEventLoop();
    }
    const predictions = logits.length ? joinBatches(logits) : null;
    const label_ids = labels.length ? joinBatches(labels) : null;
    let metrics: Metrics = {};
    if (this.compute_metrics !== null && predictions !== null && label_ids !== null) {
      metrics = plainMetrics(await this.compute_metrics(new EvalPrediction(predictions, label_ids)));
    }
    if (loss_count > 0) metrics[`${metric_key_prefix}_loss`] = loss_sum / loss_count;
    for (const key of Object.keys(metrics)) {
      if (!key.startsWith(`${metric_key_prefix}_`)) {
        const value = metrics[key]!;
        delete metrics[key];
        metrics[`${metric_key_prefix}_${key}`] = value;
      }
    }
    return { predictions, label_ids, metrics, num_samples };
  }

  // ---- reporting

  /** Trainer.log_metrics: the metrics of a split, one aligned line each, as transformers prints them. */
  log_metrics(split: string, metrics: Metrics): void {
    const formatted = metrics_format(metrics);
    const keys = Object.keys(formatted).sort();
    const k_width = Math.max(...keys.map((k) => k.length));
    const v_width = Math.max(...keys.map((k) => formatted[k]!.length));
    console.log(`***** ${split} metrics *****`);
    for (const key of keys) console.log(`  ${key.padEnd(k_width)} = ${formatted[key]!.padStart(v_width)}`);
  }
}

class NonFiniteLossError extends Error {
  constructor(readonly value: number) {
    super(`non-finite loss ${value}`);
  }
}

function disposeOutputs(outputs: Record<string, unknown>, ...extra: Tensor[]): void {
  const seen = new Set<Tensor>();
  for (const t of [...Object.values(outputs), ...extra]) {
    if (t instanceof Tensor && !seen.has(t)) {
      seen.add(t);
      t.dispose();
    }
  }
}

/** Disposes the tensors of `batch` that `other` does not share (the copies or originals of a device move). */
function disposeMoved(batch: Batch, other: Batch): void {
  if (batch === other) return;
  for (const [k, v] of Object.entries(batch)) if (v instanceof Tensor && v !== other[k]) v.dispose();
}

function findBatchSize(inputs: Batch): number {
  for (const v of Object.values(inputs)) if (v instanceof Tensor && v.ndim > 0) return v.shape[0]!;
  return 0;
}

function joinBatches(parts: Tensor[]): Tensor {
  if (parts.length === 1) return parts[0]!;
  const joined = cat(parts, 0);
  for (const p of parts) p.dispose();
  return joined;
}

/** compute_metrics may return tensors or nested results; the metrics dict holds plain numbers. */
function plainMetrics(result: Record<string, unknown>): Metrics {
  const out: Metrics = {};
  for (const [k, v] of Object.entries(result ?? {})) {
    if (typeof v === "number") out[k] = v;
    else if (v instanceof Tensor && v.numel() === 1) out[k] = v.item();
    else if (typeof v === "boolean") out[k] = Number(v);
  }
  return out;
}

/** Fails before any work when output_dir cannot hold checkpoints. */
function checkWritable(dir: string): void {
  const probe = path.join(dir, `.write-test-${process.pid}`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(probe, "");
    fs.rmSync(probe);
  } catch (err) {
    throw new Error(`output_dir '${dir}' is not writable (${(err as Error).message}); set TrainingArguments' output_dir to a folder you can write to`);
  }
}
