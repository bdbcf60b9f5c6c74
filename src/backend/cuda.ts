// torch.cuda, answered from what the addon's CUDA loader found (cuda_info.ts). Memory statistics come from
// native.cuda's caching allocator; events and the stream are in cuda_streams.ts.
import { native } from "./native.js";
import { cudaInfo, cudaUnavailableReason, requireCuda, requireDevice, requireDeviceZero } from "./cuda_info.js";
import { Event, Stream, current_stream, default_stream, stream } from "./cuda_streams.js";
import { default_generator } from "../ops/random.js";
import type { Device } from "../tensor/device.js";

export { cudaInfo, cudaUnavailableReason };

/** torch.cuda.graph_pool_handle(): a memory pool that graphs captured with it share (they must replay in the
 * order they were captured, as in PyTorch). Opaque. */
export class GraphPoolHandle {
  /** @internal */
  constructor(readonly id: number) {}
}

/**
 * torch.cuda.CUDAGraph: work queued between capture_begin() and capture_end() is recorded instead of run, then
 * replay() runs all of it with one launch. As in PyTorch, a capture records fixed addresses: feed new inputs by
 * copying into the tensors the captured work reads, and read results from the tensors it wrote. Memory taken
 * during the capture comes from the graph's pool and stays reserved for the graph until reset(). What would wait
 * for the GPU (item(), tolist(), .cpu(), synchronize) throws during a capture, and so does an allocation the
 * cache cannot serve: run the work once before capturing it. Not freed by the garbage collector: call reset().
 * Random numbers (dropout) drawn from the default generator during the capture are drawn at each replay: the
 * capture leaves the generator where it began, and each replay moves it on by as many numbers as the capture
 * drew (PyTorch's philox offset), so replays match eager runs; the seed is the capture's. Other generators
 * must not be drawn from during a capture: their kernels would be moved by the default generator's offset.
 */
export class CUDAGraph {
  #id = 0;
  #capturing = false;
  /** The default generator's offset when the capture began, and how many numbers the capture drew. */
  #randomStart = 0;
  #randomCount = 0;

