// The layers BERT-family models are built from, with PyTorch's constructors and initialisation.
import { Tensor } from "../tensor/tensor.js";
import { empty, ones, zeros } from "../tensor/creation.js";
import { toDType, type DType } from "../tensor/dtype.js";
import * as F from "../ops/functional.js";
import { gelu, relu, tanh } from "../ops/elementwise.js";
import { linear } from "../ops/matmul.js";
import { Module } from "./module.js";
import { Parameter } from "./parameter.js";
import * as init from "./init.js";
import { floatRepr } from "../util/pyformat.js";

interface DTypeOption {
  dtype?: DType | string;
}

export class Linear extends Module {
  weight: Parameter;
  bias: Parameter | null;

  constructor(readonly in_features: number, readonly out_features: number, options: { bias?: boolean } & DTypeOption = {}) {
    super();
    const dtype = toDType(options.dtype ?? "float32");
    this.weight = new Parameter(empty([out_features, in_features], { dtype }));
    this.bias = options.bias ?? true ? new Parameter(empty([out_features], { dtype })) : null;
    this.reset_parameters();
  }

  reset_parameters(): void {
    init.kaiming_uniform_(this.weight, Math.sqrt(5));
    if (this.bias) {
      const bound = this.in_features > 0 ? 1 / Math.sqrt(this.in_features) : 0;
      init.uniform_(this.bias, -bound, bound);
    }
  }

  forward(input: Tensor): Tensor {
    return linear(input, this.weight, this.bias);
  }

  override extra_repr(): string {
    return `in_features=${this.in_features}, out_features=${this.out_features}, bias=${this.bias ? "True" : "False"}`;
  }
}

export class Embedding extends Module {
  weight: Parameter;
  readonly padding_idx: number | null;

  constructor(readonly num_embeddings: number, readonly embedding_dim: number, options: { padding_idx?: number | null } & DTypeOption = {}) {
    super();
    const pad = options.padding_idx ?? null;
    if (pad !== null && (pad >= num_embeddings || pad < -num_embeddings)) {
      throw new RangeError("Padding_idx must be within num_embeddings");
    }
    this.padding_idx = pad === null ? null : pad < 0 ? pad + num_embeddings : pad;
    this.weight = new Parameter(empty([num_embeddings, embedding_dim], { dtype: toDType(options.dtype ?? "float32") }));
    this.reset_parameters();
  }

  reset_parameters(): void {
    init.normal_(this.weight);
    if (this.padding_idx !== null) init.zeros_(this.weight.select(0, this.padding_idx));
  }

  forward(input: Tensor): Tensor {
    return F.embedding(input, this.weight, this.padding_idx);
  }

  override extra_repr(): string {
    return `${this.num_embeddings}, ${this.embedding_dim}${this.padding_idx !== null ? `, padding_idx=${this.padding_idx}` : ""}`;
  }
}

export class LayerNorm extends Module {
  weight: Parameter | null;
  bias: Parameter | null;
  readonly normalized_shape: number[];

  constructor(normalized_shape: number | number[], readonly eps = 1e-5, options: { elementwise_affine?: boolean; bias?: boolean } & DTypeOption = {}) {
    super();
    this.normalized_shape = typeof normalized_shape === "number" ? [normalized_shape] : [...normalized_shape];
    const dtype = toDType(options.dtype ?? "float32");
    const affine = options.elementwise_affine ?? true;
    this.weight = affine ? new Parameter(ones(this.normalized_shape, { dtype })) : null;
    this.bias = affine && (options.bias ?? true) ? new Parameter(zeros(this.normalized_shape, { dtype })) : null;
  }

  forward(input: Tensor): Tensor {
    return F.layer_norm(input, this.normalized_shape, this.weight, this.bias, this.eps);
  }

  override extra_repr(): string {
    return `(${this.normalized_shape.join(", ")},), eps=${floatRepr(this.eps)}, elementwise_affine=${this.weight ? "True" : "False"}`;
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`dropout probability has to be between 0 and 1, but got ${p}`);
  }

  forward(input: Tensor): Tensor {
    return F.dropout(input, this.p, this.training);
  }

  override extra_repr(): string {
    return `p=${floatRepr(this.p)}, inplace=False`;
  }
}

export class Tanh extends Module {
  forward(input: Tensor): Tensor {
    return tanh(input);
  }
}

export class ReLU extends Module {
  forward(input: Tensor): Tensor {
    return relu(input);
  }
}

export class GELU extends Module {
  constructor(readonly approximate: "none" | "tanh" = "none") {
    super();
  }

  forward(input: Tensor): Tensor {
    return gelu(input, this.approximate);
  }

  override extra_repr(): string {
    return `approximate='${this.approximate}'`;
  }
}

export class Identity extends Module {
  forward(input: Tensor): Tensor {
    return input;
  }
}

/** Holds submodules under the names "0", "1", ... */
export class ModuleList extends Module {
  constructor(modules: Module[] = []) {
    super();
    modules.forEach((m, i) => this.append(m, i));
  }

  private append(m: Module, i: number): void {
    (this as unknown as Record<string, Module>)[String(i)] = m;
  }

  override get length(): number {
    return this.children().length;
  }

  at(i: number): Module {
    return this.children().at(i)!;
  }

  [Symbol.iterator](): Iterator<Module> {
    return this.children()[Symbol.iterator]();
  }

  forward(..._args: unknown[]): unknown {
    throw new Error("ModuleList is not callable: iterate over it");
  }
}

/** torch.nn.Sequential(*modules): the modules given as arguments, applied in order. */
export class Sequential extends ModuleList {
  constructor(...modules: Module[]) {
    super(modules);
  }

  override forward(input: unknown): unknown {
    let x = input;
    for (const m of this) x = m(x);
    return x;
  }
}
