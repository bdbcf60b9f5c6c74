// Training benchmark: the Trainer on MRPC train (batch 8) on the CPU, with a bert-base-sized (float32, then with
// bf16: true) and an L4/H256 random-initialised model. A full bert-base epoch takes about an hour on a small CPU,
// so each model runs a fixed number of steps and the epoch time is extrapolated from them. Timers around the phases split each
// step into forward+backward, clipping+optimizer, and the rest (data reading, collation, logging, callbacks).
// Where a python3 with torch is found, PyTorch trains a copy of each model on the same batches with the Trainer's
// optimizer, clipping and schedule (bench/torch_baseline.ts): after the first step and then after every
// TORCH_WINDOW steps of the Trainer, PyTorch takes the same steps, off the Trainer's clock. The last line printed is
// one JSON object with the figures.
import { SHARED_HUB } from "../test/helpers/paths.js";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AutoTokenizer, load_dataset, type DatasetDict } from "../src/data_api.js";
import { BertConfig, BertForSequenceClassification } from "../src/models/index.js";
import { Trainer, TrainerCallback, TrainingArguments } from "../src/training_api.js";
import type { Batch } from "../src/data/data_collator.js";
import type { TrainableModel } from "../src/training/trainer.js";
import { startHub } from "../test/helpers/hub-server.js";
import { torch } from "../src/torch.js";
import { batchLists, figure, findTorchPython, NO_TORCH, TorchBaseline, type BatchLists } from "./torch_baseline.js";

const TORCH_WINDOW = 10;

const hub = await startHub();
const shared_models = path.join(SHARED_HUB, "models/google-bert/bert-base-uncased");
const tokenizer = await AutoTokenizer.from_pretrained("bert-base-uncased");
const raw = (await load_dataset("glue", "mrpc")) as DatasetDict;
const train = raw["train"]!.map((b) => tokenizer(b["sentence1"], b["sentence2"], { truncation: true }), { batched: true, keep_in_memory: true });
const base_config = JSON.parse(fs.readFileSync(path.join(shared_models, "config.json"), "utf8")) as Record<string, unknown>;

/** Splits each optimizer step's wall time into compute (forward, backward, clip, step) and everything else. */
class PhaseTimer extends TrainerCallback {
  compute_ms = 0;
  first_step_end = 0;
  last_step_end = 0;
  steps = 0;
  after_backward = 0;
  /** PyTorch's steps and recording their batches, taken off the wall time, and PyTorch's own time. */
  torch_wall_ms = 0;
  torch_ms = 0;
  override on_optimizer_step(): void {
    // The first step warms caches and allocations up: it is left out of the figures
    if (this.steps > 0) this.compute_ms += performance.now() - this.after_backward;
  }
  override on_step_end(): void {
    this.steps += 1;
    this.last_step_end = performance.now();
    if (this.steps === 1) this.first_step_end = this.last_step_end;
  }
}

class TimedTrainer extends Trainer {
  constructor(model: TrainableModel, args: TrainingArguments, readonly timer: PhaseTimer, readonly reference: TorchBaseline | undefined) {
    super(model, args, { train_dataset: train, tokenizer, callbacks: [timer] });
  }
  private readonly pending: BatchLists[] = [];

  override training_step(model: TrainableModel, inputs: Batch, accumulation_steps = 1): number {
    if (this.reference !== undefined) {
      const called = performance.now();
      if (this.timer.steps === 1 || this.pending.length === TORCH_WINDOW) this.runTorch();
      this.pending.push(batchLists(inputs));
      if (this.timer.steps > 0) this.timer.torch_wall_ms += performance.now() - called;
    }
    const start = performance.now();
    const loss = super.training_step(model, inputs, accumulation_steps);
    this.timer.after_backward = performance.now();
    if (this.timer.steps > 0) this.timer.compute_ms += this.timer.after_backward - start;
    return loss;
  }

  /** PyTorch's steps on the batches since the last call; the first step's, as the Trainer's, is not counted. */
  runTorch(): void {
    if (this.pending.length === 0) return;
    const ms = this.reference!.steps(this.pending.splice(0));
    if (this.timer.steps > 1) this.timer.torch_ms += ms;
  }
}

