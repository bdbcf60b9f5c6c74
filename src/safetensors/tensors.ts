// safetensors <-> engine tensors: load a file as named tensors, save named tensors.
import { Tensor } from "../tensor/tensor.js";
import { toHostBytes } from "../ops/convert.js";
import { fromSafetensorsName } from "../tensor/dtype.js";
import { readSafetensors, type SafetensorsFile } from "./read.js";
import { writeSafetensors, type NamedTensor } from "./write.js";
import type { Dtype } from "./format.js";

/** One tensor of an open file, copied into engine memory on the CPU (Module.to moves it). */
export function tensorFromFile(st: SafetensorsFile, name: string): Tensor {
  const info = st.info(name);
  const dtype = fromSafetensorsName(info.dtype);
  if (!dtype) throw new Error(`${st.label}: tensor "${name}" has dtype ${info.dtype}, which finetune cannot load (supported: F32, F16, BF16, I64, I32, BOOL)`);
  const t = Tensor.empty(info.shape, dtype);
  new Uint8Array(t.buffer, 0, info.byteLength).set(st.bytes(name));
  return t;
}

/** torch-free `safetensors.torch.load_file`: every tensor of the file, copied into engine memory. */
export function load_file(file: string): Record<string, Tensor> {
  const st = readSafetensors(file);
  try {
    const out: Record<string, Tensor> = {};
    for (const name of st.keys()) out[name] = tensorFromFile(st, name);
    return out;
  } finally {
    st.close();
  }
}

/** `safetensors.torch.save_file`; tensors shared under several names are written once (the first name). */
export function save_file(tensors: Record<string, Tensor>, file: string, metadata: Record<string, string> = { format: "pt" }): void {
  const seen = new Set<Tensor>();
  const entries: NamedTensor[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (seen.has(t)) continue;
    seen.add(t);
    entries.push({ name, dtype: t.dtype.safetensors as Dtype, shape: [...t.shape], data: toHostBytes(t) });
  }
  writeSafetensors(file, entries, metadata);
}
