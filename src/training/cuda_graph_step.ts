// The Trainer's optimizer step in CUDA graphs (finetune-specific; FINETUNE_CUDA_GRAPHS=0 turns it off). On a GPU
// an eager BERT-base step launches about a thousand kernels, each costing the host ~3.7 µs: more than the GPU
// needs to run them at small batch sizes. So the whole update — forward, backward, clipping, AdamW and
// zero_grad — is captured once per batch shape (the collator's padding to a multiple of 8 bounds their number)
// and replayed: copy the batch into the graph's static inputs, write the learning rate and step count the
// captured AdamW reads, one launch. Nothing waits for the GPU: the loss is summed on the device and read when
// the Trainer logs, and bad ids or labels surface then as a RangeError.
//
// The first update runs eagerly: it compiles every kernel and creates the optimizer's state, which captures read,
// and under autocast the weights' 16-bit copies (amp/autocast_weight.ts), which captured forwards read and
// captured AdamW steps rewrite: a copy made during a capture would live in the graph's memory.
// From then on each new batch shape is captured at its first batch and the capture replayed at once (a capture
// runs nothing and costs the host about what an eager update does), so no batch pays for an eager warm-up. A batch
// with fewer rows than the training batch size (an epoch's last, with dataloader_drop_last false) runs eagerly: it
// comes at most once an epoch, mostly with a length of its own, where a capture would add instantiating and
// uploading a graph (~15 ms on an H100) to an update it would not replay; nor does it time the GPU choices of its
// sizes (ops/timed_choice.ts' withoutTiming) for work it runs once. The graphs share one memory pool: an update
// leaves nothing alive in it (gradients, activations and the loss are freed by its end; the optimizer's state and
// the weights' copies predate the captures) and replays never overlap, so the pool holds the largest shape's
// activations, not their sum, until dispose(). Unlike the eager loop, a non-finite loss is reported when the loss is
// read (at logging), after the updates of the steps since then have been applied.
import { Tensor } from "../tensor/tensor.js";
import { float32 } from "../tensor/dtype.js";
import type { Device } from "../tensor/device.js";
import { CUDAGraph, cuda, type GraphPoolHandle } from "../backend/cuda.js";
import { native } from "../backend/native.js";
import { clip_grad_norm_deferred } from "../nn/utils.js";
import { no_grad } from "../autograd/grad_mode.js";
import { withoutTiming } from "../ops/timed_choice.js";
import type { Module } from "../nn/module.js";
import type { Optimizer } from "../optim/optimizer.js";
import type { Batch } from "../data/data_collator.js";

/**
 * An optimizer whose step can be replayed (it writes its per-step scalars before each replay) and that applies
 * gradient clipping as it reads the gradients: AdamW on CUDA.
 */
export type ReplayableOptimizer = Optimizer & { prepare_replay(): void; step_clipped(clip_coef: Tensor): void };

interface Captured {
  graph: CUDAGraph;
  inputs: Batch;  // the static tensors the graph reads the batch from
}

/** Whether the Trainer should step through CUDA graphs: CUDA, one batch per update, an optimizer that can replay. */
export function useCudaGraphs(device: Device, gradient_accumulation_steps: number, optimizer: Optimizer): optimizer is ReplayableOptimizer {
  const setting = process.env["FINETUNE_CUDA_GRAPHS"];
  if (setting === "0" || setting === "false") return false;
  return device.type === "cuda" && gradient_accumulation_steps === 1 &&
    typeof (optimizer as Partial<ReplayableOptimizer>).prepare_replay === "function";
}

export class CudaGraphStep {
  readonly #graphs = new Map<string, Captured>();
  /** Whether an eager update has run (captures come after it). */
  #warm = false;
  /** Shapes whose capture failed: they run eagerly. */
  readonly #eager = new Set<string>();
  #pool: GraphPoolHandle | null = null;
  /** The losses since the last read, summed in float32 on the GPU as the eager loop sums them on the host. */
  readonly #loss: Tensor;
  /** The latest gradient norm, written by every update (eager or replayed) when clipping, and its clip factor. */
  readonly #norm: Tensor;
  readonly #clip: Tensor;
  #clipped = false;
  /**
   * Summed over the captures: host seconds inside them (recording the update, then ending the capture), of which
   * ending the capture (instantiating the graph), building GEMM plans for the new shape and inside cuBLASLt's
   * matmul calls; the plans that took a new algorithm from cuBLASLt's heuristic (the others reused one);
   * host seconds of their first replays (the graph's upload), and the segments they took from the driver.
   */
  readonly capture_stats = {
    host_s: 0, end_s: 0, gemm_plan_s: 0, gemm_matmul_s: 0, gemm_heuristics: 0, first_replay_s: 0, segments: 0,
  };

  constructor(
    private readonly model: Module,
    private readonly optimizer: ReplayableOptimizer,
    private readonly device: Device,
    private readonly max_grad_norm: number | null,
    /** forward and backward on device inputs, handing the loss to `addLoss` before disposing it */
    private readonly forwardBackward: (inputs: Batch, addLoss: (loss: Tensor) => void) => void,
    /** the training batch size: smaller batches run eagerly (null: every shape is captured) */
    private readonly batch_size: number | null = null,
  ) {
    this.#loss = persistentScalar(device);
    this.#norm = persistentScalar(device);
    this.#clip = persistentScalar(device);
  }

