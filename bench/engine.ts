// `npm run bench:engine`: GEMM against OpenBLAS (bench/gemm.ts), then the training step (forward + backward +
// AdamW) of an L4/H256 and a bert-base-sized BERT classifier (float32, and bert-base under bfloat16 autocast) at
// batch 8 x sequence 67: ms per step, achieved GFLOP/s, resident memory, and PyTorch's step on the same weights and
// batch in the same thread count (bench/torch_step.py, where a python3 with torch is found). The last line is one
// JSON object with the figures.
import { SHARED_HUB } from "../test/helpers/paths.js";
import fs from "node:fs";
import path from "node:path";
import { benchGemm } from "./gemm.js";
import { torch } from "../src/torch.js";
import { BertConfig, BertForSequenceClassification } from "../src/models/index.js";
import { AdamW } from "../src/optim/index.js";
import { batchLists, figure, findTorchPython, NO_TORCH, TorchBaseline } from "./torch_baseline.js";

const BATCH = 8;
const SEQ = 67;
const WINDOWS = 3;
const BERT_BASE_CONFIG = path.join(SHARED_HUB, "models", "google-bert", "bert-base-uncased", "config.json");

/** Multiply-add FLOPs of one training step: matmuls forward, twice that backward. */
function stepFlops(c: BertConfig): number {
  const tokens = BATCH * SEQ;
  const H = c.hidden_size;
  const perLayer = 2 * tokens * (4 * H * H + 2 * H * c.intermediate_size) + 2 * 2 * BATCH * SEQ * SEQ * H;
  const forward = c.num_hidden_layers * perLayer + 2 * BATCH * (H * H + H * 2);
  return 3 * forward;
}

function rssMb(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

interface StepResult {
  ms: number;
  gflops: number;
  torch_ms: number;
}

/** finetune's step and PyTorch's, in alternating windows of `steps` steps after a first step each: the best window of
 * each side. With `bf16` both run the forward under bfloat16 autocast. */
function benchStep(label: string, config: BertConfig, steps: number, python: string | undefined, bf16 = false): StepResult {
  torch.manual_seed(0);
  const model = BertForSequenceClassification.from_config(config);
  const batch = {
    input_ids: torch.randint(0, config.vocab_size, [BATCH, SEQ]),
    attention_mask: torch.ones([BATCH, SEQ], { dtype: torch.int64 }),
    token_type_ids: torch.zeros([BATCH, SEQ], { dtype: torch.int64 }),
    labels: torch.randint(0, 2, [BATCH]),
  };
  const reference = python === undefined ? undefined : new TorchBaseline(python, model, {
    lr: 2e-5, weight_decay: 0.01, max_grad_norm: null, linear_schedule_steps: null, bf16,
  }, torch.get_num_threads());
  const lists = batchLists(batch);
  const torchEvalLoss = reference?.evalLoss(lists);
  model.eval();
  const evalLoss = torch.no_grad(() => {
    const out = model(batch);
    const loss = out.loss.item();
    out.loss.dispose();
    out.logits.dispose();
    return loss;
  });
  model.train();
  const optimizer = new AdamW(model.parameters(), { lr: 2e-5 });
  const step = () => {
    const out = bf16 ? torch.autocast("cpu", { dtype: torch.bfloat16 }, () => model(batch)) : model(batch);
    out.loss.backward();
    optimizer.step();
    optimizer.zero_grad();
    out.loss.dispose();
    out.logits.dispose();
  };
  step();
  reference?.steps([lists], 1);
  const rssBefore = rssMb();
  let ms = Infinity;
  let torchMs = Infinity;
  for (let window = 0; window < WINDOWS; window++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < steps; i++) step();
    ms = Math.min(ms, Number(process.hrtime.bigint() - start) / 1e6 / steps);
    if (reference !== undefined) torchMs = Math.min(torchMs, reference.steps([lists], steps) / steps);
  }
  const gflops = stepFlops(config) / (ms / 1000) / 1e9;
  const against = reference === undefined
    ? NO_TORCH
    : `${reference.describe()} ${torchMs.toFixed(1)} ms/step: ${(torchMs / ms).toFixed(2)}x; ` +
      `eval loss on the batch ${evalLoss.toFixed(6)} vs ${torchEvalLoss!.toFixed(6)}`;
  reference?.close();
  console.log(`${label}: ${ms.toFixed(1)} ms/step, ${gflops.toFixed(1)} GFLOP/s, RSS ${rssBefore.toFixed(0)} -> ${rssMb().toFixed(0)} MB over ${WINDOWS * steps} steps; ${against}`);
  return { ms, gflops, torch_ms: reference === undefined ? NaN : torchMs };
}

const gemm = await benchGemm();
const python = findTorchPython();
console.log(`\nTraining step (forward + backward + AdamW), batch ${BATCH} x seq ${SEQ}, ${torch.get_num_threads()} threads, the best of ${WINDOWS} windows, finetune's and PyTorch's in turn`);
const baseConfig = new BertConfig({ ...JSON.parse(fs.readFileSync(BERT_BASE_CONFIG, "utf8")), num_labels: 2 });
const l4 = benchStep("L4/H256  ", new BertConfig({ num_hidden_layers: 4, hidden_size: 256, num_attention_heads: 4, intermediate_size: 1024, num_labels: 2 }), 20, python);
const base = benchStep("bert-base", baseConfig, 6, python);
const baseBf16 = benchStep("bert-base bf16", baseConfig, 6, python, true);
const peakRss = process.resourceUsage().maxRSS / 1024;
console.log(`bert-base step at ${((100 * base.gflops) / gemm.gemm_peak_gflops).toFixed(0)}% of the measured GEMM peak; peak RSS ${peakRss.toFixed(0)} MB`);
console.log(JSON.stringify({
  gemm_peak_gflops: figure(gemm.gemm_peak_gflops),
  openblas_peak_gflops: figure(gemm.openblas_peak_gflops),
  gemm_vs_openblas: figure(gemm.gemm_vs_openblas, 3),
  bert_base_step_ms: figure(base.ms),
  bert_base_gflops: figure(base.gflops),
  bert_base_torch_step_ms: figure(base.torch_ms),
  bert_base_vs_torch: figure(base.torch_ms / base.ms, 3),
  bert_base_bf16_step_ms: figure(baseBf16.ms),
  bert_base_bf16_torch_step_ms: figure(baseBf16.torch_ms),
  bert_base_bf16_vs_torch: figure(baseBf16.torch_ms / baseBf16.ms, 3),
  l4h256_step_ms: figure(l4.ms),
  l4h256_torch_step_ms: figure(l4.torch_ms),
  l4h256_vs_torch: figure(l4.torch_ms / l4.ms, 3),
  peak_rss_mb: figure(peakRss),
}));
