// transformers' TrainingArguments (v5 names and defaults), with its __post_init__ derivations and checks.
import { launchEnvironment } from "../distributed/launch_environment.js";
import { SCHEDULER_TYPES } from "../optim/schedules.js";
import { floatRepr, pyRepr } from "../util/pyformat.js";
import { Device } from "../tensor/device.js";
import { backends, cuda } from "../backend/cuda.js";

export const INTERVAL_STRATEGIES = ["no", "steps", "epoch"] as const;
export const SAVE_STRATEGIES = ["no", "steps", "epoch", "best"] as const;
export const OPTIMIZER_NAMES = ["adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop"] as const;
export const LOG_LEVELS = ["debug", "info", "warning", "error", "critical", "passive"] as const;

export type IntervalStrategy = (typeof INTERVAL_STRATEGIES)[number];
export type SaveStrategy = (typeof SAVE_STRATEGIES)[number];
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];
export type LrSchedulerType = (typeof SCHEDULER_TYPES)[number];

/** Every TrainingArguments field, in transformers' declaration order (to_dict and the JSON keep it). */
export interface TrainingArgumentsFields {
  output_dir: string;
  overwrite_output_dir: boolean;
  per_device_train_batch_size: number;
  num_train_epochs: number;
  max_steps: number;
  learning_rate: number;
  lr_scheduler_type: LrSchedulerType;
  lr_scheduler_kwargs: Record<string, unknown> | null;
  warmup_steps: number;
  optim: OptimizerName;
  optim_args: string | null;
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  gradient_accumulation_steps: number;
  average_tokens_across_devices: boolean;
  max_grad_norm: number;
  label_smoothing_factor: number;
  bf16: boolean;
  fp16: boolean;
  bf16_full_eval: boolean;
  fp16_full_eval: boolean;
  tf32: boolean | null;
  gradient_checkpointing: boolean;
  torch_compile: boolean;
  logging_strategy: IntervalStrategy;
  logging_steps: number;
  logging_first_step: boolean;
  logging_nan_inf_filter: boolean;
  log_level: (typeof LOG_LEVELS)[number];
  disable_tqdm: boolean;
  report_to: string[];
  run_name: string | null;
  eval_strategy: IntervalStrategy;
  eval_steps: number | null;
  eval_delay: number;
  per_device_eval_batch_size: number;
  prediction_loss_only: boolean;
  eval_on_start: boolean;
  eval_accumulation_steps: number | null;
  include_for_metrics: string[];
  batch_eval_metrics: boolean;
  save_only_model: boolean;
  save_strategy: SaveStrategy;
  save_steps: number;
  save_on_each_node: boolean;
  save_total_limit: number | null;
  push_to_hub: boolean;
  hub_model_id: string | null;
  load_best_model_at_end: boolean;
  metric_for_best_model: string | null;
  greater_is_better: boolean | null;
  ignore_data_skip: boolean;
  restore_callback_states_from_checkpoint: boolean;
  full_determinism: boolean;
  seed: number;
  data_seed: number | null;
  use_cpu: boolean;
  dataloader_drop_last: boolean;
  dataloader_num_workers: number;
  dataloader_pin_memory: boolean;
  dataloader_persistent_workers: boolean;
  dataloader_prefetch_factor: number | null;
  remove_unused_columns: boolean;
  label_names: string[] | null;
  train_sampling_strategy: "random" | "sequential" | "group_by_length";
  length_column_name: string;
  do_train: boolean;
  do_eval: boolean;
  do_predict: boolean;
  resume_from_checkpoint: string | null;
  warmup_ratio: number | null;
  logging_dir: string | null;
}

/** What the constructor accepts: any field, `report_to` also as one string, plus the pre-v4.41 alias. */
export type TrainingArgumentsOptions = Partial<Omit<TrainingArgumentsFields, "report_to" | "disable_tqdm">> & {
  report_to?: string | string[] | null;
  disable_tqdm?: boolean | null;
  /** Old name of eval_strategy. */
  evaluation_strategy?: IntervalStrategy;
};

