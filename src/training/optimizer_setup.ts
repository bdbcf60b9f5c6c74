// The Trainer's default optimizer and schedule: AdamW with weight decay on all but biases and norm weights,
// then transformers' get_scheduler.
import type { Module } from "../nn/module.js";
import { LayerNorm } from "../nn/layers.js";
import { AdamW } from "../optim/adamw.js";
import { SGD } from "../optim/sgd.js";
import type { Optimizer } from "../optim/optimizer.js";
import { get_scheduler, type LambdaLR } from "../optim/lr_scheduler.js";
import type { TrainingArguments } from "./training_args.js";

type ModuleClass = abstract new (...args: never[]) => Module;

/** transformers' ALL_LAYERNORM_LAYERS. */
export const ALL_LAYERNORM_LAYERS: ModuleClass[] = [LayerNorm];

/** Names that mark a parameter as a bias or a normalisation weight (Trainer.get_decay_parameter_names). */
const NO_DECAY_PATTERNS = [/bias/, /layernorm/, /rmsnorm/, /(?:^|\.)norm(?:$|\.)/, /_norm(?:$|\.)/];

/** Names of the parameters not inside a forbidden layer type and not matching a forbidden pattern. */
export function get_parameter_names(model: Module, forbidden_layer_types: ModuleClass[], forbidden_layer_names: RegExp[] = []): string[] {
  const forbidden = (name: string) => forbidden_layer_names.some((p) => p.test(name.toLowerCase()));
  const result: string[] = [];
  for (const [name, child] of model.named_children()) {
    if (forbidden_layer_types.some((cls) => child instanceof cls)) continue;
    for (const n of get_parameter_names(child, forbidden_layer_types, forbidden_layer_names)) {
      if (!forbidden(`${name}.${n}`)) result.push(`${name}.${n}`);
    }
  }
  for (const [k] of model.named_parameters("", false)) if (!forbidden(k)) result.push(k);
  return result;
}

export function get_decay_parameter_names(model: Module): string[] {
  return get_parameter_names(model, ALL_LAYERNORM_LAYERS, NO_DECAY_PATTERNS);
}

export function createOptimizer(model: Module, args: TrainingArguments): Optimizer {
  const decay = new Set(get_decay_parameter_names(model));
  const trainable = [...model.named_parameters()].filter(([, p]) => p.requires_grad);
  const groups = [
    { params: trainable.filter(([n]) => decay.has(n)).map(([, p]) => p), weight_decay: args.weight_decay },
    { params: trainable.filter(([n]) => !decay.has(n)).map(([, p]) => p), weight_decay: 0.0 },
  ];
  switch (args.optim) {
    // PyTorch's fused AdamW computes the same update; ours is one native call per group either way
    case "adamw_torch":
    case "adamw_torch_fused":
      return new AdamW(groups, { lr: args.learning_rate, betas: [args.adam_beta1, args.adam_beta2], eps: args.adam_epsilon });
    case "sgd":
      return new SGD(groups, { lr: args.learning_rate });
    default:
      throw new Error(`optim '${args.optim}' is not available in finetune; use 'adamw_torch', 'adamw_torch_fused' or 'sgd'`);
  }
}

export function createScheduler(optimizer: Optimizer, args: TrainingArguments, num_training_steps: number): LambdaLR {
  return get_scheduler(args.lr_scheduler_type, {
    optimizer,
    num_warmup_steps: args.get_warmup_steps(num_training_steps),
    num_training_steps,
    scheduler_specific_kwargs: args.lr_scheduler_kwargs,
  });
}
