// Where a bert-base training step's time goes on the GPU (bench/gpu-check.sh runs it after the MRPC benchmark;
// bench/gpu_profile.py measures the same parts in PyTorch): batch 8 x 64 tokens, each part timed on its own
// between synchronisations, in fp32 and bf16 autocast, then the whole update eager and replayed from a CUDA graph
// (as FINETUNE_CUDA_PDL says, then with a warp to each layer norm row instead of a team where rows are few, with the
// attention as kernels for blocks of rows instead of one a head, with the GELU kernels' lookups all in global memory,
// with the side stream's GEMMs and with programmatic dependent launch switched the other way where the GPU has it),
// and some kernels of a bf16 step (the attention and the GELU kernels both ways), the clipping and AdamW timed back
// to back inside a CUDA graph (`kernel_us`:
// Nsight Compute's figures for them, taken one launch at a time from cold caches, leave their cost inside the
// update's graph unknown).
// The last line printed is one JSON object: milliseconds per part and precision, microseconds per kernel call. FINETUNE_BENCH_SMALL=1: a 2-layer
// hidden-128 model, to check the plumbing on the emulated toolkit (test/helpers/fake_cuda).
import { torch } from "../src/torch.js";
import { native, DTypeCode } from "../src/backend/native.js";
import { Tensor } from "../src/tensor/tensor.js";
import { clip_grad_norm_, clip_grad_norm_deferred } from "../src/nn/utils.js";
import { no_grad } from "../src/autograd/grad_mode.js";
import * as F from "../src/nn/functional.js";
import { AdamW } from "../src/optim/index.js";
import { BertConfig, BertForSequenceClassification } from "../src/models/index.js";
import { SHARED_HUB } from "../test/helpers/paths.js";
import path from "node:path";
import { sideStreamChoices } from "../src/ops/side_stream_choice.js";
import { deferSideJoins } from "../src/backend/side_stream.js";
import { attentionHeadChoices } from "../src/ops/attention.js";

const BATCH = 8;
const TOKENS = 64;
const ITERS = 20;

/** Mean milliseconds of `fn` over ITERS calls after 3 warm-up calls, the GPU drained before and after. */
function time(fn: () => void): number {
  for (let i = 0; i < 3; i++) fn();
  torch.cuda.synchronize();
  const start = performance.now();
  for (let i = 0; i < ITERS; i++) fn();
  torch.cuda.synchronize();
  return Number(((performance.now() - start) / ITERS).toFixed(3));
}

/** Microseconds per call of `fn`, from CUDA events around replays of a graph of GRAPH_CALLS calls: the kernels'
 * time back to back, without the host's launches, as inside the Trainer's graphs. */
function graphMicros(fn: () => void): number {
  const GRAPH_CALLS = 50, REPLAYS = 5;
  const graph = new torch.cuda.CUDAGraph();
  torch.cuda.graph(graph, () => {
    for (let i = 0; i < GRAPH_CALLS; i++) fn();
  });
  graph.replay();
  const start = new torch.cuda.Event({ enable_timing: true });
  const end = new torch.cuda.Event({ enable_timing: true });
  start.record();
  for (let i = 0; i < REPLAYS; i++) graph.replay();
  end.record();
  end.synchronize();
  graph.reset();
  return Number(((start.elapsed_time(end) * 1000) / (GRAPH_CALLS * REPLAYS)).toFixed(2));
}