type Kind = "str" | "int" | "float" | "bool" | "dict" | "list" | "str_or_list";

interface FieldSpec {
  kind: Kind;
  default: unknown;
  nullable?: boolean;
  /** Allowed values, and the Python enum they come from (for the error message and the repr). */
  choices?: readonly string[];
  enum_name?: string;
}

const f = (kind: Kind, def: unknown, extra: Partial<FieldSpec> = {}): FieldSpec => ({ kind, default: def, ...extra });
const opt = (kind: Kind, def: unknown = null): FieldSpec => f(kind, def, { nullable: true });
const choice = (values: readonly string[], def: string, enum_name?: string): FieldSpec => f("str", def, { choices: values, enum_name });

const FIELDS: { [K in keyof TrainingArgumentsFields]: FieldSpec } = {
  output_dir: opt("str"),
  overwrite_output_dir: f("bool", false),
  per_device_train_batch_size: f("int", 8),
  num_train_epochs: f("float", 3.0),
  max_steps: f("int", -1),
  learning_rate: f("float", 5e-5),
  lr_scheduler_type: choice(SCHEDULER_TYPES, "linear", "SchedulerType"),
  lr_scheduler_kwargs: opt("dict"),
  warmup_steps: f("float", 0),
  // transformers picks the fused AdamW when torch >= 2.8, which the golden run used
  optim: choice(OPTIMIZER_NAMES, "adamw_torch_fused", "OptimizerNames"),
  optim_args: opt("str"),
  weight_decay: f("float", 0.0),
  adam_beta1: f("float", 0.9),
  adam_beta2: f("float", 0.999),
  adam_epsilon: f("float", 1e-8),
  gradient_accumulation_steps: f("int", 1),
  average_tokens_across_devices: f("bool", true),
  max_grad_norm: f("float", 1.0),
  label_smoothing_factor: f("float", 0.0),
  bf16: f("bool", false),
  fp16: f("bool", false),
  bf16_full_eval: f("bool", false),
  fp16_full_eval: f("bool", false),
  tf32: opt("bool"),
  gradient_checkpointing: f("bool", false),
  torch_compile: f("bool", false),
  logging_strategy: choice(INTERVAL_STRATEGIES, "steps", "IntervalStrategy"),
  logging_steps: f("float", 500),
  logging_first_step: f("bool", false),
  logging_nan_inf_filter: f("bool", true),
  log_level: choice(LOG_LEVELS, "passive"),
  disable_tqdm: opt("bool"),
  report_to: f("str_or_list", "none", { nullable: true }),
  run_name: opt("str"),
  eval_strategy: choice(INTERVAL_STRATEGIES, "no", "IntervalStrategy"),
  eval_steps: opt("float"),
  eval_delay: f("float", 0),
  per_device_eval_batch_size: f("int", 8),
  prediction_loss_only: f("bool", false),
  eval_on_start: f("bool", false),
  eval_accumulation_steps: opt("int"),
  include_for_metrics: f("list", []),
  batch_eval_metrics: f("bool", false),
  save_only_model: f("bool", false),
  save_strategy: choice(SAVE_STRATEGIES, "steps", "SaveStrategy"),
  save_steps: f("float", 500),
  save_on_each_node: f("bool", false),
  save_total_limit: opt("int"),
  push_to_hub: f("bool", false),
  hub_model_id: opt("str"),
  load_best_model_at_end: f("bool", false),
  metric_for_best_model: opt("str"),
  greater_is_better: opt("bool"),
  ignore_data_skip: f("bool", false),
  restore_callback_states_from_checkpoint: f("bool", false),
  full_determinism: f("bool", false),
  seed: f("int", 42),
  data_seed: opt("int"),
  use_cpu: f("bool", false),
  dataloader_drop_last: f("bool", false),
  dataloader_num_workers: f("int", 0),
  dataloader_pin_memory: f("bool", true),
  dataloader_persistent_workers: f("bool", false),
  dataloader_prefetch_factor: opt("int"),
  remove_unused_columns: f("bool", true),
  label_names: opt("list"),
  train_sampling_strategy: choice(["random", "sequential", "group_by_length"], "random"),
  length_column_name: f("str", "length"),
  do_train: f("bool", false),
  do_eval: f("bool", false),
  do_predict: f("bool", false),
  resume_from_checkpoint: opt("str"),
  warmup_ratio: opt("float"),
  logging_dir: opt("str"),
};

