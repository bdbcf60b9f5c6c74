// finetune's side of bench/gpu-mrpc.sh (transformers' side: bench/gpu_mrpc.py), one command per process so that
// each variant has its own time limit and its own peak-memory figure:
//   prepare DIR           random-initialised bert-base-sized classifier (DIR/model, a Hugging Face folder both
//                         sides load) and the epoch's batch order (DIR/order.json, both sides read it)
//   train DIR fp32|tf32|bf16   the Trainer on that model and order; the last line printed is the variant's JSON
//   report DIR NAME=RC... the table of every variant and, as the very last line, one JSON object with all figures
// FINETUNE_BENCH_SMALL=1 makes `prepare` write a 2-layer hidden-128 model and a 16-step order, so the plumbing
// can be checked on a CPU.
import { SHARED_HUB } from "../test/helpers/paths.js";
import fs from "node:fs";
import path from "node:path";
import { AutoTokenizer, load_dataset, type DatasetDict } from "../src/data_api.js";
import { AutoConfig, AutoModelForSequenceClassification, BertForSequenceClassification } from "../src/models/index.js";
import { Trainer, TrainerCallback, TrainingArguments } from "../src/training_api.js";
import { SequentialSampler } from "../src/data/samplers.js";
import { DataCollatorWithPadding } from "../src/data/data_collator.js";
import { Generator, manual_seed, permutation } from "../src/ops/random.js";
import { torch } from "../src/torch.js";
import { native } from "../src/backend/native.js";
import { sideStreamChoices } from "../src/ops/side_stream_choice.js";
import { attentionHeadChoices } from "../src/ops/attention.js";
import { timedChoiceStats, type TimedChoice } from "../src/ops/timed_choice.js";
import { startHub } from "../test/helpers/hub-server.js";
import type { CudaGraphStep } from "../src/training/cuda_graph_step.js";
import { Event } from "../src/backend/cuda_streams.js";

const SEED = 42;
const BATCH = 8;
const BERT_BASE = path.join(SHARED_HUB, "models/google-bert/bert-base-uncased");
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt"];
const VARIANTS = ["hf_fp32", "hf_bf16", "ft_fp32", "ft_tf32", "ft_bf16"] as const;

/** The epoch both sides train: train rows in this order, then eval on the first `validation_rows` rows. */
interface Order {
  seed: number;
  train: number[];
  validation_rows: number;
}