/** The update's kernels under study (bf16 autocast, batch x tokens rows), each alone, in graphMicros. */
function kernelMicros(hidden: number, intermediate: number): Record<string, number> {
  const rows = BATCH * TOKENS;
  const c = native.cuda;
  const floats = (n: number) => c.alloc(4 * n);
  const g = floats(rows * intermediate), lowp = c.alloc(2 * rows * intermediate);
  // the GELU kernels' lookups scatter as a layer's pre-activations do, not as uninitialised memory's bits would
  const preActivation = torch.randn([rows, intermediate], { device: "cuda" }).to(torch.bfloat16), pre = preActivation.buffer;
  const sums = floats(intermediate);
  const x = floats(rows * hidden), residual = floats(rows * hidden), input = floats(rows * hidden), y = floats(rows * hidden);
  const dy = floats(rows * hidden), dx = floats(rows * hidden), dxDropout = floats(rows * hidden);
  const mask = c.alloc(rows * hidden), yLowp = c.alloc(2 * rows * hidden);
  const w = floats(hidden), b = floats(hidden), dw = floats(hidden), db = floats(hidden), mean = floats(rows), rstd = floats(rows);
  const columnSums = (cols: number, gelu: boolean) => () =>
    c.castColumnSums(rows, cols, g, 0, gelu ? pre : null, 0, DTypeCode.BF16, DTypeCode.BF16, lowp, sums);
  const geluLowp = () => c.geluLowp(rows * intermediate, pre, 0, DTypeCode.BF16, lowp, 0);
  const r: Record<string, number> = {
    [`cast_column_sums_${hidden}`]: graphMicros(columnSums(hidden, false)),
    [`cast_column_sums_${intermediate}_gelu`]: graphMicros(columnSums(intermediate, true)),
    [`gelu_lowp_${intermediate}`]: graphMicros(geluLowp),
    // what moving the same bytes costs: a copy of the float32 [rows, hidden] gradient
    [`copy_${hidden}`]: graphMicros(() => c.copyDeviceToDevice(x, 0, y, 0, 4 * rows * hidden)),
  };
  // the GELU kernels with every lookup in the table in global memory (native.cuda.hotTables)
  const hotTables = c.hotTables();
  c.hotTables(false);
  r[`cast_column_sums_${intermediate}_gelu_global`] = graphMicros(columnSums(intermediate, true));
  r[`gelu_lowp_${intermediate}_global`] = graphMicros(geluLowp);
  c.hotTables(hotTables);
  // the layer norms as the update runs them (a team of warps a row, at these rows) and with a warp a row
  const teams = c.rowTeams();
  for (const [suffix, on] of [["", true], ["_warp", false]] as const) {
    c.rowTeams(on);
    r[`layer_norm_${hidden}${suffix}`] = graphMicros(() =>
      c.layerNormForward(rows, hidden, x, 0, w, 0, b, 0, 1e-12, y, 0, mean, rstd, DTypeCode.BF16, yLowp));
    r[`dropout_add_layer_norm_${hidden}${suffix}`] = graphMicros(() =>
      c.dropoutAddLayerNorm(rows, hidden, 0, 0, 0.1, x, 0, residual, 0, input, mask, w, 0, b, 0, 1e-12, y, 0, mean,
        rstd, DTypeCode.BF16, yLowp));
    r[`layer_norm_backward_dropout_${hidden}${suffix}`] = graphMicros(() =>
      c.layerNormBackward(rows, hidden, input, 0, dy, 0, w, 0, mean, rstd, dx, 0, dw, db, mask, 1 / 0.9, dxDropout,
        DTypeCode.BF16, yLowp, sums));
  }
  c.rowTeams(teams);
  // BERT's attention under autocast (heads [B, H, S, 64], its padding mask and dropout), forward and backward: one
  // kernel a head each, then the kernels for blocks of rows (native.cuda.attentionHeads)
  const heads = hidden / 64;
  const qkv = [0, 1, 2].map(() => torch.randn([BATCH, heads, TOKENS, 64], { device: "cuda" }).to(torch.bfloat16).requires_grad_(true));
  const padding = torch.zeros([BATCH, 1, 1, TOKENS], { device: "cuda" });
  const upstream = torch.randn([BATCH, heads, TOKENS, 64], { device: "cuda" });
  const attention = () => {
    const out = torch.autocast("cuda", { dtype: torch.bfloat16 }, () =>
      F.scaled_dot_product_attention(qkv[0]!, qkv[1]!, qkv[2]!, { attn_mask: padding, dropout_p: 0.1 }));
    out.backward(upstream);
    for (const x of qkv) x.grad = null;
  };
  const wholeHeads = c.attentionHeads();
  for (const [suffix, mode] of [["", "on"], ["_split", "off"]] as const) {
    c.attentionHeads(mode);
    r[`attention_forward_backward${suffix}`] = graphMicros(attention);
  }
  c.attentionHeads(wholeHeads);
  preActivation.dispose();
  for (const buffer of [g, lowp, sums, x, residual, input, y, dy, dx, dxDropout, mask, yLowp, w, b, dw, db, mean, rstd]) {
    c.free(buffer);
  }
  return r;
}