  /** One optimizer update on a host batch: a replay of its shape's graph, captured at the shape's first batch. */
  step(batch: Batch): void {
    const key = shapeKey(batch);
    const captured = this.#graphs.get(key);
    if (captured !== undefined) {
      for (const [k, v] of Object.entries(batch)) if (v instanceof Tensor) (captured.inputs[k] as Tensor).copy_(v);
      return this.#replay(captured);
    }
    const inputs = toDevice(batch, this.device);
    if (this.#warm && !this.#eager.has(key) && !this.#partial(batch)) {
      const graph = this.#capture(key, inputs);
      if (graph !== null) {
        // The capture keeps the inputs, which hold this batch, as the graph's static inputs
        const c = { graph, inputs };
        this.#graphs.set(key, c);
        const start = performance.now();
        this.#replay(c);
        this.capture_stats.first_replay_s += (performance.now() - start) / 1000;
        return;
      }
    }
    try {
      // a smaller batch comes once an epoch: timing a choice for its sizes would not pay
      if (this.#partial(batch)) withoutTiming(() => this.#update(inputs));
      else this.#update(inputs);
    } finally {
      disposeBatch(inputs);
    }
    this.#warm = true;
  }

  /** The update on `inputs` captured in a new graph, or null (with a warning) when the capture fails. */
  #capture(key: string, inputs: Batch): CUDAGraph | null {
    const graph = new CUDAGraph();
    const start = performance.now();
    const segments = cuda.memory_stats()["segment.all.allocated"]!;
    // (the launch code may turn programmatic launches off part-way, where the driver refuses one)
    const programmatic = cuda.is_available() && native.cuda.programmaticLaunch();
    let recorded = start;
    try {
      this.#pool ??= cuda.graph_pool_handle();
      const gemm = native.cuda.gemmStats();
      cuda.graph(graph, () => {
        this.#update(inputs);
        recorded = performance.now();
      }, { pool: this.#pool });
      const end = performance.now();
      const stats = this.capture_stats;
      const gemmAfter = native.cuda.gemmStats();
      stats.host_s += (end - start) / 1000;
      stats.end_s += (end - recorded) / 1000;
      stats.gemm_plan_s += gemmAfter.plan_s - gemm.plan_s;
      stats.gemm_matmul_s += gemmAfter.matmul_s - gemm.matmul_s;
      stats.gemm_heuristics += gemmAfter.heuristic_queries - gemm.heuristic_queries;
      stats.segments += cuda.memory_stats()["segment.all.allocated"]! - segments;
      return graph;
    } catch (e) {
      // Nothing captured ran, and gradients the capture made hold no values.
      this.model.zero_grad();
      if (programmatic) {
        // A driver that cannot capture programmatic launches (runtime.h) captures plain ones, from now on.
        native.cuda.programmaticLaunch(false);
        process.emitWarning(`CUDA graph capture failed with programmatic dependent launch, which is now off (as it is without FINETUNE_CUDA_PDL=1): ${(e as Error).message}`);
        return this.#capture(key, inputs);
      }
      this.#eager.add(key);
      process.emitWarning(`CUDA graph capture failed for the batch shape ${key}, which runs eagerly from now on: ${(e as Error).message}`);
      return null;
    }
  }

  /** Whether `batch` has fewer rows than the training batch size (its tensors' first dim). */
  #partial(batch: Batch): boolean {
    const rows = Object.values(batch).find((v): v is Tensor => v instanceof Tensor && v.ndim > 0)?.shape[0];
    return this.batch_size !== null && rows !== undefined && rows < this.batch_size;
  }

  /** How many batch shapes have a graph. */
  get graph_count(): number {
    return this.#graphs.size;
  }

  /** The summed loss since the last call (waits for the GPU) and the latest gradient norm; resets the sum. */
  drain(): { loss: number; grad_norm: number | null } {
    const loss = this.#loss.item();
    this.#loss.zero_();
    return { loss, grad_norm: this.#clipped ? this.#norm.item() : null };
  }

  /** Frees every graph and its memory (waits for the GPU). */
  dispose(): void {
    for (const c of this.#graphs.values()) {
      c.graph.reset();
      disposeBatch(c.inputs);
    }
    this.#graphs.clear();
    this.#loss.dispose();
    this.#norm.dispose();
    this.#clip.dispose();
  }

  /** The update a graph captures; the loss and the norm land in tensors that outlive it. */
  #update(inputs: Batch): void {
    this.forwardBackward(inputs, (loss) => {
      no_grad(() => this.#loss.add_(loss));
    });
    if (this.max_grad_norm !== null && this.max_grad_norm > 0) {
      // clip_grad_norm_ then step(), with the scaling done by the update as it reads the gradients
      clip_grad_norm_deferred(this.model.parameters(), this.max_grad_norm, this.#norm, this.#clip);
      this.#clipped = true;
      this.optimizer.step_clipped(this.#clip);
    } else {
      this.optimizer.step();
    }
    this.model.zero_grad();
  }

  #replay(c: Captured): void {
    this.optimizer.prepare_replay();
    c.graph.replay();
  }
}

function persistentScalar(device: Device): Tensor {
  const t = Tensor.empty([], float32, device, true);
  t._persistent = true;
  return t;
}

/** The batch's keys with their shapes and dtypes: batches with the same key can share a graph. */
function shapeKey(batch: Batch): string {
  return Object.entries(batch)
    .map(([k, v]) => (v instanceof Tensor ? `${k}:${v.dtype.name}[${v.shape.join(",")}]` : `${k}=${JSON.stringify(v)}`))
    .sort()
    .join(" ");
}

/** The batch's tensors on `device`, always copies: the caller disposes them. */
function toDevice(batch: Batch, device: Device): Batch {
  const out: Batch = {};
  for (const [k, v] of Object.entries(batch)) {
    if (!(v instanceof Tensor)) out[k] = v;
    else out[k] = v.device.equals(device) ? v.clone() : v.to(device);
  }
  return out;
}

function disposeBatch(inputs: Batch): void {
  for (const v of Object.values(inputs)) if (v instanceof Tensor) v.dispose();
}
