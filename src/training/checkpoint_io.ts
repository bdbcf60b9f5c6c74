// The files of a Trainer checkpoint beside the model's own: optimizer and scheduler state, RNG states, and
// the atomic write of a whole checkpoint folder.
import fs from "node:fs";
import path from "node:path";
import { Tensor } from "../tensor/tensor.js";
import { no_grad } from "../autograd/grad_mode.js";
import { load_file, save_file } from "../safetensors/tensors.js";
import type { Module } from "../nn/module.js";
import type { Optimizer, OptimizerStateDict } from "../optim/optimizer.js";
import type { LambdaLR } from "../optim/lr_scheduler.js";
import type { Generator } from "../ops/random.js";
import type { GradScaler, GradScalerState } from "../amp/grad_scaler.js";

export const OPTIMIZER_TENSORS = "optimizer.safetensors";
export const OPTIMIZER_NAME = "optimizer.json";
export const SCHEDULER_NAME = "scheduler.json";
export const RNG_STATE_NAME = "rng_state.json";
export const SCALER_NAME = "scaler.json";
export const TRAINER_STATE_NAME = "trainer_state.json";
export const TRAINING_ARGS_NAME = "training_args.json";
export const MODEL_WEIGHTS = "model.safetensors";

type GeneratorState = ReturnType<Generator["get_state"]>;

export interface RngState {
  /** the global generator (dropout, initialisation) at the moment of saving */
  cpu: GeneratorState;
  /** the train sampler's generator when the saved epoch began, and now (= when the next epoch begins) */
  sampler: { epoch_start: GeneratorState; current: GeneratorState } | null;
}

/**
 * Writes a folder under a temporary name beside `final`, then renames it into place, so a crash never leaves
 * a half-written checkpoint behind under the real name.
 */
export function writeFolderAtomically(final: string, write: (dir: string) => void): void {
  const tmp = path.join(path.dirname(final), `tmp-${path.basename(final)}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    write(tmp);
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Tensor state goes to safetensors (`<param index>.<name>`), the rest (steps, param groups) to JSON. */
export function saveOptimizer(optimizer: Optimizer, dir: string): void {
  const { state, param_groups } = optimizer.state_dict();
  const tensors: Record<string, Tensor> = {};
  const scalars: Record<string, Record<string, number>> = {};
  for (const [index, entries] of Object.entries(state)) {
    for (const [key, value] of Object.entries(entries)) {
      if (value instanceof Tensor) tensors[`${index}.${key}`] = value;
      else (scalars[index] ??= {})[key] = value;
    }
  }
  save_file(tensors, path.join(dir, OPTIMIZER_TENSORS));
  fs.writeFileSync(path.join(dir, OPTIMIZER_NAME), JSON.stringify({ state: scalars, param_groups }, null, 2) + "\n");
}

export function loadOptimizer(optimizer: Optimizer, dir: string): void {
  const saved = JSON.parse(fs.readFileSync(path.join(dir, OPTIMIZER_NAME), "utf8")) as {
    state: Record<string, Record<string, number>>;
    param_groups: OptimizerStateDict["param_groups"];
  };
  const tensors = load_file(path.join(dir, OPTIMIZER_TENSORS));
  const state: OptimizerStateDict["state"] = {};
  for (const [index, scalars] of Object.entries(saved.state)) state[Number(index)] = { ...scalars };
  for (const [name, t] of Object.entries(tensors)) {
    const dot = name.indexOf(".");
    (state[Number(name.slice(0, dot))] ??= {})[name.slice(dot + 1)] = t;
  }
  optimizer.load_state_dict({ state, param_groups: saved.param_groups });
  for (const t of Object.values(tensors)) t.dispose();
}

export function saveScheduler(scheduler: LambdaLR, dir: string): void {
  fs.writeFileSync(path.join(dir, SCHEDULER_NAME), JSON.stringify(scheduler.state_dict(), null, 2) + "\n");
}

export function loadScheduler(scheduler: LambdaLR, dir: string): void {
  scheduler.load_state_dict(JSON.parse(fs.readFileSync(path.join(dir, SCHEDULER_NAME), "utf8")));
}

/** The fp16 loss scale and its growth tracker, so a resumed run scales as the uninterrupted one would. */
export function saveScaler(scaler: GradScaler, dir: string): void {
  fs.writeFileSync(path.join(dir, SCALER_NAME), JSON.stringify(scaler.state_dict(), null, 2) + "\n");
}

/** A checkpoint written without fp16 has no scaler state; the scaler then starts afresh, as accelerate's does. */
export function loadScaler(scaler: GradScaler, dir: string): void {
  const file = path.join(dir, SCALER_NAME);
  if (fs.existsSync(file)) scaler.load_state_dict(JSON.parse(fs.readFileSync(file, "utf8")) as GradScalerState);
}

export function saveRngState(state: RngState, dir: string): void {
  fs.writeFileSync(path.join(dir, RNG_STATE_NAME), JSON.stringify(state, null, 2) + "\n");
}

export function loadRngState(dir: string): RngState | null {
  const file = path.join(dir, RNG_STATE_NAME);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as RngState) : null;
}

/**
 * Copies a checkpoint's model.safetensors into `model`. A tied parameter is saved once, under its first
 * name, so a name may be missing as long as the same tensor is filled under another.
 */
export function loadModelWeights(model: Module, dir: string): void {
  const file = path.join(dir, MODEL_WEIGHTS);
  if (!fs.existsSync(file)) throw new Error(`${dir} has no ${MODEL_WEIGHTS}: it is not a complete checkpoint`);
  const loaded = load_file(file);
  try {
    const own = model.state_dict();
    const filled = new Set(Object.entries(own).filter(([k]) => k in loaded).map(([, t]) => t));
    const missing = Object.entries(own).filter(([k, t]) => !(k in loaded) && !filled.has(t)).map(([k]) => k);
    const unexpected = Object.keys(loaded).filter((k) => !(k in own));
    if (missing.length || unexpected.length) {
      throw new Error(
        `${file} does not match ${model.constructor.name}: ` +
          [missing.length ? `missing ${missing.join(", ")}` : "", unexpected.length ? `unexpected ${unexpected.join(", ")}` : ""].filter(Boolean).join("; "),
      );
    }
    no_grad(() => model.load_state_dict(loaded, false));
  } finally {
    for (const t of Object.values(loaded)) t.dispose();
  }
}