/** What one variant prints as its last line (bench/gpu_mrpc.py prints the same keys). */
interface VariantResult {
  samples_per_s: number;
  epoch_s: number;
  first_step_s: number;
  /** of which loading kernel modules and building GEMM plans, and how many of each (finetune on CUDA only) */
  first_step_parts?: CudaCounters | null;
  eval_s: number;
  peak_mem_gb: number;
  train_loss: number;
  last_logged_loss: number | null;
  eval_loss: number;
  steps: number;
  /** host wall time per step over the second half of the epoch (the loss is read every 50 steps, which waits for the GPU) */
  steady_ms_per_step: number;
  /**
   * host time from each step's start to its end (collating, copying the batch in, queuing the update) over the same
   * steps (finetune only): near steady_ms_per_step where each step waits for the GPU, far below where the host
   * queues steps ahead of it
   */
  steady_step_host_ms?: number;
  /** batch shapes the Trainer captured in CUDA graphs (finetune only) */
  cuda_graphs?: number;
  /** host seconds of the steps that captured a graph, from the previous step's end (finetune only) */
  capture_s?: number;
  /**
   * of which inside the captures (and of that: ending them, building GEMM plans, inside cuBLASLt's matmuls), and in
   * their first replays; the GEMM plans of the captures that queried cuBLASLt's heuristic, and the segments the
   * captures allocated (finetune only)
   */
  capture_host_s?: number;
  capture_end_s?: number;
  capture_gemm_plan_s?: number;
  capture_gemm_matmul_s?: number;
  /** whether kernels launched with programmatic dependent launch (finetune only) */
  programmatic_launch?: boolean;
  /** the attention's whole-head kernels' setting, and per pass, head dim, dtype and size class whether they were taken,
   * with each way's timed milliseconds a run (finetune only: ops/attention.ts) */
  attention_heads?: string;
  attention_head_choices?: Record<string, TimedChoice>;
  /** the side stream's setting, and per linear layer shape and token class whether its GEMMs ran side by side, with
   * each way's timed milliseconds a pair (finetune only: ops/side_stream_choice.ts) */
  side_stream?: string;
  side_stream_choices?: Record<string, TimedChoice>;
  /** host seconds the epoch spent timing those choices, in the steps that ran eagerly (finetune only) */
  choice_s?: number;
  /** MB of cuBLASLt workspace the streams held at the end (finetune on CUDA only; FINETUNE_CUDA_GEMM_TUNE_WORKSPACE
   * lets GEMM tuning take split-K algorithms that need some) */
  gemm_workspace_mb?: number;
  /**
   * The GPU's side of the steps, from CUDA events recorded as each step begins and ends on the host (finetune on
   * CUDA only): a step's interval runs from the GPU reaching its begin event to reaching its end event, so it is
   * the step's GPU time where the host had queued the step by then, and more where the GPU waited for the host
   * within the step (a capture, the first step). `gpu_step_ms`: the median interval over the epoch's second half
   * (the steady step's GPU time); `gpu_capture_steps_s`: the intervals of the steps that captured a graph, summed;
   * `gpu_between_steps_s`: the time from each step's end to the next one's begin, summed (the GPU waiting for the
   * host between steps, after the logging steps' waits); `gpu_span_s`: the first step's begin to the last's end.
   */
  gpu_step_ms?: number;
  gpu_capture_steps_s?: number;
  gpu_between_steps_s?: number;
  gpu_span_s?: number;
  capture_first_replay_s?: number;
  capture_gemm_heuristics?: number;
  capture_segments?: number;
  train_tokens: number;
  device: string;
}

const round = (x: number, digits: number) => Number(x.toFixed(digits));

async function prepare(dir: string): Promise<void> {
  const small = process.env.FINETUNE_BENCH_SMALL === "1";
  const config = await AutoConfig.from_pretrained(BERT_BASE, {
    num_labels: 2,
    ...(small ? { num_hidden_layers: 2, hidden_size: 128, num_attention_heads: 2, intermediate_size: 512 } : {}),
  });
  manual_seed(SEED);
  const model_dir = path.join(dir, "model");
  AutoModelForSequenceClassification.from_config(config).save_pretrained(model_dir);
  for (const f of TOKENIZER_FILES) fs.copyFileSync(path.join(BERT_BASE, f), path.join(model_dir, f));
  const hub = await startHub();
  const raw = (await load_dataset("glue", "mrpc")) as DatasetDict;
  await hub.close();
  const train = permutation(raw["train"]!.num_rows, new Generator().manual_seed(SEED));
  const order: Order = {
    seed: SEED,
    train: small ? train.slice(0, 16 * BATCH) : train,
    validation_rows: small ? 8 * BATCH : raw["validation"]!.num_rows,
  };
  fs.writeFileSync(path.join(dir, "order.json"), JSON.stringify(order));
  console.log(`prepared ${model_dir} (${config.num_hidden_layers} layers, hidden ${config.hidden_size}), ${order.train.length} train rows in order`);
}

/** train_dataset is already in order.json's order: it is read front to back. */
class OrderedTrainer extends Trainer {
  override _get_train_sampler(train_dataset = this.train_dataset) {
    return new SequentialSampler(train_dataset as { num_rows: number });
  }
}

/** Host seconds loading kernel modules, building GEMM plans and inside cublasLtMatmul (which loads each of its
 * kernels at first use), how many modules and heuristic queries, the GEMM algorithms read from the disk cache and
 * the families whose algorithm was timed among cuBLASLt's choices; the choices between two ways of running some work
 * timed on the GPU (the side stream's, the attention's: ops/timed_choice.ts) and the host seconds their trials took. */
type CudaCounters = {
  module_load_s: number; modules_loaded: number; gemm_plan_s: number; gemm_matmul_s: number; gemm_heuristics: number; gemm_disk_algos: number;
  gemm_autotuned: number; choices_timed: number; choice_s: number;
};

