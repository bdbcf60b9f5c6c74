// PretrainedConfig: a model's config.json as an object, with transformers' common fields and label maps.
import fs from "node:fs";
import path from "node:path";
import { resolveFile, writeFileAtomic, type ResolveOptions } from "./resolve.js";

export const TRANSFORMERS_VERSION = "5.17.0";

export type ProblemType = "regression" | "single_label_classification" | "multi_label_classification";

export class PretrainedConfig {
  static model_type = "";
  [key: string]: unknown;
  model_type!: string;
  architectures: string[] | null = null;
  id2label: Record<number, string> = { 0: "LABEL_0", 1: "LABEL_1" };
  label2id: Record<string, number> = { LABEL_0: 0, LABEL_1: 1 };
  problem_type: ProblemType | null = null;
  dtype: string | null = null;
  tie_word_embeddings = true;
  pad_token_id: number | null = null;
  bos_token_id: number | null = null;
  eos_token_id: number | null = null;
  is_decoder = false;
  add_cross_attention = false;
  output_hidden_states = false;
  output_attentions = false;
  return_dict = true;

  constructor(kwargs: Record<string, unknown> = {}) {
    this.model_type = (this.constructor as typeof PretrainedConfig).model_type;
    this.update(kwargs);
  }

  /** Applies fields; num_labels and id2label/label2id follow transformers' rules. */
  update(kwargs: Record<string, unknown>): void {
    const { num_labels, id2label, label2id, ...rest } = kwargs;
    Object.assign(this, rest);
    if (id2label !== undefined) {
      this.id2label = Object.fromEntries(Object.entries(id2label as Record<string, string>).map(([k, v]) => [Number(k), v]));
      this.label2id = label2id ? { ...(label2id as Record<string, number>) } : Object.fromEntries(Object.entries(this.id2label).map(([k, v]) => [v, Number(k)]));
    } else if (label2id !== undefined) {
      this.label2id = { ...(label2id as Record<string, number>) };
    }
    if (num_labels !== undefined) {
      if (!Number.isInteger(num_labels) || (num_labels as number) < 1) throw new Error(`num_labels must be a positive integer, got ${String(num_labels)}`);
      if (Object.keys(this.id2label).length !== num_labels) {
        this.id2label = Object.fromEntries(Array.from({ length: num_labels as number }, (_, i) => [i, `LABEL_${i}`]));
        this.label2id = Object.fromEntries(Array.from({ length: num_labels as number }, (_, i) => [`LABEL_${i}`, i]));
      }
    }
    if (this.problem_type !== null && !["regression", "single_label_classification", "multi_label_classification"].includes(this.problem_type)) {
      throw new Error(`The config parameter \`problem_type\` was not understood: received ${this.problem_type} but only 'regression', 'single_label_classification' and 'multi_label_classification' are valid.`);
    }
  }

  get num_labels(): number {
    return Object.keys(this.id2label).length;
  }

  set num_labels(n: number) {
    this.update({ num_labels: n });
  }

  to_dict(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this)) if (v !== undefined) out[k] = v;
    out.model_type = this.model_type;
    out.transformers_version = TRANSFORMERS_VERSION;
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  to_json_string(): string {
    return `${JSON.stringify(this.to_dict(), null, 2)}\n`;
  }

  save_pretrained(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    writeFileAtomic(path.join(dir, "config.json"), this.to_json_string());
  }

  static async from_pretrained<T extends PretrainedConfig>(this: new (kwargs?: Record<string, unknown>) => T, idOrPath: string, options: Record<string, unknown> & ResolveOptions = {}): Promise<T> {
    const dict = await loadConfigDict(idOrPath, options);
    return new this({ ...dict, ...withoutResolveOptions(options) });
  }

  toString(): string {
    return `${this.constructor.name} ${this.to_json_string()}`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

const RESOLVE_OPTIONS = new Set(["revision", "cache_dir", "local_files_only", "force_download", "token"]);

/** The options that are config fields, not download settings. */
export function withoutResolveOptions(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).filter(([k]) => !RESOLVE_OPTIONS.has(k)));
}

/** Reads config.json of a folder or Hub repo, with a clear error when it is missing or not JSON. */
export async function loadConfigDict(idOrPath: string, options: ResolveOptions = {}): Promise<Record<string, unknown>> {
  const file = await resolveFile(idOrPath, "config.json", options);
  if (!file) {
    throw new Error(`${idOrPath} does not appear to have a file named config.json. Checkout 'https://huggingface.co/${idOrPath}/tree/main' for available files, or pass the path of a folder that holds config.json.`);
  }
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${(err as Error).message}): the config file is corrupt; download or save it again.`);
  }
}
