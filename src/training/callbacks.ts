// transformers' callback system: TrainerCallback's events, the handler that runs them in order, and the
// stock callbacks (flow decisions, progress bars, log printing, early stopping).
import { formatG, pyRepr } from "../util/pyformat.js";
import { tqdm, type Tqdm } from "./progress.js";
import { TrainerControl, TrainerState, type ExportableState } from "./trainer_state.js";
import type { TrainingArguments } from "./training_args.js";

/** What every event receives besides args/state/control (Python's **kwargs). */
export interface CallbackKwargs {
  model?: unknown;
  processing_class?: unknown;
  optimizer?: unknown;
  lr_scheduler?: unknown;
  train_dataloader?: unknown;
  eval_dataloader?: unknown;
  /** on_evaluate / on_predict */
  metrics?: Record<string, number>;
  /** on_log */
  logs?: Record<string, unknown>;
  [key: string]: unknown;
}

export type EventResult = TrainerControl | void | undefined;

export const CALLBACK_EVENTS = [
  "on_init_end",
  "on_train_begin",
  "on_train_end",
  "on_epoch_begin",
  "on_epoch_end",
  "on_step_begin",
  "on_pre_optimizer_step",
  "on_optimizer_step",
  "on_substep_end",
  "on_step_end",
  "on_evaluate",
  "on_predict",
  "on_save",
  "on_log",
  "on_prediction_step",
  "on_push_begin",
] as const;

export type CallbackEvent = (typeof CALLBACK_EVENTS)[number];

/**
 * Override the events you need. An event may change `control` in place or return a TrainerControl, which
 * then replaces it for the callbacks after it.
 */
export class TrainerCallback {
  on_init_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_train_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_train_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_epoch_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_epoch_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  /** One step may span several batches under gradient accumulation. */
  on_step_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  /** After gradient clipping, before optimizer.step(). */
  on_pre_optimizer_step(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  /** After optimizer.step(), before the gradients are zeroed. */
  on_optimizer_step(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  /** After each accumulation substep but the last. */
  on_substep_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_step_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_evaluate(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_predict(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_save(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_log(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_prediction_step(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
  on_push_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): EventResult {}
}

export type CallbackLike = TrainerCallback | (new () => TrainerCallback);

/** Runs each event through every callback in order, handing the (possibly replaced) control along. */
export class CallbackHandler extends TrainerCallback {
  callbacks: TrainerCallback[] = [];
  train_dataloader: unknown = null;
  eval_dataloader: unknown = null;

  constructor(
    callbacks: CallbackLike[],
    public model: unknown,
    public processing_class: unknown,
    public optimizer: unknown,
    public lr_scheduler: unknown,
  ) {
    super();
    for (const cb of callbacks) this.add_callback(cb);
    if (!this.callbacks.some((cb) => cb instanceof DefaultFlowCallback)) {
      console.warn(
        "The Trainer will not work properly if you don't have a `DefaultFlowCallback` in its callbacks. You\n" +
          "should add one before training with `trainer.add_callback(DefaultFlowCallback). The current list of" +
          `callbacks is\n:${this.callback_list}`,
      );
    }
  }

  add_callback(callback: CallbackLike): void {
    const cb = typeof callback === "function" ? new callback() : callback;
    if (this.callbacks.some((c) => c.constructor === cb.constructor)) {
      console.warn(
        `You are adding a ${cb.constructor.name} to the callbacks of this Trainer, but there is already one. The current` +
          `list of callbacks is\n:${this.callback_list}`,
      );
    }
    this.callbacks.push(cb);
  }

  /** Removes and returns the first callback of that class, or that very instance. */
  pop_callback(callback: CallbackLike): TrainerCallback | undefined {
    const index = this.callbacks.findIndex((cb) => (typeof callback === "function" ? cb instanceof callback : cb === callback));
    return index < 0 ? undefined : this.callbacks.splice(index, 1)[0];
  }

  remove_callback(callback: CallbackLike): void {
    this.pop_callback(callback);
  }

  get callback_list(): string {
    return this.callbacks.map((cb) => cb.constructor.name).join("\n");
  }

  override on_init_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_init_end", args, state, control, kwargs);
  }

  override on_train_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    control.should_training_stop = false;
    return this.call_event("on_train_begin", args, state, control, kwargs);
  }

  override on_train_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_train_end", args, state, control, kwargs);
  }

  override on_epoch_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    control.should_epoch_stop = false;
    return this.call_event("on_epoch_begin", args, state, control, kwargs);
  }

  override on_epoch_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_epoch_end", args, state, control, kwargs);
  }

  override on_step_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    control.should_log = false;
    control.should_evaluate = false;
    control.should_save = false;
    return this.call_event("on_step_begin", args, state, control, kwargs);
  }