const NO_COUNTS: CudaCounters = {
  module_load_s: 0, modules_loaded: 0, gemm_plan_s: 0, gemm_matmul_s: 0, gemm_heuristics: 0, gemm_disk_algos: 0, gemm_autotuned: 0,
  choices_timed: 0, choice_s: 0,
};

/** The process's CUDA counters so far (zeros without CUDA): the first step's parts are their growth. */
function cudaCounters(): CudaCounters {
  if (!torch.cuda.is_available()) return NO_COUNTS;
  const kernels = native.cuda.kernelStats();
  const gemm = native.cuda.gemmStats();
  return { module_load_s: kernels.module_load_s, modules_loaded: kernels.modules_loaded, gemm_plan_s: gemm.plan_s,
    gemm_matmul_s: gemm.matmul_s, gemm_heuristics: gemm.heuristic_queries, gemm_disk_algos: gemm.disk_algos,
    gemm_autotuned: gemm.autotuned, ...timedChoiceStats() };
}

/**
 * Time to the end of the first step (kernel compilation, allocator warm-up), the only step that synchronises, and
 * the host time at the end of every step.
 */
class StepTimer extends TrainerCallback {
  start = 0;
  first_step_s: number | null = null;
  readonly step_ends: number[] = [];
  readonly step_host_ms: number[] = [];
  #step_begin = 0;
  cuda_graphs = 0;
  capture_s = 0;
  /** the graph step's own figures at the last step end (the Trainer drops the step when training ends) */
  capture_stats = { host_s: 0, end_s: 0, gemm_plan_s: 0, gemm_matmul_s: 0, gemm_heuristics: 0, first_replay_s: 0, segments: 0 };
  constructor(private readonly graphStep: () => CudaGraphStep | null) {
    super();
  }
  /** what the first step spent loading kernel modules and building GEMM plans (finetune on CUDA only) */
  first_step_parts: CudaCounters | null = null;
  #before = NO_COUNTS;
  /** per step, events recorded as it begins and ends, and whether it captured a graph (CUDA only) */
  readonly #gpu: { begin: Event; end: Event; captured: boolean }[] = [];
  override on_train_begin(): void {
    this.#before = cudaCounters();
    this.start = performance.now();
  }
  override on_step_begin(): void {
    this.#step_begin = performance.now();
    if (torch.cuda.is_available()) {
      const begin = new Event({ enable_timing: true });
      begin.record();
      this.#gpu.push({ begin, end: new Event({ enable_timing: true }), captured: false });
    }
  }
  override on_step_end(): void {
    if (this.first_step_s === null) {
      if (torch.cuda.is_available()) torch.cuda.synchronize();
      this.first_step_s = (performance.now() - this.start) / 1000;
      const after = cudaCounters();
      const b = this.#before;
      if (torch.cuda.is_available()) {
        this.first_step_parts = {
          module_load_s: round(after.module_load_s - b.module_load_s, 3), modules_loaded: after.modules_loaded - b.modules_loaded,
          gemm_plan_s: round(after.gemm_plan_s - b.gemm_plan_s, 3),
          gemm_matmul_s: round(after.gemm_matmul_s - b.gemm_matmul_s, 3), gemm_heuristics: after.gemm_heuristics - b.gemm_heuristics,
          gemm_disk_algos: after.gemm_disk_algos - b.gemm_disk_algos, gemm_autotuned: after.gemm_autotuned - b.gemm_autotuned,
          choices_timed: after.choices_timed - b.choices_timed, choice_s: round(after.choice_s - b.choice_s, 3),
        };
      }
    }
    const now = performance.now();
    this.step_host_ms.push(now - this.#step_begin);
    const step = this.graphStep();
    const graphs = step?.graph_count ?? 0;
    if (step) this.capture_stats = { ...step.capture_stats };
    const captured = graphs > this.cuda_graphs;
    if (captured) this.capture_s += (now - (this.step_ends[this.step_ends.length - 1] ?? this.start)) / 1000;
    const gpu = this.#gpu[this.#gpu.length - 1];
    if (gpu) {
      gpu.end.record();
      gpu.captured = captured;
    }
    this.step_ends.push(now);
    this.cuda_graphs = graphs;
  }
  steady_ms_per_step(): number {
    const t = this.step_ends;
    const half = Math.floor(t.length / 2);
    return t.length > 1 ? (t[t.length - 1]! - t[half]!) / (t.length - 1 - half) : 0;
  }
  /** The GPU's side of the steps (VariantResult's gpu_* figures), waiting for the GPU; null without CUDA. */
  gpu_timeline(): Required<Pick<VariantResult, "gpu_step_ms" | "gpu_capture_steps_s" | "gpu_between_steps_s" | "gpu_span_s">> | null {
    const steps = this.#gpu;
    if (steps.length === 0) return null;
    steps[steps.length - 1]!.end.synchronize();
    const intervals = steps.map((s) => s.begin.elapsed_time(s.end));
    const steady = intervals.slice(Math.floor(intervals.length / 2)).sort((a, b) => a - b);
    let between = 0;
    for (let i = 1; i < steps.length; i++) between += steps[i - 1]!.end.elapsed_time(steps[i]!.begin);
    return {
      gpu_step_ms: round(steady[Math.floor(steady.length / 2)]!, 3),
      gpu_capture_steps_s: round(intervals.filter((_, i) => steps[i]!.captured).reduce((a, b) => a + b, 0) / 1000, 3),
      gpu_between_steps_s: round(between / 1000, 3),
      gpu_span_s: round(steps[0]!.begin.elapsed_time(steps[steps.length - 1]!.end) / 1000, 3),
    };
  }

  /** The mean host time inside the steps that steady_ms_per_step spans. */
  steady_step_host_ms(): number {
    const steady = this.step_host_ms.slice(Math.floor(this.step_host_ms.length / 2) + 1);
    return steady.length > 0 ? steady.reduce((a, b) => a + b, 0) / steady.length : 0;
  }
}

async function train(dir: string, precision: string): Promise<void> {
  const flags: Record<string, { tf32?: boolean; bf16?: boolean }> = { fp32: { tf32: false }, tf32: { tf32: true }, bf16: { bf16: true } };
  if (!flags[precision]) throw new Error(`precision ${precision}: use fp32, tf32 or bf16`);
  const order = JSON.parse(fs.readFileSync(path.join(dir, "order.json"), "utf8")) as Order;
  const model_dir = path.join(dir, "model");
  const tokenizer = await AutoTokenizer.from_pretrained(model_dir);
  const hub = await startHub();
  const raw = (await load_dataset("glue", "mrpc")) as DatasetDict;
  const tokenize = (b: Record<string, string[]>) => tokenizer(b["sentence1"]!, b["sentence2"]!, { truncation: true });
  const train_rows = raw["train"]!.select(order.train).map(tokenize, { batched: true, keep_in_memory: true });
  const validation = raw["validation"]!.select(Array.from({ length: order.validation_rows }, (_, i) => i)).map(tokenize, { batched: true, keep_in_memory: true });
  await hub.close();
  const train_tokens = (train_rows.column("input_ids") as number[][]).reduce((n, ids) => n + ids.length, 0);

  const model = await BertForSequenceClassification.from_pretrained(model_dir);
  const output_dir = path.join(dir, `ft_${precision}-output`);
  const args = new TrainingArguments(output_dir, {
    per_device_train_batch_size: BATCH, per_device_eval_batch_size: BATCH, num_train_epochs: 1, learning_rate: 2e-5, seed: SEED,
    logging_steps: 50, save_strategy: "no", report_to: "none", disable_tqdm: true, ...flags[precision],
  });
  // The Trainer keeps its graph step private; the benchmark reports how many shapes it captured and what that cost
  const graphStep = () => (trainer as unknown as { _graph_step: CudaGraphStep | null })._graph_step;
  const timer: StepTimer = new StepTimer(graphStep);
  // Padding to a multiple of 8 bounds the batch shapes, so that the Trainer's CUDA graphs (one per shape) are
  // captured a few times and replayed for the rest of the epoch; the padding is masked out, the losses unchanged.
  const data_collator = new DataCollatorWithPadding({ tokenizer, pad_to_multiple_of: 8 });
  const trainer: OrderedTrainer = new OrderedTrainer(model, args, { train_dataset: train_rows, eval_dataset: validation, tokenizer, data_collator, callbacks: [timer] });
  const result = await trainer.train();
  const choice_s = timedChoiceStats().choice_s;
  const timeline = timer.gpu_timeline();
  const metrics = await trainer.evaluate();
  fs.rmSync(output_dir, { recursive: true, force: true });
  const logged = trainer.state.log_history.filter((h) => "loss" in h);
  const epoch_s = result.metrics["train_runtime"]!;
  const out: VariantResult = {
    samples_per_s: round(order.train.length / epoch_s, 1),
    epoch_s: round(epoch_s, 3),
    first_step_s: round(timer.first_step_s!, 3),
    first_step_parts: timer.first_step_parts,
    eval_s: round(metrics["eval_runtime"]!, 3),
    peak_mem_gb: round(torch.cuda.max_memory_allocated() / 1e9, 3),
    train_loss: result.training_loss,
    last_logged_loss: logged.length ? (logged[logged.length - 1]!["loss"] as number) : null,
    eval_loss: metrics["eval_loss"]!,
    steps: result.global_step,
    steady_ms_per_step: round(timer.steady_ms_per_step(), 3),
    steady_step_host_ms: round(timer.steady_step_host_ms(), 3),
    cuda_graphs: timer.cuda_graphs,
    capture_s: round(timer.capture_s, 3),
    capture_host_s: round(timer.capture_stats.host_s, 3),
    capture_end_s: round(timer.capture_stats.end_s, 3),
    capture_gemm_plan_s: round(timer.capture_stats.gemm_plan_s, 3),
    capture_gemm_matmul_s: round(timer.capture_stats.gemm_matmul_s, 3),
    capture_first_replay_s: round(timer.capture_stats.first_replay_s, 3),
    capture_gemm_heuristics: timer.capture_stats.gemm_heuristics,
    capture_segments: timer.capture_stats.segments,
    programmatic_launch: torch.cuda.is_available() && native.cuda.programmaticLaunch(),
    attention_heads: torch.cuda.is_available() ? native.cuda.attentionHeads() : "off",
    attention_head_choices: Object.fromEntries(attentionHeadChoices()),
    side_stream: torch.cuda.is_available() ? native.cuda.sideStreamGemms() : "off",
    side_stream_choices: Object.fromEntries(sideStreamChoices()),
    choice_s: round(choice_s, 3),
    gemm_workspace_mb: torch.cuda.is_available() ? round(native.cuda.gemmStats().workspace_bytes / 1e6, 3) : 0,
    ...timeline,
    train_tokens,
    device: torch.cuda.is_available() ? torch.cuda.get_device_name(0) : "cpu",
  };
  console.log(JSON.stringify(out));
}

type Outcome = { ok: true; result: VariantResult } | { ok: false; rc: number; error: string };
const COLUMNS = ["samples_per_s", "epoch_s", "first_step_s", "steady_ms_per_step", "eval_s", "peak_mem_gb", "train_loss", "last_logged_loss", "eval_loss"] as const;

/**
 * Reads each variant's last printed line; a variant that printed no JSON there failed (its exit status says how,
 * and its log's last line naming an error says why: Node.js ends a crash with its version, not the error).
 */
function report(dir: string, statuses: string[]): void {
  const rcs = new Map(statuses.map((s) => s.split("=") as [string, string]));
  // the table's variants first, then the script's others (settings timed against ft_bf16)
  const names = [...VARIANTS, ...[...rcs.keys()].filter((n) => !(VARIANTS as readonly string[]).includes(n))];
  const outcomes = new Map<string, Outcome>();
  for (const name of names) {
    const log = path.join(dir, `${name}.txt`);
    const lines = fs.existsSync(log) ? fs.readFileSync(log, "utf8").trimEnd().split("\n") : [""];
    const last = lines[lines.length - 1]!;
    const rc = Number(rcs.get(name) ?? -1);
    const error = rc === 124 ? "timed out" : ([...lines].reverse().find((l) => /error/i.test(l)) ?? last).trim().slice(0, 300);
    let outcome: Outcome = { ok: false, rc, error };
    if (rc === 0) {
      try {
        outcome = { ok: true, result: JSON.parse(last) as VariantResult };
      } catch {
        // a variant that exits 0 without its JSON line stays failed
      }
    }
    outcomes.set(name, outcome);
  }
  const ok = (name: string) => {
    const o = outcomes.get(name)!;
    return o.ok ? o.result : null;
  };

  const width = Math.max(...names.map((n) => n.length));
  console.log(["variant".padEnd(width), ...COLUMNS.map((c) => c.padStart(16))].join(" "));
  for (const [name, o] of outcomes) {
    const cells = o.ok ? COLUMNS.map((c) => String(o.result[c] === null ? "-" : round(o.result[c]!, 4)).padStart(16)) : [`failed (rc ${o.rc}): ${o.error}`];
    console.log([name.padEnd(width), ...cells].join(" "));
  }
  const tokens = new Set(names.map((n) => ok(n)?.train_tokens).filter((t) => t !== undefined));
  if (tokens.size > 1) console.log(`WARNING: the variants tokenised differently (train tokens ${[...tokens].join(" vs ")}): the comparison is not like for like`);
  const hf_fp32 = ok("hf_fp32");
  const ft_bf16 = ok("ft_bf16");
  const per = (key: keyof VariantResult) => Object.fromEntries(names.map((n) => [n, ok(n)?.[key] ?? null]));
  console.log(JSON.stringify({
    gpu: names.map((n) => ok(n)?.device).find((d) => d !== undefined) ?? null,
    samples_per_s: per("samples_per_s"),
    speedup_vs_hf_fp32: hf_fp32 && ft_bf16 ? round(ft_bf16.samples_per_s / hf_fp32.samples_per_s, 2) : null,
    epoch_s: per("epoch_s"),
    first_step_s: per("first_step_s"),
    first_step_parts: per("first_step_parts"),
    steady_ms_per_step: per("steady_ms_per_step"),
    steady_step_host_ms: per("steady_step_host_ms"),
    eval_s: per("eval_s"),
    peak_mem_gb: per("peak_mem_gb"),
    train_loss: per("train_loss"),
    last_logged_loss: per("last_logged_loss"),
    eval_loss: per("eval_loss"),
    train_tokens: per("train_tokens"),
    capture_s: per("capture_s"),
    capture_host_s: per("capture_host_s"),
    capture_end_s: per("capture_end_s"),
    capture_gemm_plan_s: per("capture_gemm_plan_s"),
    capture_gemm_matmul_s: per("capture_gemm_matmul_s"),
    capture_gemm_heuristics: per("capture_gemm_heuristics"),
    capture_segments: per("capture_segments"),
    programmatic_launch: per("programmatic_launch"),
    attention_heads: per("attention_heads"),
    attention_head_choices: per("attention_head_choices"),
    side_stream: per("side_stream"),
    side_stream_choices: per("side_stream_choices"),
    choice_s: per("choice_s"),
    gemm_workspace_mb: per("gemm_workspace_mb"),
    gpu_step_ms: per("gpu_step_ms"),
    gpu_capture_steps_s: per("gpu_capture_steps_s"),
    gpu_between_steps_s: per("gpu_between_steps_s"),
    gpu_span_s: per("gpu_span_s"),
    failed: Object.fromEntries([...outcomes].flatMap(([n, o]) => (o.ok ? [] : [[n, `rc ${o.rc}: ${o.error}`]]))),
  }));
}

const [command, dir, ...rest] = process.argv.slice(2);
if (!dir) throw new Error("usage: node dist/bench/gpu_mrpc.js prepare DIR | train DIR fp32|tf32|bf16 | report DIR NAME=RC...");
if (command === "prepare") await prepare(dir);
else if (command === "train") await train(dir, rest[0] ?? "");
else if (command === "report") report(dir, rest);
else throw new Error(`unknown command ${command}: prepare, train or report`);
