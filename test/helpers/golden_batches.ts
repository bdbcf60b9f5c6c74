// The tiny BERT golden run's batches (golden/tiny-bert-seqcls/batch<i>.safetensors), on a device.
import path from "node:path";
import { load_file } from "../../src/safetensors/tensors.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { TINY_BERT_SEQCLS } from "./paths.js";

export function goldenBatch(i: number, device = "cpu"): Record<string, Tensor> {
  const b = load_file(path.join(TINY_BERT_SEQCLS, `batch${i}.safetensors`));
  return Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v.to(device)]));
}