  override on_pre_optimizer_step(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_pre_optimizer_step", args, state, control, kwargs);
  }

  override on_optimizer_step(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_optimizer_step", args, state, control, kwargs);
  }

  override on_substep_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_substep_end", args, state, control, kwargs);
  }

  override on_step_end(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_step_end", args, state, control, kwargs);
  }

  override on_evaluate(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    control.should_evaluate = false;
    return this.call_event("on_evaluate", args, state, control, kwargs);
  }

  override on_predict(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_predict", args, state, control, kwargs);
  }

  override on_save(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    control.should_save = false;
    return this.call_event("on_save", args, state, control, kwargs);
  }

  override on_log(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    control.should_log = false;
    return this.call_event("on_log", args, state, control, kwargs);
  }

  override on_prediction_step(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_prediction_step", args, state, control, kwargs);
  }

  override on_push_begin(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    return this.call_event("on_push_begin", args, state, control, kwargs);
  }

  call_event(event: CallbackEvent, args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs = {}): TrainerControl {
    for (const callback of this.callbacks) {
      const result = callback[event](args, state, control, {
        model: this.model,
        processing_class: this.processing_class,
        optimizer: this.optimizer,
        lr_scheduler: this.lr_scheduler,
        train_dataloader: this.train_dataloader,
        eval_dataloader: this.eval_dataloader,
        ...kwargs,
      });
      if (result instanceof TrainerControl) control = result;
    }
    return control;
  }
}

/** Decides, after each step and epoch, whether to log, evaluate, save or stop — the Trainer's default flow. */
export class DefaultFlowCallback extends TrainerCallback {
  override on_step_end(args: TrainingArguments, state: TrainerState, control: TrainerControl): TrainerControl {
    if (state.global_step === 1 && args.logging_first_step) control.should_log = true;
    if (args.logging_strategy === "steps" && state.global_step % state.logging_steps === 0) control.should_log = true;

    if (args.eval_strategy === "steps" && state.global_step % state.eval_steps === 0 && args.eval_delay <= state.global_step) {
      control.should_evaluate = true;
    }

    if (args.save_strategy === "steps" && state.save_steps > 0 && state.global_step % state.save_steps === 0) {
      control.should_save = true;
    }

    if (state.global_step >= state.max_steps) {
      control.should_training_stop = true;
      // A run that saves by steps always ends with a checkpoint
      if (args.save_strategy === "steps") control.should_save = true;
    }
    return control;
  }

  override on_epoch_end(args: TrainingArguments, state: TrainerState, control: TrainerControl): TrainerControl {
    if (args.logging_strategy === "epoch") control.should_log = true;
    if (args.eval_strategy === "epoch" && args.eval_delay <= state.epoch) control.should_evaluate = true;
    if (args.save_strategy === "epoch") control.should_save = true;
    return control;
  }
}

// Python keeps ints and floats apart; in the logs only these keys hold ints.
const INT_LOG_KEYS = new Set(["step", "num_input_tokens_seen"]);

/**
 * The printed form of a logs dict, as transformers 5 prints it: floats as 4-significant-digit strings,
 * so `{'loss': '0.6908', 'grad_norm': '0.2545', 'learning_rate': '0', 'epoch': '0.03125'}`.
 */
export function format_logs(logs: Record<string, unknown>, max_str_len = Infinity): string {
  const shown: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(logs)) {
    if (k === "total_flos") continue;
    if (typeof v === "string" && v.length > max_str_len) {
      shown[k] = `[String too long to display, length: ${v.length} > ${max_str_len}. Consider increasing \`max_str_len\` if needed.]`;
    } else if (typeof v === "number" && !(INT_LOG_KEYS.has(k) && Number.isInteger(v))) {
      shown[k] = formatG(v, 4);
    } else {
      shown[k] = v;
    }
  }
  return pyRepr(shown);
}

function hasLength(x: unknown): x is { length: number } {
  return typeof x === "object" && x !== null && typeof (x as { length?: unknown }).length === "number";
}

/** The training bar (one tick per optimizer step), an evaluation bar, and the logs printed above them. */
export class ProgressCallback extends TrainerCallback {
  training_bar: Tqdm | null = null;
  prediction_bar: Tqdm | null = null;
  private current_step = 0;

  constructor(readonly max_str_len = 100) {
    super();
  }

  override on_train_begin(args: TrainingArguments, state: TrainerState): void {
    if (state.is_world_process_zero) this.training_bar = tqdm({ total: state.max_steps, disable: args.disable_tqdm });
    this.current_step = 0;
  }

