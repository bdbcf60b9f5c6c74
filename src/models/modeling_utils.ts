// PreTrainedModel: from_pretrained / from_config / save_pretrained with Hugging Face checkpoint compatibility
// (config.json + model.safetensors or a sharded index; legacy key names; base-model prefix added or removed;
// tied weights) and transformers' report of unused and newly initialised weights.
import fs from "node:fs";
import path from "node:path";
import { Module } from "../nn/module.js";
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import { no_grad } from "../autograd/grad_mode.js";
import * as init from "../nn/init.js";
import { formatShape, sameShape } from "../tensor/shape.js";
import { PretrainedConfig } from "./configuration_utils.js";
import { resolveFile, type ResolveOptions } from "./resolve.js";
import { readSafetensors, readShardedIndex, type SafetensorsFile } from "../safetensors/index.js";
import { save_file, tensorFromFile } from "../safetensors/tensors.js";

export interface FromPretrainedOptions extends ResolveOptions {
  config?: PretrainedConfig;
  ignore_mismatched_sizes?: boolean;
  [configField: string]: unknown;
}

export interface LoadingInfo {
  missing_keys: string[];
  unexpected_keys: string[];
  mismatched_keys: [string, number[], number[]][];
}

/** A checkpoint tensor not yet copied: where its bytes are and what they hold. */
interface CheckpointEntry {
  file: SafetensorsFile;
  name: string;
}

type ModelClass<T extends PreTrainedModel> = {
  new (config: never): T;
  config_class: new (kwargs?: Record<string, unknown>) => PretrainedConfig;
  base_model_prefix: string;
  name: string;
};

const initialized = new WeakSet<Module>();

export abstract class PreTrainedModel extends Module {
  static config_class: new (kwargs?: Record<string, unknown>) => PretrainedConfig = PretrainedConfig;
  static base_model_prefix = "";
  /** Checkpoint keys that are expected to be unused and not worth reporting. */
  static _keys_to_ignore_on_load_unexpected: RegExp[] = [/(^|\.)position_ids$/];
  /** The batch keys forward reads (Python reads them off forward's signature); the Trainer drops other columns. */
  static forward_input_names = ["input_ids", "attention_mask", "token_type_ids", "position_ids", "labels"];
  _loading_info: LoadingInfo | null = null;

  constructor(readonly config: PretrainedConfig) {
    super();
  }

  /**
   * Initialises every weight like transformers, then ties shared ones. Subclass constructors call it last; a
   * module already initialised by an inner model's post_init (BertModel inside a classifier) is not drawn again.
   */
  post_init(): void {
    this.initWeights(this.modules());
    this.tie_weights();
  }

  /** `force`: also modules whose initialisation was skipped under no_init_weights. */
  private initWeights(modules: Module[], force = false): void {
    no_grad(() => {
      for (const m of modules) {
        if (initialized.has(m) && !force) continue;
        this._init_weights(m);
        initialized.add(m);
      }
    });
  }

  abstract _init_weights(module: Module): void;

  tie_weights(): void {}

  num_parameters(options: { only_trainable?: boolean } = {}): number {
    return this.parameters().filter((p) => !options.only_trainable || p.requires_grad).reduce((a, p) => a + p.numel(), 0);
  }

  static from_config<T extends PreTrainedModel>(this: ModelClass<T>, config: PretrainedConfig): T {
    return new this(config as never);
  }

  static async from_pretrained<T extends PreTrainedModel>(this: ModelClass<T>, idOrPath: string, options: FromPretrainedOptions = {}): Promise<T> {
    const { config: givenConfig, ignore_mismatched_sizes, ...rest } = options;
    const configClass = this.config_class as unknown as typeof PretrainedConfig;
    const config = givenConfig ?? (await configClass.from_pretrained(idOrPath, rest));
    const model = init.no_init_weights(() => new this(config as never));
    const files = await openCheckpoint(idOrPath, rest);
    try {
      model.loadCheckpoint(files, idOrPath, ignore_mismatched_sizes ?? false);
    } finally {
      for (const f of new Set([...files.values()].map((e) => e.file))) f.close();
    }
    model.eval();
    return model;
  }

  /** Copies checkpoint tensors into the parameters, reporting what did not match as transformers does. */
  private loadCheckpoint(entries: Map<string, CheckpointEntry>, source: string, ignoreMismatched: boolean): void {
    const cls = this.constructor as unknown as ModelClass<PreTrainedModel> & { _keys_to_ignore_on_load_unexpected: RegExp[] };
    const own = this.state_dict();
    const renamed = mapCheckpointKeys([...entries.keys()], Object.keys(own), cls.base_model_prefix);
    const loadedTensors = new Set<Tensor>();
    const unexpected: string[] = [];
    const mismatched: [string, number[], number[]][] = [];
    no_grad(() => {
      for (const [ckptKey, modelKey] of renamed) {
        const target = own[modelKey];
        if (!target) {
          if (!cls._keys_to_ignore_on_load_unexpected.some((r) => r.test(modelKey))) unexpected.push(ckptKey);
          continue;
        }
        const entry = entries.get(ckptKey)!;
        const info = entry.file.info(entry.name);
        if (!sameShape(info.shape, target.shape)) {
          if (!ignoreMismatched) {
            throw new Error(
              `Error(s) in loading state_dict for ${cls.name}:\n\tsize mismatch for ${modelKey}: copying a param with shape ${formatShape(info.shape)} from checkpoint, the shape in current model is ${formatShape(target.shape)}.\n\tYou may consider adding \`ignore_mismatched_sizes: true\` in the model \`from_pretrained\` options.`,
            );
          }
          mismatched.push([modelKey, [...info.shape], [...target.shape]]);
          continue;
        }
        const source = tensorFromFile(entry.file, entry.name);
        target.copy_(source);
        source.dispose();
        loadedTensors.add(target);
      }
    });
    const missing = Object.entries(own).filter(([, t]) => !loadedTensors.has(t)).map(([k]) => k);
    this.initWeights(missing.map((k) => this.get_submodule(k.slice(0, Math.max(k.lastIndexOf("."), 0)))), true);
    this._loading_info = { missing_keys: missing, unexpected_keys: unexpected, mismatched_keys: mismatched };
    reportLoading(cls.name, source, this._loading_info);
  }

