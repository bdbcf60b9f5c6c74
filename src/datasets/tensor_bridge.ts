// The one place where data code (datasets formatting, tokenizer outputs) makes engine tensors.
// The engine's entry module is loaded by name at start-up so this part builds on its own while the
// engine is written; once src/torch.ts is in, a static `import { torch } from "../torch.js"` replaces this.
export interface EngineTensor {
  readonly shape: readonly number[];
  tolist(): unknown;
}

type Nested = number | boolean | Nested[];
type Data = Nested | BigInt64Array | Int32Array | Float32Array | Float64Array | Uint8Array;

interface Torch {
  tensor(data: Data, options?: { dtype?: unknown }): EngineTensor;
  int64: unknown;
  float32: unknown;
  bool: unknown;
}

const engine_module = "../torch.js";
const torch: Torch | undefined = await import(engine_module).then((m) => m.torch as Torch, () => undefined);

export type TensorDType = "int64" | "float32" | "bool";

export function to_tensor(data: Data, dtype: TensorDType): EngineTensor {
  if (!torch) throw new Error("return_tensors='pt' / set_format('torch') need the tensor engine (src/torch.ts), which is not built");
  return torch.tensor(data, { dtype: torch[dtype] });
}

export function is_tensor(value: unknown): value is EngineTensor {
  return typeof value === "object" && value !== null && "shape" in value && typeof (value as EngineTensor).tolist === "function";
}
