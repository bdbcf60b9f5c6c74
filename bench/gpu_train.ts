// GPU training timing for bench/gpu-check.sh: the Trainer on MRPC train with a bert-base-sized random-initialised
// classifier, batch 8, fp32 (tf32 off), 100 optimizer steps on CUDA. The first step (kernel compilation, cuBLASLt
// heuristics, allocator warm-up) is left out. Prints one JSON line; bench/gpu_baseline.py measures transformers
// the same way.
import { SHARED_HUB } from "../test/helpers/paths.js";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AutoTokenizer, load_dataset, type DatasetDict } from "../src/data_api.js";
import { BertConfig, BertForSequenceClassification } from "../src/models/index.js";
import { Trainer, TrainerCallback, TrainingArguments } from "../src/training_api.js";
import { torch } from "../src/torch.js";
import { startHub } from "../test/helpers/hub-server.js";

const STEPS = 100;
if (!torch.cuda.is_available()) throw new Error("bench/gpu_train needs CUDA: torch.cuda.is_available() is false");
const hub = await startHub();
const tokenizer = await AutoTokenizer.from_pretrained("bert-base-uncased");
const raw = (await load_dataset("glue", "mrpc")) as DatasetDict;
const train = raw["train"]!.map((b) => tokenizer(b["sentence1"], b["sentence2"], { truncation: true }), { batched: true, keep_in_memory: true });
const config = JSON.parse(fs.readFileSync(path.join(SHARED_HUB, "models/google-bert/bert-base-uncased/config.json"), "utf8"));

class StepTimer extends TrainerCallback {
  steps = 0;
  first = 0;
  last = 0;
  override on_step_end(): void {
    torch.cuda.synchronize();
    this.steps += 1;
    this.last = performance.now();
    if (this.steps === 1) this.first = this.last;
  }
}

torch.backends.cuda.matmul.allow_tf32 = false;
const model = new BertForSequenceClassification(new BertConfig({ ...config, num_labels: 2 }));
const timer = new StepTimer();
const output_dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-gpu-train-"));
const args = new TrainingArguments(output_dir, {
  per_device_train_batch_size: 8, max_steps: STEPS + 1, save_strategy: "no", logging_steps: 50, disable_tqdm: true, report_to: ["none"],
});
const trainer = new Trainer(model, args, { train_dataset: train, tokenizer, callbacks: [timer] });
const result = await trainer.train();
fs.rmSync(output_dir, { recursive: true, force: true });
await hub.close();
const seconds = (timer.last - timer.first) / 1000;
console.log(JSON.stringify({
  framework: "finetune",
  device: torch.cuda.get_device_name(0),
  steps: STEPS,
  ms_per_step: Number(((seconds * 1000) / STEPS).toFixed(2)),
  samples_per_s: Number(((STEPS * 8) / seconds).toFixed(1)),
  train_loss: result.training_loss,
  peak_mem_gb: Number((torch.cuda.max_memory_allocated() / 1e9).toFixed(3)),
}));
