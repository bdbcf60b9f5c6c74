// The public names of the training pieces that stand apart from the tensor engine: metrics, arguments,
// learning-rate schedules, progress bars and callbacks. src/index.ts re-exports all of it.
export { evaluate } from "./evaluate/index.js";
export type { MetricInput, MetricResult, MetricValue, TensorLike } from "./evaluate/index.js";
export {
  TrainingArguments,
  parse_training_cli,
  type IntervalStrategy,
  type SaveStrategy,
  type OptimizerName,
  type TrainingArgumentsFields,
  type TrainingArgumentsOptions,
} from "./training/training_args.js";
export {
  SCHEDULER_TYPES,
  lrLambdaFor,
  type LrLambda,
  type ScheduleOptions,
  type SchedulerType,
} from "./optim/schedules.js";
export { tqdm, Tqdm, format_meter, format_interval, type TqdmOptions } from "./training/progress.js";
export {
  TrainerCallback,
  CallbackHandler,
  DefaultFlowCallback,
  ProgressCallback,
  PrinterCallback,
  EarlyStoppingCallback,
  format_logs,
  type CallbackKwargs,
  type CallbackEvent,
} from "./training/callbacks.js";
export { TrainerState, TrainerControl, type ExportableState, type TrainerStateFields } from "./training/trainer_state.js";
export { Trainer, type TrainerOptions, type TrainableModel, type ProcessingClass } from "./training/trainer.js";
export {
  EvalPrediction,
  PREFIX_CHECKPOINT_DIR,
  get_last_checkpoint,
  set_seed,
  speed_metrics,
  type TrainOutput,
  type PredictionOutput,
  type Metrics,
} from "./training/trainer_utils.js";
export { get_parameter_names, ALL_LAYERNORM_LAYERS } from "./training/optimizer_setup.js";
export {
  DataLoader,
  default_collate,
  Sampler,
  SequentialSampler,
  RandomSampler,
  BatchSampler,
  DataCollatorWithPadding,
  default_data_collator,
  DataCollatorForLanguageModeling,
  type DataLoaderOptions,
  type DataCollatorWithPaddingOptions,
  type DataCollatorForLanguageModelingOptions,
} from "./data/index.js";
export {
  Accelerator,
  AcceleratedOptimizer,
  AcceleratedScheduler,
  DataLoaderShard,
  send_to_device,
  notebook_launcher,
  type AcceleratorOptions,
  type MixedPrecision,
  type NotebookLauncherOptions,
} from "./accelerate/index.js";