const python = findTorchPython();

async function bench(label: string, config: Record<string, unknown>, steps: number, bf16 = false) {
  const model = new BertForSequenceClassification(new BertConfig({ ...config, num_labels: 2 }));
  const timer = new PhaseTimer();
  const output_dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-bench-train-"));
  const args = new TrainingArguments(output_dir, {
    per_device_train_batch_size: 8, num_train_epochs: 1, max_steps: steps + 1, save_strategy: "no", logging_steps: 10, disable_tqdm: true, bf16,
  });
  const reference = python === undefined ? undefined : new TorchBaseline(python, model, {
    lr: args.learning_rate, weight_decay: args.weight_decay, max_grad_norm: args.max_grad_norm,
    linear_schedule_steps: args.lr_scheduler_type === "linear" ? args.max_steps : null, bf16,
  }, torch.get_num_threads());
  const trainer = new TimedTrainer(model, args, timer, reference);
  trainer.remove_callback(trainer.callback_handler.callbacks.find((cb) => cb.constructor.name === "PrinterCallback")!);
  await trainer.train();
  trainer.runTorch();
  fs.rmSync(output_dir, { recursive: true, force: true });
  const wall_ms = timer.last_step_end - timer.first_step_end - timer.torch_wall_ms;
  const compute_ms = timer.compute_ms;
  const samples_per_s = (steps * 8) / (wall_ms / 1000);
  const epoch_s = train.num_rows / samples_per_s;
  const overhead_share = Math.max(0, 1 - compute_ms / wall_ms);
  console.log(
    `${label}: ${steps} steps of 8 in ${(wall_ms / 1000).toFixed(1)} s -> ${samples_per_s.toFixed(2)} samples/s; ` +
      `one MRPC epoch (${train.num_rows} rows) extrapolated: ${(epoch_s / 60).toFixed(1)} min; ` +
      `outside forward/backward/step: ${(overhead_share * 100).toFixed(1)}%`,
  );
  const torch_samples_per_s = reference === undefined ? NaN : (steps * 8) / (timer.torch_ms / 1000);
  console.log(reference === undefined ? `  ${NO_TORCH}` : `  ${reference.describe()}, the same batches in windows of ${TORCH_WINDOW}: ` +
    `${torch_samples_per_s.toFixed(2)} samples/s; finetune ${(samples_per_s / torch_samples_per_s).toFixed(2)}x`);
  reference?.close();
  return { samples_per_s, epoch_s, overhead_share, torch_samples_per_s };
}

const l4h256 = await bench("L4/H256", { ...base_config, num_hidden_layers: 4, hidden_size: 256, num_attention_heads: 4, intermediate_size: 1024 }, 100);
const bert_base = await bench("bert-base", base_config, 20);
const bert_base_bf16 = await bench("bert-base bf16", base_config, 20, true);
await hub.close();
console.log(JSON.stringify({
  bert_base_samples_per_s: Number(bert_base.samples_per_s.toFixed(3)),
  bert_base_torch_samples_per_s: figure(bert_base.torch_samples_per_s, 3),
  bert_base_vs_torch: figure(bert_base.samples_per_s / bert_base.torch_samples_per_s, 3),
  bert_base_bf16_samples_per_s: Number(bert_base_bf16.samples_per_s.toFixed(3)),
  bert_base_bf16_torch_samples_per_s: figure(bert_base_bf16.torch_samples_per_s, 3),
  bert_base_bf16_vs_torch: figure(bert_base_bf16.samples_per_s / bert_base_bf16.torch_samples_per_s, 3),
  l4h256_samples_per_s: Number(l4h256.samples_per_s.toFixed(3)),
  l4h256_torch_samples_per_s: figure(l4h256.torch_samples_per_s, 3),
  l4h256_vs_torch: figure(l4h256.samples_per_s / l4h256.torch_samples_per_s, 3),
  overhead_share: Number(((bert_base.overhead_share + l4h256.overhead_share) / 2).toFixed(4)),
}));