function dispose(outputs: object): void {
  for (const v of Object.values(outputs)) if (v instanceof Tensor) v.dispose();
}

const small = process.env.FINETUNE_BENCH_SMALL === "1";
const config = await BertConfig.from_pretrained(path.join(SHARED_HUB, "models/google-bert/bert-base-uncased"), {
  num_labels: 2,
  ...(small ? { num_hidden_layers: 2, hidden_size: 128, num_attention_heads: 2, intermediate_size: 512 } : {}),
});
torch.manual_seed(0);
const model = new BertForSequenceClassification(config);
model.to("cuda");
model.train();
const optimizer = new AdamW(model.parameters(), { lr: 2e-5, weight_decay: 0.0 });
const batch: Record<string, Tensor> = {
  input_ids: torch.randint(0, config.vocab_size, [BATCH, TOKENS]).to("cuda"),
  token_type_ids: torch.zeros([BATCH, TOKENS], { dtype: torch.int64 }).to("cuda"),
  attention_mask: torch.ones([BATCH, TOKENS], { dtype: torch.int64 }).to("cuda"),
  labels: torch.randint(0, 2, [BATCH]).to("cuda"),
};

// `once bf16|fp32|tf32`: two eager updates as the Trainer makes them on a GPU (the clipping applied by AdamW as it
// reads the gradients) and nothing else, for a kernel profiler (bench/gpu-ncu.sh; bench/ncu_summary.py reports the
// second, the steady state: the first also creates the optimizer's state), and to fill the disk caches of kernels
// and GEMM algorithms before timed runs (bench/gpu-mrpc.sh)
if (process.argv[2] === "once") {
  const bf16 = process.argv[3] === "bf16";
  torch.backends.cuda.matmul.allow_tf32 = process.argv[3] === "tf32";
  const run = <T>(fn: () => T): T => (bf16 ? torch.autocast("cuda", { dtype: torch.bfloat16 }, fn) : fn());
  const norm = torch.zeros([], { device: "cuda" });
  const coef = torch.zeros([], { device: "cuda" });
  for (let step = 0; step < 2; step++) {
    const out = run(() => model(batch));
    out.loss!.backward();
    dispose(out);
    clip_grad_norm_deferred(model.parameters(), 1.0, norm, coef);
    optimizer.step_clipped(coef);
    model.zero_grad();
  }
  torch.cuda.synchronize();
  // for bench/gpu-mrpc.sh's log: how the GEMM families were tuned (per rank in cuBLASLt's list, the fastest found there)
  console.log(JSON.stringify({ gemm: native.cuda.gemmStats(), kernels: native.cuda.kernelStats() }));
  process.exit(0);
}