const FIELD_NAMES = Object.keys(FIELDS) as (keyof TrainingArgumentsFields)[];
const ALIASES: Record<string, keyof TrainingArgumentsFields> = { evaluation_strategy: "eval_strategy" };

const KIND_NAMES: Record<Kind, string> = {
  str: "a string",
  int: "an integer",
  float: "a number",
  bool: "a boolean",
  dict: "an object (or a JSON string)",
  list: "an array of strings",
  str_or_list: "a string or an array of strings",
};

function closest(name: string, candidates: readonly string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0]!;
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j]!;
        row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length]!;
  };
  let best: string | undefined;
  let bestDistance = Math.max(3, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(name, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function checkValue(name: string, spec: FieldSpec, value: unknown): unknown {
  if (value === null) {
    if (spec.nullable) return null;
    throw new TypeError(`TrainingArguments: ${name} cannot be null (it must be ${KIND_NAMES[spec.kind]})`);
  }
  const bad = () => new TypeError(`TrainingArguments: ${name} must be ${KIND_NAMES[spec.kind]}, got ${JSON.stringify(value)}`);
  switch (spec.kind) {
    case "str":
      if (typeof value !== "string") throw bad();
      if (spec.choices && !spec.choices.includes(value)) {
        const list = `[${spec.choices.map((c) => `'${c}'`).join(", ")}]`;
        throw new Error(`${value} is not a valid ${spec.enum_name ?? name}, please select one of ${list}`);
      }
      return value;
    case "int":
      if (typeof value !== "number" || !Number.isInteger(value)) throw bad();
      return value;
    case "float":
      if (typeof value !== "number" || Number.isNaN(value)) throw bad();
      return value;
    case "bool":
      if (typeof value !== "boolean") throw bad();
      return value;
    case "dict":
      // The CLI passes dicts as JSON text, as transformers' _VALID_DICT_FIELDS allow
      if (typeof value === "string" && value.trimStart().startsWith("{")) return JSON.parse(value);
      if (typeof value !== "object" || Array.isArray(value)) throw bad();
      return { ...(value as object) };
    case "list":
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw bad();
      return [...value];
    case "str_or_list":
      if (typeof value === "string") return value;
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw bad();
      return [...value];
  }
}

export interface TrainingArguments extends TrainingArgumentsFields {}

export class TrainingArguments {
  constructor(output_dir?: string | null, options: TrainingArgumentsOptions = {}) {
    const given: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(options)) {
      if (value === undefined) continue;
      const name = ALIASES[key] ?? key;
      if (!(name in FIELDS)) {
        const guess = closest(key, [...FIELD_NAMES, ...Object.keys(ALIASES)]);
        throw new TypeError(
          `TrainingArguments.__init__() got an unexpected keyword argument '${key}'` + (guess ? ` (did you mean '${guess}'?)` : ""),
        );
      }
      if (name in given && given[name] !== value) {
        throw new Error(`TrainingArguments: both ${name} and its old name ${key} were given, with different values`);
      }
      given[name] = value;
    }
    if (output_dir !== undefined && output_dir !== null) {
      if (given["output_dir"] !== undefined && given["output_dir"] !== output_dir) {
        throw new Error("TrainingArguments: output_dir was given both as the first argument and in the options");
      }
      given["output_dir"] = output_dir;
    }
    const self = this as unknown as Record<string, unknown>;
    for (const name of FIELD_NAMES) {
      const spec = FIELDS[name];
      self[name] = name in given ? checkValue(name, spec, given[name]) : structuredClone(spec.default);
    }
    this.post_init();
  }

  /** transformers' __post_init__: derived defaults, then _validate_args. */
  private post_init(): void {
    const self = this as unknown as Record<string, unknown>;
    if (this.output_dir === null) self["output_dir"] = "trainer_output";
    if (self["disable_tqdm"] === null) this.disable_tqdm = false;
    if (this.warmup_ratio !== null) {
      if (this.warmup_ratio < 0 || this.warmup_ratio > 1) throw new Error("warmup_ratio must lie in range [0,1]");
      this.warmup_steps = this.warmup_ratio;
    }
    if (!this.do_eval && this.eval_strategy !== "no") this.do_eval = true;
    if (this.eval_strategy === "steps" && (this.eval_steps === null || this.eval_steps === 0)) {
      if (this.logging_steps > 0) this.eval_steps = this.logging_steps;
      else throw new Error(`evaluation strategy ${this.eval_strategy} requires either non-zero --eval_steps or --logging_steps`);
    }
    if (this.load_best_model_at_end && this.metric_for_best_model === null) this.metric_for_best_model = "loss";
    if (this.greater_is_better === null && this.metric_for_best_model !== null) {
      this.greater_is_better = !this.metric_for_best_model.endsWith("loss");
    }
    const report_to = self["report_to"] as string | string[] | null;
    if (report_to === null || report_to === "none" || (Array.isArray(report_to) && report_to.length === 1 && report_to[0] === "none")) {
      this.report_to = [];
    } else if (!Array.isArray(report_to)) {
      this.report_to = [report_to];
    }
    this.validate();
  }

  private validate(): void {
    if (this.logging_strategy === "steps" && this.logging_steps === 0) {
      throw new Error(`logging strategy ${this.logging_strategy} requires non-zero --logging_steps`);
    }
    for (const kind of ["logging", "eval", "save"] as const) {
      const strategy = this[`${kind}_strategy`];
      const steps = this[`${kind}_steps`];
      if (strategy === "steps" && steps !== null && steps > 1 && !Number.isInteger(steps)) {
        throw new Error(`--${kind}_steps must be an integer if bigger than 1: ${steps}`);
      }
      if (steps !== null && steps < 0) throw new Error(`--${kind}_steps must be positive, got ${steps}`);
    }
    if (this.load_best_model_at_end && this.save_strategy !== "best") {
      if (this.eval_strategy !== this.save_strategy) {
        throw new Error(
          "--load_best_model_at_end requires the save and eval strategy to match, but found\n- Evaluation " +
            `strategy: ${this.eval_strategy}\n- Save strategy: ${this.save_strategy}`,
        );
      }
      const eval_steps = this.eval_steps!;
      if (this.eval_strategy === "steps" && this.save_steps % eval_steps !== 0) {
        if (eval_steps < 1 || this.save_steps < 1) {
          if (!(eval_steps < 1 && this.save_steps < 1)) {
            throw new Error(
              "--load_best_model_at_end requires the saving steps to be a multiple of the evaluation " +
                "steps, which cannot get guaranteed when mixing ratio and absolute steps for save_steps " +
                `${floatRepr(this.save_steps)} and eval_steps ${floatRepr(eval_steps)}.`,
            );
          }
          // Ratios compared as integers, as transformers does, to dodge float remainders
          const LARGE_MULTIPLIER = 1_000_000;
          if (Math.round(this.save_steps * LARGE_MULTIPLIER) % Math.round(eval_steps * LARGE_MULTIPLIER) !== 0) {
            throw new Error(
              "--load_best_model_at_end requires the saving steps to be a multiple of the evaluation " +
                `steps, but found ${this.save_steps}, which is not a multiple of ${eval_steps}.`,
            );
          }
        } else {
          throw new Error(
            "--load_best_model_at_end requires the saving steps to be a round multiple of the evaluation " +
              `steps, but found ${this.save_steps}, which is not a round multiple of ${eval_steps}.`,
          );
        }
      }
    }
    if (this.fp16 && this.bf16) throw new Error("At most one of fp16 and bf16 can be True, but not both");
    if (this.fp16_full_eval && this.bf16_full_eval) {
      throw new Error("At most one of fp16 and bf16 can be True for full eval, but not both");
    }
    if (this.tf32 !== null) {
      // transformers sets the process-wide TF32 switch here, and refuses tf32 where no GPU can do it
      if (this.tf32 && (this.device.type !== "cuda" || cuda.get_device_capability()[0] < 8)) {
        throw new Error("--tf32 requires Ampere or a newer GPU arch, cuda>=11 and torch>=1.7");
      }
      if (this.device.type === "cuda") backends.cuda.matmul.allow_tf32 = this.tf32;
    }
    if (this.warmup_steps < 0) throw new Error("warmup_steps must be an integer or a float");
    if (this.dataloader_num_workers === 0 && this.dataloader_prefetch_factor !== null) {
      throw new Error(
        "--dataloader_prefetch_factor can only be set when data is loaded in a different process, i.e. when --dataloader_num_workers > 0.",
      );
    }
    for (const name of ["per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"] as const) {
      if (this[name] < 1) throw new Error(`--${name} must be at least 1, got ${this[name]}`);
    }
  }

  /** The device the Trainer puts the model and batches on: the GPU when CUDA is available, unless use_cpu. */
  get device(): Device {
    return !this.use_cpu && cuda.is_available() ? new Device("cuda:0") : new Device("cpu");
  }

  /** The processes training together (the launch's; 1 for a process on its own). */
  get world_size(): number {
    return launchEnvironment().world_size;
  }

  get process_index(): number {
    return launchEnvironment().rank;
  }

  get local_process_index(): number {
    return launchEnvironment().local_rank;
  }

  /** Whether this process logs: the first of its machine, as transformers' default (log_on_each_node). */
  get should_log(): boolean {
    return this.local_process_index === 0;
  }

  /** Whether this process writes checkpoints and the model: the first of all. */
  get should_save(): boolean {
    return this.process_index === 0;
  }

  /** One process drives one device. */
  get n_gpu(): number {
    return 1;
  }

  get train_batch_size(): number {
    return this.per_device_train_batch_size * Math.max(1, this.n_gpu);
  }

  get eval_batch_size(): number {
    return this.per_device_eval_batch_size * Math.max(1, this.n_gpu);
  }

  /** warmup_steps >= 1 counts steps; below 1 it is a ratio of the training steps. */
  get_warmup_steps(num_training_steps: number): number {
    return this.warmup_steps >= 1 ? Math.trunc(this.warmup_steps) : Math.ceil(num_training_steps * this.warmup_steps);
  }

  to_dict(): TrainingArgumentsFields {
    const out: Record<string, unknown> = {};
    for (const name of FIELD_NAMES) out[name] = structuredClone(this[name]);
    return out as unknown as TrainingArgumentsFields;
  }

  /** json.dumps(to_dict(), indent=2) as Python writes it: float fields keep their float spelling (5e-05, 3.0). */
  to_json_string(): string {
    const lines = FIELD_NAMES.map((name) => {
      const value = this[name];
      const text =
        typeof value === "number" && FIELDS[name].kind === "float"
          ? floatRepr(value)
          : JSON.stringify(value, null, 2).replace(/\n/g, "\n  ");
      return `  ${JSON.stringify(name)}: ${text}`;
    });
    return `{\n${lines.join(",\n")}\n}`;
  }

  /** transformers' __str__: sorted `name=value,` lines, enums as `IntervalStrategy.STEPS`, str() of each value. */
  toString(): string {
    const lines = [...FIELD_NAMES].sort().map((name) => {
      const value = this[name];
      const spec = FIELDS[name];
      let text: string;
      if (spec.enum_name && typeof value === "string") text = `${spec.enum_name}.${value.toUpperCase()}`;
      else if (typeof value === "string") text = value;
      else text = pyRepr(value, spec.kind === "float" ? "all" : "auto");
      return `${name}=${text},\n`;
    });
    return `TrainingArguments(\n${lines.join("")})`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }

  /** `finetune train --learning_rate 2e-5 --bf16 ...`: the TrainingArguments flags of a command line; unknown flags are an error. */
  static from_cli(argv: string[]): TrainingArguments {
    const { options, remaining } = parse_training_cli(argv);
    if (remaining.length > 0) throw new Error(`unrecognized arguments: ${remaining.join(" ")}`);
    return new TrainingArguments(null, options);
  }
}

const TRUE_WORDS = ["true", "1", "yes", "y", "t"];
const FALSE_WORDS = ["false", "0", "no", "n", "f"];

function coerce(flag: string, spec: FieldSpec, words: string[]): unknown {
  const word = words[0]!;
  if (spec.nullable && (word === "None" || word === "null")) return null;
  switch (spec.kind) {
    case "int":
      if (!/^[+-]?\d+$/.test(word)) throw new Error(`argument --${flag}: invalid int value: '${word}'`);
      return Number(word);
    case "float": {
      const n = Number(word);
      if (word.trim() === "" || Number.isNaN(n)) throw new Error(`argument --${flag}: invalid float value: '${word}'`);
      return n;
    }
    case "bool": {
      const w = word.toLowerCase();
      if (TRUE_WORDS.includes(w)) return true;
      if (FALSE_WORDS.includes(w)) return false;
      throw new Error(`argument --${flag}: Truthy value expected: got ${word} but expected one of yes/no, true/false, t/f, y/n, 1/0 (case insensitive).`);
    }
    case "list":
      return words;
    case "str_or_list":
      return words.length === 1 ? word : words;
    default:
      return word;
  }
}

/**
 * HfArgumentParser's reading of TrainingArguments flags: `--name value`, `--name=value`, a bare `--bool_flag`
 * (true), `--no_<flag>` for booleans, several values after a list flag. Values are typed from the field's
 * type. Everything else (positionals, other tools' flags and their values) comes back in `remaining`.
 */
export function parse_training_cli(argv: string[]): { options: TrainingArgumentsOptions; remaining: string[] } {
  const options: Record<string, unknown> = {};
  const remaining: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) {
      remaining.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    let flag = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    let negated = false;
    if (flag.startsWith("no_") && !(flag in FIELDS) && FIELDS[flag.slice(3) as keyof TrainingArgumentsFields]?.kind === "bool") {
      flag = flag.slice(3);
      negated = true;
    }
    const name = (ALIASES[flag] ?? flag) as keyof TrainingArgumentsFields;
    const spec = FIELDS[name];
    if (spec === undefined) {
      remaining.push(arg);
      // Keep the unknown flag's values with it, so the caller's own parser sees them together
      while (inline === undefined && i + 1 < argv.length && !argv[i + 1]!.startsWith("--")) remaining.push(argv[++i]!);
      continue;
    }
    if (negated) {
      if (inline !== undefined) throw new Error(`argument --no_${flag}: ignored explicit argument '${inline}'`);
      options[name] = false;
      continue;
    }
    let words: string[];
    if (inline !== undefined) words = [inline];
    else {
      words = [];
      const many = spec.kind === "list" || spec.kind === "str_or_list";
      while (i + 1 < argv.length && !argv[i + 1]!.startsWith("--") && (many || words.length === 0)) {
        // A bare boolean flag takes the next word only when it spells a boolean
        if (spec.kind === "bool" && ![...TRUE_WORDS, ...FALSE_WORDS].includes(argv[i + 1]!.toLowerCase())) break;
        words.push(argv[++i]!);
      }
    }
    if (words.length === 0) {
      if (spec.kind !== "bool") throw new Error(`argument --${flag}: expected ${spec.kind === "list" ? "at least one argument" : "one argument"}`);
      options[name] = true;
      continue;
    }
    options[name] = coerce(flag, spec, words);
  }
  return { options: options as TrainingArgumentsOptions, remaining };
}
