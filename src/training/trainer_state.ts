// TrainerState and TrainerControl: what the Trainer's loop knows and what callbacks may ask of it.
import { randomBytes } from "node:crypto";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { floatRepr } from "../util/pyformat.js";
import type { TrainingArguments } from "./training_args.js";

/** A callback whose settings and counters are saved in trainer_state.json and restored on resume. */
export interface ExportableState {
  state(): { args: Record<string, unknown>; attributes: Record<string, unknown> };
}

export interface TrainerStateFields {
  epoch: number;
  global_step: number;
  max_steps: number;
  logging_steps: number;
  eval_steps: number;
  save_steps: number;
  train_batch_size: number | null;
  num_train_epochs: number;
  num_input_tokens_seen: number;
  total_flos: number;
  log_history: Record<string, number | string>[];
  best_metric: number | null;
  best_global_step: number | null;
  best_model_checkpoint: string | null;
  is_local_process_zero: boolean;
  is_world_process_zero: boolean;
  is_hyper_param_search: boolean;
  trial_name: string | null;
  trial_params: Record<string, string | number | boolean> | null;
  stateful_callbacks: Record<string, unknown>;
}

export type TrainerStateInit = Partial<Omit<TrainerStateFields, "stateful_callbacks">> & {
  /** Either the saved dict or the callbacks themselves, whose state() is taken. */
  stateful_callbacks?: Record<string, unknown> | ExportableState[] | null;
};

const DEFAULTS: TrainerStateFields = {
  epoch: 0,
  global_step: 0,
  max_steps: 0,
  logging_steps: 500,
  eval_steps: 500,
  save_steps: 500,
  train_batch_size: null,
  num_train_epochs: 0,
  num_input_tokens_seen: 0,
  total_flos: 0,
  log_history: [],
  best_metric: null,
  best_global_step: null,
  best_model_checkpoint: null,
  is_local_process_zero: true,
  is_world_process_zero: true,
  is_hyper_param_search: false,
  trial_name: null,
  trial_params: null,
  stateful_callbacks: {},
};

// Python writes these as floats (1.0, not 1); JS numbers carry no such mark, so the file format says which.
const FLOAT_FIELDS = new Set(["epoch", "total_flos", "best_metric"]);
const INT_LOG_KEYS = new Set(["step", "num_input_tokens_seen"]);

export interface TrainerState extends TrainerStateFields {}

export class TrainerState {
  constructor(init: TrainerStateInit = {}) {
    const unknown = Object.keys(init).filter((k) => !(k in DEFAULTS));
    if (unknown.length > 0) throw new TypeError(`TrainerState got an unexpected keyword argument '${unknown[0]}'`);
    Object.assign(this, structuredClone({ ...DEFAULTS, stateful_callbacks: {} }));
    const { stateful_callbacks, ...rest } = init;
    Object.assign(this, structuredClone(rest));
    this.log_history ??= [];
    this.stateful_callbacks = Array.isArray(stateful_callbacks)
      ? collectCallbackStates(stateful_callbacks)
      : { ...(stateful_callbacks ?? {}) };
  }

  /** Turns ratio logging/eval/save steps (< 1) into step counts for this run's max_steps. */
  compute_steps(args: TrainingArguments, max_steps: number): void {
    for (const kind of ["logging", "eval", "save"] as const) {
      let num_steps = args[`${kind}_steps`];
      if (num_steps !== null) {
        if (num_steps < 1) num_steps = Math.ceil(max_steps * num_steps);
        this[`${kind}_steps`] = num_steps;
      }
    }
  }

  to_dict(): TrainerStateFields {
    const out = {} as Record<string, unknown>;
    for (const key of Object.keys(DEFAULTS)) out[key] = structuredClone((this as unknown as Record<string, unknown>)[key]);
    return out as unknown as TrainerStateFields;
  }

  /** trainer_state.json as transformers writes it (sorted keys, indent 2); through a temp file, so never half-written. */
  save_to_json(json_path: string): void {
    const text = `${pythonJson(this.to_dict(), "")}\n`;
    const tmp = `${json_path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      writeFileSync(tmp, text, "utf8");
      renameSync(tmp, json_path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
  }

  static load_from_json(json_path: string): TrainerState {
    let parsed: unknown;
    try {
      parsed = parsePythonJson(readFileSync(json_path, "utf8"));
    } catch (err) {
      throw new Error(`could not read the trainer state ${json_path}: ${(err as Error).message}`);
    }
    return new TrainerState(parsed as TrainerStateInit);
  }
}

/** JSON plus the NaN / Infinity that Python's json module writes for such floats. */
function parsePythonJson(text: string): unknown {
  const marked = text.replace(/([:[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g, '$1"\\u0000$2"');
  return JSON.parse(marked, (_key, v: unknown) => (typeof v === "string" && v.startsWith("\u0000") ? Number(v.slice(1)) : v));
}

function collectCallbackStates(callbacks: ExportableState[]): Record<string, unknown> {
  const states: Record<string, unknown> = {};
  for (const cb of callbacks) {
    if (typeof cb?.state !== "function") {
      throw new TypeError(`All callbacks passed to be saved must implement \`state()\` (ExportableState), but received ${cb?.constructor?.name}`);
    }
    const name = cb.constructor.name;
    const s = cb.state();
    // Several callbacks of one class are kept as a list of states
    if (name in states) states[name] = Array.isArray(states[name]) ? [...(states[name] as unknown[]), s] : [states[name], s];
    else states[name] = s;
  }
  return states;
}

/** json.dumps(value, indent=2, sort_keys=True) with Python's float spelling for the fields that are floats. */
function pythonJson(value: unknown, indent: string, key = "", inLog = false): string {
  if (typeof value === "number") {
    const asFloat = inLog ? !INT_LOG_KEYS.has(key) : FLOAT_FIELDS.has(key);
    if (!Number.isFinite(value)) return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
    return asFloat ? floatRepr(value) : String(value);
  }
  if (typeof value === "string") return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    const items = value.map((v) => inner + pythonJson(v, inner, key, inLog || key === "log_history"));
    return `[\n${items.join(",\n")}\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (entries.length === 0) return "{}";
  const items = entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${pythonJson(v, inner, k, inLog)}`);
  return `{\n${items.join(",\n")}\n${indent}}`;
}

export class TrainerControl implements ExportableState {
  should_training_stop = false;
  should_epoch_stop = false;
  should_save = false;
  should_evaluate = false;
  should_log = false;

  constructor(init: Partial<Pick<TrainerControl, "should_training_stop" | "should_epoch_stop" | "should_save" | "should_evaluate" | "should_log">> = {}) {
    Object.assign(this, init);
  }

  _new_training(): void {
    this.should_training_stop = false;
  }

  _new_epoch(): void {
    this.should_epoch_stop = false;
  }

  _new_step(): void {
    this.should_save = false;
    this.should_evaluate = false;
    this.should_log = false;
  }

  state(): { args: Record<string, unknown>; attributes: Record<string, unknown> } {
    return {
      args: {
        should_training_stop: this.should_training_stop,
        should_epoch_stop: this.should_epoch_stop,
        should_save: this.should_save,
        should_evaluate: this.should_evaluate,
        should_log: this.should_log,
      },
      attributes: {},
    };
  }
}