  override on_step_end(args: TrainingArguments, state: TrainerState): void {
    if (state.is_world_process_zero && this.training_bar) {
      this.training_bar.update(state.global_step - this.current_step);
      this.current_step = state.global_step;
    }
  }

  override on_prediction_step(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): void {
    const loader = kwargs.eval_dataloader;
    if (state.is_world_process_zero && hasLength(loader)) {
      this.prediction_bar ??= tqdm({ total: loader.length, leave: this.training_bar === null, disable: args.disable_tqdm });
      this.prediction_bar.update(1);
    }
  }

  override on_evaluate(args: TrainingArguments, state: TrainerState): void {
    this.closePredictionBar(state);
  }

  override on_predict(args: TrainingArguments, state: TrainerState): void {
    this.closePredictionBar(state);
  }

  override on_log(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): void {
    if (state.is_world_process_zero && this.training_bar && kwargs.logs) {
      this.training_bar.write(format_logs(kwargs.logs, this.max_str_len));
    }
  }

  override on_train_end(args: TrainingArguments, state: TrainerState): void {
    if (state.is_world_process_zero && this.training_bar) {
      this.training_bar.close();
      this.training_bar = null;
    }
  }

  private closePredictionBar(state: TrainerState): void {
    if (state.is_world_process_zero) {
      this.prediction_bar?.close();
      this.prediction_bar = null;
    }
  }
}

/** Prints the logs, for runs without progress bars (disable_tqdm). */
export class PrinterCallback extends TrainerCallback {
  override on_log(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): void {
    if (kwargs.logs) delete kwargs.logs["total_flos"];
    if (state.is_local_process_zero) console.log(kwargs.logs ? format_logs(kwargs.logs) : "None");
  }
}

/**
 * Stops training once `metric_for_best_model` has failed to improve (by more than the threshold) for
 * `early_stopping_patience` evaluations in a row.
 */
export class EarlyStoppingCallback extends TrainerCallback implements ExportableState {
  early_stopping_patience_counter = 0;

  constructor(
    readonly early_stopping_patience = 1,
    readonly early_stopping_threshold = 0.0,
  ) {
    super();
  }

  check_metric_value(args: TrainingArguments, state: TrainerState, control: TrainerControl, metric_value: number): void {
    // best_metric is maintained by the Trainer's best-model tracking
    const better = args.greater_is_better ? metric_value > (state.best_metric ?? 0) : metric_value < (state.best_metric ?? 0);
    if (state.best_metric === null || (better && Math.abs(metric_value - state.best_metric) > this.early_stopping_threshold)) {
      this.early_stopping_patience_counter = 0;
    } else {
      this.early_stopping_patience_counter += 1;
    }
  }

  override on_train_begin(args: TrainingArguments): void {
    if (!args.load_best_model_at_end) {
      console.warn(
        "Using EarlyStoppingCallback without load_best_model_at_end=True. Once training is finished, the best model will not be loaded automatically.",
      );
    }
    if (args.metric_for_best_model === null) throw new Error("EarlyStoppingCallback requires metric_for_best_model to be defined");
    if (args.eval_strategy === "no") throw new Error("EarlyStoppingCallback requires IntervalStrategy of steps or epoch");
  }

  override on_evaluate(args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: CallbackKwargs): void {
    let metric_to_check = args.metric_for_best_model!;
    if (!metric_to_check.startsWith("eval_")) metric_to_check = `eval_${metric_to_check}`;
    const metric_value = kwargs.metrics?.[metric_to_check];
    if (metric_value === undefined || metric_value === null) {
      console.warn(`early stopping required metric_for_best_model, but did not find ${metric_to_check} so early stopping is disabled`);
      return;
    }
    this.check_metric_value(args, state, control, metric_value);
    if (this.early_stopping_patience_counter >= this.early_stopping_patience) control.should_training_stop = true;
  }

  state(): { args: Record<string, unknown>; attributes: Record<string, unknown> } {
    return {
      args: {
        early_stopping_patience: this.early_stopping_patience,
        early_stopping_threshold: this.early_stopping_threshold,
      },
      attributes: { early_stopping_patience_counter: this.early_stopping_patience_counter },
    };
  }

  /** ExportableState.from_state: rebuilds the callback from what state() saved. */
  static from_state(saved: { args: Record<string, unknown>; attributes: Record<string, unknown> }): EarlyStoppingCallback {
    const cb = new EarlyStoppingCallback(
      saved.args["early_stopping_patience"] as number | undefined,
      (saved.args["early_stopping_threshold"] as number | null | undefined) ?? 0.0,
    );
    Object.assign(cb, saved.attributes);
    return cb;
  }
}

export { TrainerControl, TrainerState };
