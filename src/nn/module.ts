// torch.nn.Module: callable, with parameters, buffers and submodules found from its own properties in the
// order they were assigned (as PyTorch registers them), state_dict / load_state_dict, train / eval and to().
import { Tensor } from "../tensor/tensor.js";
import { Device, toDevice } from "../tensor/device.js";
import { DType, toDType } from "../tensor/dtype.js";
import { Parameter, persistent } from "./parameter.js";
import { withScope } from "../autograd/scope.js";
import { no_grad } from "../autograd/grad_mode.js";
import { formatShape, sameShape } from "../tensor/shape.js";

export interface LoadResult {
  missing_keys: string[];
  unexpected_keys: string[];
}

// A callable object: the constructor returns a function whose prototype chain is the class's, so
// `module(input)` runs forward (as Python's __call__) and class fields land on that function.
const CallableBase = function (this: unknown) {
  const fn = function (...args: unknown[]) {
    return (fn as unknown as Module).__call__(...args);
  };
  Object.setPrototypeOf(fn, new.target.prototype);
  // Function objects have read-only `name` and `length`; modules may want those names for their own fields.
  delete (fn as { name?: string }).name;
  delete (fn as { length?: number }).length;
  return fn;
} as unknown as new () => object;

const INTERNAL = new Set(["training", "_buffers", "_nonPersistent"]);

export interface Module {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  (...args: any[]): any;
}

export abstract class Module extends CallableBase {
  training = true;
  _buffers = new Set<string>();
  _nonPersistent = new Set<string>();

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  abstract forward(...args: any[]): any;

  /** Runs forward; intermediate tensors that are neither returned nor needed by backward are released after it. */
  __call__(...args: unknown[]): unknown {
    return withScope(() => this.forward(...args));
  }

  register_buffer(name: string, tensor: Tensor | null, persistentBuffer = true): void {
    if (tensor) persistent(tensor);
    (this as unknown as Record<string, unknown>)[name] = tensor;
    this._buffers.add(name);
    if (!persistentBuffer) this._nonPersistent.add(name);
  }

  register_parameter(name: string, param: Parameter | null): void {
    (this as unknown as Record<string, unknown>)[name] = param;
  }

  /** The attributes that may hold submodules, parameters and buffers. Object.keys, as Object.entries' pairs cost
   * four times as much and zero_grad walks every module each step. */
  private ownEntries(): [string, unknown][] {
    const entries: [string, unknown][] = [];
    for (const k of Object.keys(this)) {
      if (!k.startsWith("_") && !INTERNAL.has(k)) entries.push([k, (this as unknown as Record<string, unknown>)[k]]);
    }
    return entries;
  }

  *named_children(): Generator<[string, Module]> {
    for (const [k, v] of this.ownEntries()) if (v instanceof Module) yield [k, v];
  }

  children(): Module[] {
    return [...this.named_children()].map(([, m]) => m);
  }

  *named_modules(prefix = ""): Generator<[string, Module]> {
    yield* this.moduleTree(prefix);
  }

  /**
   * This module and every module under it, depth first in registration order, with their dotted names: one
   * array, where nested generators would pass each module up through every level (zero_grad walks it every step).
   */
  private moduleTree(prefix: string): [string, Module][] {
    const tree: [string, Module][] = [];
    const visit = (name: string, m: Module): void => {
      tree.push([name, m]);
      for (const [k, v] of m.ownEntries()) if (v instanceof Module) visit(name ? `${name}.${k}` : k, v);
    };
    visit(prefix, this);
    return tree;
  }

  modules(): Module[] {
    return [...this.named_modules()].map(([, m]) => m);
  }

  /** Parameters in registration order; a parameter shared by two modules (tied weights) is listed once. */
  *named_parameters(prefix = "", recurse = true): Generator<[string, Parameter]> {
    const seen = new Set<Tensor>();
    const modules: [string, Module][] = recurse ? this.moduleTree(prefix) : [[prefix, this]];
    for (const [modPrefix, mod] of modules) {
      for (const [k, v] of mod.ownEntries()) {
        if (v instanceof Parameter && !seen.has(v)) {
          seen.add(v);
          yield [modPrefix ? `${modPrefix}.${k}` : k, v];
        }
      }
    }
  }

  parameters(recurse = true): Parameter[] {
    return [...this.named_parameters("", recurse)].map(([, p]) => p);
  }

  *named_buffers(prefix = ""): Generator<[string, Tensor]> {
    for (const [modPrefix, mod] of this.named_modules(prefix)) {
      for (const name of mod._buffers) {
        const v = (mod as unknown as Record<string, unknown>)[name];
        if (v instanceof Tensor) yield [modPrefix ? `${modPrefix}.${name}` : name, v];
      }
    }
  }

  buffers(): Tensor[] {
    return [...this.named_buffers()].map(([, b]) => b);
  }

  get_submodule(target: string): Module {
    let mod: Module = this;
    for (const part of target ? target.split(".") : []) {
      const next = (mod as unknown as Record<string, unknown>)[part];
      if (!(next instanceof Module)) throw new Error(`${mod.constructor.name} has no attribute \`${part}\``);
      mod = next;
    }
    return mod;
  }