  save_pretrained(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    this.config.architectures = [this.constructor.name];
    this.config.dtype = this.parameters()[0]?.dtype.name ?? float32.name;
    save_file(this.state_dict(), path.join(dir, "model.safetensors"));
    this.config.save_pretrained(dir);
  }
}

/** Pairs each checkpoint key with the model key it fills: legacy LayerNorm names, base-model prefix in or out. */
export function mapCheckpointKeys(ckptKeys: string[], modelKeys: string[], prefix: string): [string, string][] {
  const fix = (k: string) => k.replace(/LayerNorm\.gamma$/, "LayerNorm.weight").replace(/LayerNorm\.beta$/, "LayerNorm.bias");
  const fixed = ckptKeys.map((k) => [k, fix(k)] as [string, string]);
  if (!prefix) return fixed;
  const p = `${prefix}.`;
  const modelHasPrefix = modelKeys.some((k) => k.startsWith(p));
  const ckptHasPrefix = fixed.some(([, k]) => k.startsWith(p));
  const modelSet = new Set(modelKeys);
  if (modelHasPrefix && !ckptHasPrefix) {
    return fixed.map(([c, k]) => [c, modelSet.has(`${p}${k}`) ? `${p}${k}` : k]);
  }
  if (!modelHasPrefix && ckptHasPrefix) {
    return fixed.map(([c, k]) => [c, k.startsWith(p) ? k.slice(p.length) : k]);
  }
  return fixed;
}

async function openCheckpoint(idOrPath: string, options: ResolveOptions): Promise<Map<string, CheckpointEntry>> {
  const entries = new Map<string, CheckpointEntry>();
  const single = await resolveFile(idOrPath, "model.safetensors", options);
  if (single) {
    const file = readSafetensors(single);
    for (const name of file.keys()) entries.set(name, { file, name });
    return entries;
  }
  const indexFile = await resolveFile(idOrPath, "model.safetensors.index.json", options);
  if (!indexFile) {
    throw new Error(
      `${idOrPath} does not appear to have a file named model.safetensors or model.safetensors.index.json. ` +
        "finetune reads safetensors checkpoints; convert a PyTorch .bin checkpoint with transformers' save_pretrained(safe_serialization=True).",
    );
  }
  const localIndex = path.isAbsolute(indexFile) ? indexFile : path.resolve(indexFile);
  const folder = path.dirname(localIndex);
  const shardNames = new Set(Object.values((JSON.parse(fs.readFileSync(localIndex, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {}));
  for (const shard of shardNames) await resolveFile(idOrPath, shard, options);
  const index = readShardedIndex(localIndex);
  const opened = new Map<string, SafetensorsFile>();
  for (const [name, shardPath] of index.weightMap) {
    let file = opened.get(shardPath);
    if (!file) {
      file = readSafetensors(shardPath);
      opened.set(shardPath, file);
    }
    if (!file.has(name)) throw new Error(`${path.relative(folder, shardPath)} does not hold ${name}, which model.safetensors.index.json places there: the checkpoint is inconsistent; download it again.`);
    entries.set(name, { file, name });
  }
  return entries;
}

function reportLoading(className: string, source: string, info: LoadingInfo): void {
  const lines: string[] = [];
  if (info.unexpected_keys.length) {
    lines.push(
      `Some weights of the model checkpoint at ${source} were not used when initializing ${className}: ${pyList([...info.unexpected_keys].sort())}`,
      `- This IS expected if you are initializing ${className} from the checkpoint of a model trained on another task or with another architecture (e.g. initializing a BertForSequenceClassification model from a BertForPreTraining model).`,
      `- This IS NOT expected if you are initializing ${className} from the checkpoint of a model that you expect to be exactly identical (initializing a BertForSequenceClassification model from a BertForSequenceClassification model).`,
    );
  }
  if (info.missing_keys.length) {
    lines.push(`Some weights of ${className} were not initialized from the model checkpoint at ${source} and are newly initialized: ${pyList([...info.missing_keys].sort())}`);
  }
  for (const [key, ckpt, model] of info.mismatched_keys) {
    lines.push(`Some weights of ${className} were not initialized from the model checkpoint at ${source} and are newly initialized because the shapes did not match:\n- ${key}: found shape ${formatShape(ckpt)} in the checkpoint and ${formatShape(model)} in the model instantiated`);
  }
  if (info.missing_keys.length || info.mismatched_keys.length) {
    lines.push("You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.");
  }
  if (lines.length) console.warn(lines.join("\n"));
}

function pyList(items: string[]): string {
  return `[${items.map((s) => `'${s}'`).join(", ")}]`;
}