  capture_begin(pool?: GraphPoolHandle): void {
    requireCuda("CUDAGraph.capture_begin");
    if (this.#id !== 0) throw new Error("CUDAGraph.capture_begin: this graph already holds a capture: call reset() first");
    this.#id = native.cuda.graphCaptureBegin(pool?.id ?? 0);
    this.#capturing = true;
    this.#randomStart = default_generator.get_state().offset;
  }

  capture_end(): void {
    if (!this.#capturing) throw new Error("CUDAGraph.capture_end: capture_begin() was not called");
    this.#capturing = false;
    // Nothing was drawn yet: the first replay draws what an eager run would have drawn here.
    const { seed, offset } = default_generator.get_state();
    this.#randomCount = offset - this.#randomStart;
    default_generator.set_state({ seed, offset: this.#randomStart });
    try {
      native.cuda.graphCaptureEnd(this.#id);
    } catch (e) {
      this.#id = 0;
      throw e;
    }
  }

  replay(): void {
    if (this.#id === 0 || this.#capturing) throw new Error("CUDAGraph.replay: nothing has been captured (capture_begin ... capture_end)");
    if (this.#randomCount === 0) return native.cuda.graphReplay(this.#id, 0);
    // The kernels add the base to the offsets they captured, so that this replay draws from the generator's
    // current offset on; rounded up to a multiple of 4 because a kernel's thread layout depends on offset % 4.
    const { seed, offset } = default_generator.get_state();
    const base = Math.ceil(Math.max(0, offset - this.#randomStart) / 4) * 4;
    native.cuda.graphReplay(this.#id, base);
    default_generator.set_state({ seed, offset: this.#randomStart + base + this.#randomCount });
  }

  /** Frees the graph and gives its memory pool back (waits for the GPU); the object may capture again. */
  reset(): void {
    if (this.#id === 0) return;
    if (this.#capturing) {
      native.cuda.graphCaptureAbort(this.#id);
      this.#capturing = false;
      default_generator.set_state({ seed: default_generator.get_state().seed, offset: this.#randomStart });
    } else {
      native.cuda.graphReset(this.#id);
    }
    this.#id = 0;
  }

  /** The pool this graph's memory comes from, for capturing another graph that shares it. */
  pool(): GraphPoolHandle {
    if (this.#id === 0) throw new Error("CUDAGraph.pool: nothing has been captured");
    return new GraphPoolHandle(native.cuda.graphPool(this.#id));
  }
}

/**
 * torch.cuda.graph as a callback: `graph(g, () => { ... })` captures what the callback queues into `g` and
 * returns its result. A callback that throws ends the capture and leaves `g` empty; it must not be async (the
 * capture would end before its awaits run).
 */
function captureGraph<T>(g: CUDAGraph, fn: () => T, options: { pool?: GraphPoolHandle } = {}): T {
  g.capture_begin(options.pool);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new Error("torch.cuda.graph: the captured function must not be async");
  } catch (e) {
    g.reset();
    throw e;
  }
  g.capture_end();
  return result;
}

export const cuda = {
  CUDAGraph,
  Event,
  Stream,
  current_stream,
  default_stream,
  stream,
  graph: captureGraph,
  graph_pool_handle: (): GraphPoolHandle => {
    requireCuda("graph_pool_handle");
    return new GraphPoolHandle(native.cuda.graphPoolHandle());
  },
  is_current_stream_capturing: (): boolean => cudaInfo().available && native.cuda.isCurrentStreamCapturing(),
  is_available: (): boolean => cudaInfo().available,
  // GPUs finetune can use: none while CUDA is unavailable, as in PyTorch, so `device_count() > 0` guards agree
  // with is_available(); the devices the driver sees are in cudaInfo() and `finetune env`.
  device_count: (): number => (cudaInfo().available ? cudaInfo().device_count : 0),
  current_device: (): number => {
    requireCuda("current_device");
    return 0;
  },
  /** finetune drives device 0 from each process: setting it is allowed, choosing another is refused. */
  set_device: (device: number | string | Device): void => requireDeviceZero("set_device", device),
  get_device_name: (device = 0): string => requireDevice("get_device_name", device).name,
  get_device_properties: (device = 0): { name: string; total_memory: number; major: number; minor: number } => ({
    ...requireDevice("get_device_properties", device),
  }),
  get_device_capability: (device = 0): [number, number] => {
    const d = requireDevice("get_device_capability", device);
    return [d.major, d.minor];
  },
  // As in PyTorch: with emulation any GPU that holds bfloat16 tensors counts; without, Ampere (8.0) and newer.
  is_bf16_supported: (including_emulation = true): boolean =>
    cudaInfo().available && (including_emulation || cudaInfo().devices[0]!.major >= 8),
  /** [free, total] bytes of the GPU, as the driver counts them (memory finetune's cache holds is not free). */
  mem_get_info: (device = 0): [number, number] => {
    requireDevice("mem_get_info", device);
    return native.cuda.memGetInfo();
  },
  synchronize: (): void => {
    requireCuda("synchronize");
    native.cuda.synchronize();
  },
  // Without CUDA PyTorch's statistics read 0 and empty_cache does nothing; so do ours.
  memory_allocated: (): number => (cudaInfo().available ? native.cuda.memoryAllocated() : 0),
  max_memory_allocated: (): number => (cudaInfo().available ? native.cuda.maxMemoryAllocated() : 0),
  memory_reserved: (): number =>
    cudaInfo().available ? native.cuda.memoryAllocated() + native.cuda.cachedBytes() : 0,
  max_memory_reserved: (): number => (cudaInfo().available ? native.cuda.memoryStats()["reserved_bytes.all.peak"]! : 0),
  /** PyTorch's keys the allocator keeps: allocated_bytes.all.{current,peak}, reserved_bytes.all.{current,peak},
   * segment.all.{current,allocated,freed} (segments are the driver's allocations), num_alloc_retries, num_ooms. */
  memory_stats: (): Record<string, number> => (cudaInfo().available ? native.cuda.memoryStats() : {}),
  reset_peak_memory_stats: (): void => {
    if (cudaInfo().available) native.cuda.resetPeakMemoryStats();
  },
  empty_cache: (): void => {
    if (cudaInfo().available) native.cuda.emptyCache();
  },
  manual_seed: (_seed: number): void => {},
  manual_seed_all: (_seed: number): void => {},
};

/** torch.backends.cuda.matmul: `allow_tf32` (default false, as in PyTorch) lets float32 GEMMs use TF32 tensor cores. */
export const backends = {
  cuda: {
    matmul: {
      get allow_tf32(): boolean {
        return native.cuda.getAllowTf32();
      },
      set allow_tf32(allow: boolean) {
        native.cuda.setAllowTf32(allow);
      },
    },
  },
};