  /** Every parameter and persistent buffer by its dotted name; tied parameters appear under each name. */
  state_dict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [prefix, mod] of this.named_modules()) {
      for (const [k, v] of mod.ownEntries()) {
        const isBuffer = mod._buffers.has(k);
        if ((v instanceof Parameter || (isBuffer && v instanceof Tensor)) && !mod._nonPersistent.has(k)) {
          out[prefix ? `${prefix}.${k}` : k] = v as Tensor;
        }
      }
    }
    return out;
  }

  load_state_dict(stateDict: Record<string, Tensor>, strict = true): LoadResult {
    const own = this.state_dict();
    const missing = Object.keys(own).filter((k) => !(k in stateDict));
    const unexpected = Object.keys(stateDict).filter((k) => !(k in own));
    const errors: string[] = [];
    for (const [k, target] of Object.entries(own)) {
      const src = stateDict[k];
      if (!src) continue;
      if (!sameShape(src.shape, target.shape)) {
        errors.push(`size mismatch for ${k}: copying a param with shape ${formatShape(src.shape)} from checkpoint, the shape in current model is ${formatShape(target.shape)}.`);
      }
    }
    if (strict) {
      if (unexpected.length) errors.unshift(`Unexpected key(s) in state_dict: ${unexpected.map((k) => `"${k}"`).join(", ")}. `);
      if (missing.length) errors.unshift(`Missing key(s) in state_dict: ${missing.map((k) => `"${k}"`).join(", ")}. `);
    }
    if (errors.length) {
      throw new Error(`Error(s) in loading state_dict for ${this.constructor.name}:\n\t${errors.join("\n\t")}`);
    }
    no_grad(() => {
      for (const [k, target] of Object.entries(own)) {
        const src = stateDict[k];
        if (src && src !== target) target.copy_(src);
      }
    });
    return { missing_keys: missing, unexpected_keys: unexpected };
  }

  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  requires_grad_(requires_grad = true): this {
    for (const p of this.parameters()) p.requires_grad_(requires_grad);
    return this;
  }

  zero_grad(set_to_none = true): void {
    for (const p of this.parameters()) {
      if (!p.grad) continue;
      if (set_to_none) {
        p.grad.dispose();
        p.grad = null;
      } else {
        no_grad(() => p.grad!.zero_());
      }
    }
  }

  apply(fn: (m: Module) => void): this {
    for (const m of this.children()) m.apply(fn);
    fn(this);
    return this;
  }

  /** Moves or casts parameters and buffers (float ones only for a dtype), keeping ties between modules. */
  to(target: Device | string | DType | { device?: Device | string; dtype?: DType | string }): this {
    let device: Device | undefined;
    let dtype: DType | undefined;
    if (target instanceof Device) device = target;
    else if (target instanceof DType) dtype = target;
    else if (typeof target === "string") {
      if (/^(cpu|cuda)(:\d+)?$/.test(target)) device = toDevice(target);
      else dtype = toDType(target);
    } else {
      device = target.device === undefined ? undefined : toDevice(target.device);
      dtype = target.dtype === undefined ? undefined : toDType(target.dtype);
    }
    const replaced = new Map<Tensor, Tensor>();
    const convert = (t: Tensor): Tensor => {
      const cast = dtype && t.dtype.is_floating_point ? dtype : undefined;
      return no_grad(() => t.to({ device, dtype: cast }));
    };
    for (const mod of this.modules()) {
      for (const [k, v] of mod.ownEntries()) {
        const isBuffer = mod._buffers.has(k);
        if (!(v instanceof Parameter) && !(isBuffer && v instanceof Tensor)) continue;
        const old = v as Tensor;
        let next = replaced.get(old);
        if (!next) {
          const moved = convert(old);
          if (moved === old) continue;
          next = old instanceof Parameter ? new Parameter(moved, old.requires_grad) : persistent(moved);
          if (next !== moved) moved.dispose();
          replaced.set(old, next);
        }
        (mod as unknown as Record<string, unknown>)[k] = next;
      }
    }
    for (const old of replaced.keys()) old.dispose();
    return this;
  }

  float(): this {
    return this.to("float32");
  }

  half(): this {
    return this.to("float16");
  }

  bfloat16(): this {
    return this.to("bfloat16");
  }

  cpu(): this {
    return this.to("cpu");
  }

  cuda(): this {
    return this.to("cuda");
  }

  extra_repr(): string {
    return "";
  }

  override toString(): string {
    const lines: string[] = [];
    for (const [k, m] of this.named_children()) {
      lines.push(`(${k}): ${m.toString().split("\n").join("\n  ")}`);
    }
    const extra = this.extra_repr();
    if (lines.length === 0) return `${this.constructor.name}(${extra})`;
    const head = extra ? [extra, ...lines] : lines;
    return `${this.constructor.name}(\n  ${head.join("\n  ")}\n)`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}