const results: Record<string, Record<string, number>> = {};
for (const precision of ["fp32", "bf16"] as const) {
  const run = <T>(fn: () => T): T => (precision === "bf16" ? torch.autocast("cuda", { dtype: torch.bfloat16 }, fn) : fn());
  const forwardBackward = () => {
    const out = run(() => model(batch));
    out.loss!.backward();
    dispose(out);
  };
  const update = () => {
    forwardBackward();
    clip_grad_norm_(model.parameters(), 1.0).dispose();
    optimizer.step();
    model.zero_grad();
  };
  const r: Record<string, number> = {};
  r["forward_no_grad"] = time(() => no_grad(() => dispose(run(() => model(batch)))));
  r["forward_backward"] = time(() => {
    forwardBackward();
    model.zero_grad();
  });
  forwardBackward();
  r["clip_grad_norm"] = time(() => clip_grad_norm_(model.parameters(), 1.0).dispose());
  r["adamw_step"] = time(() => optimizer.step());
  model.zero_grad();
  r["update_eager"] = time(update);
  /** The update captured in a graph (as kernels launch now), timed replaying. */
  const replayed = (): number => {
    const graph = new torch.cuda.CUDAGraph();
    torch.cuda.graph(graph, update);
    const ms = time(() => {
      optimizer.prepare_replay();
      graph.replay();
    });
    graph.reset();
    return ms;
  };
  r["update_graph_replay"] = replayed();
  // the same graph with a warp to each layer norm row (native.cuda.rowTeams), and with every linear layer's weight
  // gradient GEMM on the side stream and none there (FINETUNE_CUDA_SIDE_STREAM; by default as timed per shape)
  const teams = native.cuda.rowTeams();
  native.cuda.rowTeams(false);
  r["update_graph_replay_warp_rows"] = replayed();
  native.cuda.rowTeams(teams);
  // with the attention as the kernels for blocks of rows (native.cuda.attentionHeads)
  const wholeHeads = native.cuda.attentionHeads();
  native.cuda.attentionHeads("off");
  r["update_graph_replay_split_attention"] = replayed();
  native.cuda.attentionHeads(wholeHeads);
  // with the GELU kernels' lookups all in global memory (native.cuda.hotTables; bf16 only has them)
  if (precision === "bf16") {
    const hotTables = native.cuda.hotTables();
    native.cuda.hotTables(false);
    r["update_graph_replay_global_tables"] = replayed();
    native.cuda.hotTables(hotTables);
  }
  const side = native.cuda.sideStreamGemms();
  for (const mode of ["on", "off"] as const) {
    if (mode === side) continue;
    native.cuda.sideStreamGemms(mode);
    r[`update_graph_replay_side_stream_${mode}`] = replayed();
  }
  // every weight gradient's GEMM on the side stream, joined right after its pair (backend/side_stream.ts) instead
  // of at the next fork
  native.cuda.sideStreamGemms("on");
  const deferring = deferSideJoins();
  deferSideJoins(!deferring);
  r[`update_graph_replay_side_stream_on_${deferring ? "joined_now" : "joins_deferred"}`] = replayed();
  deferSideJoins(deferring);
  native.cuda.sideStreamGemms(side);
  // the same graph with programmatic dependent launch (FINETUNE_CUDA_PDL) the other way, where the GPU has it
  const pdl = native.cuda.programmaticLaunch();
  if (native.cuda.programmaticLaunch(!pdl) !== pdl) {
    r[pdl ? "update_graph_replay_without_pdl" : "update_graph_replay_with_pdl"] = replayed();
    native.cuda.programmaticLaunch(pdl);
  }
  results[precision] = r;
  console.log(precision, JSON.stringify(r));
}
const peak_mem_gb = Number((torch.cuda.max_memory_allocated() / 1e9).toFixed(3));
const kernel_us = kernelMicros(config.hidden_size, config.intermediate_size);
// The update's tail on a bf16 step's gradients, as the Trainer's graphs run it: the clipping's norm and factor, and
// AdamW applying the factor and writing the weights' 16-bit copies
const tailOutputs = torch.autocast("cuda", { dtype: torch.bfloat16 }, () => model(batch));
tailOutputs.loss!.backward();
dispose(tailOutputs);
const norm = torch.zeros([], { device: "cuda" });
const coef = torch.zeros([], { device: "cuda" });
kernel_us["clip_grad_norm_deferred"] = graphMicros(() => clip_grad_norm_deferred(model.parameters(), 1.0, norm, coef));
kernel_us["adamw_step_clipped"] = graphMicros(() => optimizer.step_clipped(coef));
model.zero_grad();
console.log("kernels", JSON.stringify(kernel_us));
console.log(JSON.stringify({ batch: BATCH, tokens: TOKENS, ms: results, kernel_us, peak_mem_gb,
  programmatic_launch: native.cuda.programmaticLaunch(), attention_heads: native.cuda.attentionHeads(),
  attention_head_choices: Object.fromEntries(attentionHeadChoices()), side_stream: native.cuda.sideStreamGemms(),
  side_stream_choices: Object.fromEntries(sideStreamChoices()) }));
