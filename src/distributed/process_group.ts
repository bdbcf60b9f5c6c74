// torch.distributed for CPU processes: the default process group on MPI (native/distributed/mpi.cc), the one
// backend finetune has; every collective is the MPI library's. Tensors that are not contiguous or not on the CPU
// go through a contiguous host copy.
import { native, DTypeCode, ReduceOp as NativeReduceOp } from "../backend/native.js";
import { Tensor } from "../tensor/tensor.js";
import { Device } from "../tensor/device.js";
import { launchEnvironment } from "./launch_environment.js";

/** torch.distributed.ReduceOp */
export const ReduceOp = { SUM: "sum", MAX: "max", MIN: "min" } as const;
export type ReduceOpName = (typeof ReduceOp)[keyof typeof ReduceOp];

const NATIVE_OPS: Record<ReduceOpName, NativeReduceOp> = { sum: NativeReduceOp.Sum, max: NativeReduceOp.Max, min: NativeReduceOp.Min };
const REDUCIBLE = new Set<DTypeCode>([DTypeCode.F32, DTypeCode.I64, DTypeCode.I32]);
const BACKENDS = ["mpi", "gloo", "nccl"];

let world: { rank: number; size: number } | null = null;

/** Whether a process group can be made here: whether an MPI library loads. */
export function is_available(): boolean {
  return native.mpi.load().available;
}

export function is_mpi_available(): boolean {
  return is_available();
}

export function is_gloo_available(): boolean {
  return false;
}

export function is_nccl_available(): boolean {
  return false;
}

export function is_initialized(): boolean {
  return world !== null;
}

export interface InitProcessGroupOptions {
  /** must match the launch's world size where given */
  world_size?: number;
  /** must match the launch's rank where given */
  rank?: number;
}

/**
 * Joins the launch's processes: backend "mpi" (the default here), over the MPI library mpirun started them with
 * (`finetune launch` does). The world is MPI's; a launch environment (WORLD_SIZE, RANK) saying otherwise is an error.
 */
export function init_process_group(backend: string | null = "mpi", options: InitProcessGroupOptions = {}): void {
  const name = (backend ?? "mpi").toLowerCase();
  if (!BACKENDS.includes(name)) throw new Error(`init_process_group: unknown backend ${JSON.stringify(backend)}; finetune has "mpi"`);
  if (name !== "mpi") {
    throw new Error(`init_process_group: the ${name} backend is not part of finetune; use backend "mpi" on CPU processes started by finetune launch or mpirun`);
  }
  if (world !== null) throw new Error("init_process_group: trying to initialize the default process group twice");
  const mpi = native.mpi.load();
  if (!mpi.available) throw new Error(`init_process_group("mpi"): ${mpi.reason}`);
  const launch = launchEnvironment();
  const joined = native.mpi.init();
  const expected = { world_size: options.world_size ?? launch.world_size, rank: options.rank ?? launch.rank };
  if (joined.size !== expected.world_size || joined.rank !== expected.rank) {
    throw new Error(
      `init_process_group: MPI's world has this process at rank ${joined.rank} of ${joined.size}, but ${launch.source === "none" ? "the options say" : `the ${launch.source} launch environment says`} ` +
        `rank ${expected.rank} of ${expected.world_size}: start every process with finetune launch (or mpirun)`,
    );
  }
  world = joined;
  // A process leaving MPI must finalize it; one that fails does not, so that mpirun stops the others instead of
  // every process waiting in MPI_Finalize for the one that is gone.
  process.once("exit", (code) => {
    if (code === 0 && world !== null) native.mpi.finalize();
  });
}

function requireWorld(): { rank: number; size: number } {
  if (world === null) throw new Error("Default process group has not been initialized, please make sure to call init_process_group.");
  return world;
}

export function get_rank(): number {
  return requireWorld().rank;
}

export function get_world_size(): number {
  return requireWorld().size;
}

/** Runs `fn` on a contiguous host tensor with t's values, and copies its values back into t where `writeBack`. */
function onHost(t: Tensor, writeBack: boolean, fn: (host: Tensor) => void): void {
  const dense = t.is_contiguous() ? t : t.contiguous();
  const host = dense.device.type === "cpu" ? dense : dense.cpu();
  try {
    fn(host);
    if (writeBack && host !== t) t.copy_(host);
  } finally {
    if (host !== dense) host.dispose();
    if (dense !== t) dense.dispose();
  }
}

/** In place: every process's tensor combined by `op` (ReduceOp.SUM by default); float32, int64 or int32. */
export function all_reduce(tensor: Tensor, op: ReduceOpName = ReduceOp.SUM): void {
  requireWorld();
  if (!REDUCIBLE.has(tensor.dtype.code)) throw new TypeError(`all_reduce: a ${tensor.dtype.name} tensor; MPI reduces float32, int64 and int32 tensors`);
  if (!(op in NATIVE_OPS)) throw new Error(`all_reduce: op must be ReduceOp.SUM, MAX or MIN, got ${JSON.stringify(op)}`);
  onHost(tensor, true, (h) => native.mpi.allReduce(h.buffer, h.offset * h.dtype.itemsize, h.numel(), h.dtype.code, NATIVE_OPS[op]));
}

/** In place: process `src`'s tensor on every process. */
export function broadcast(tensor: Tensor, src: number): void {
  const { size } = requireWorld();
  if (!Number.isInteger(src) || src < 0 || src >= size) throw new RangeError(`broadcast: src must be a rank below ${size}, got ${src}`);
  onHost(tensor, true, (h) => native.mpi.broadcast(h.buffer, h.offset * h.dtype.itemsize, h.numel() * h.dtype.itemsize, src));
}

/** `output` (world_size times `input`'s elements, its dtype): every process's `input` in rank order. */
export function all_gather_into_tensor(output: Tensor, input: Tensor): void {
  const { size } = requireWorld();
  if (output.dtype !== input.dtype) throw new TypeError(`all_gather_into_tensor: output is ${output.dtype.name}, input ${input.dtype.name}`);
  if (output.numel() !== size * input.numel()) {
    throw new RangeError(`all_gather_into_tensor: output has ${output.numel()} elements; ${size} processes of ${input.numel()} need ${size * input.numel()}`);
  }
  const bytes = input.numel() * input.dtype.itemsize;
  onHost(input, false, (send) =>
    onHost(output, true, (recv) => native.mpi.allGather(send.buffer, send.offset * send.dtype.itemsize, bytes, recv.buffer, recv.offset * recv.dtype.itemsize)));
}

/** Fills `tensor_list` (one tensor a process, each `tensor`'s shape) with every process's `tensor`. */
export function all_gather(tensor_list: Tensor[], tensor: Tensor): void {
  const { size } = requireWorld();
  if (tensor_list.length !== size) throw new RangeError(`all_gather: tensor_list has ${tensor_list.length} tensors for ${size} processes`);
  const gathered = Tensor.empty([size, ...tensor.shape], tensor.dtype, new Device("cpu"));
  try {
    all_gather_into_tensor(gathered, tensor);
    tensor_list.forEach((t, i) => {
      const part = gathered.select(0, i);
      t.copy_(part);
      part.dispose();
    });
  } finally {
    gathered.dispose();
  }
}

/** Waits until every process calls it. */
export function barrier(): void {
  requireWorld();
  native.mpi.barrier();
}

/** Leaves the process group (MPI_Finalize): this process cannot join another. */
export function destroy_process_group(): void {
  requireWorld();
  native.mpi.finalize();
  world = null;
}

/** Process `src`'s values of `object_list` (JSON-serialisable) on every process, in place. */
export function broadcast_object_list(object_list: unknown[], src = 0): void {
  const { rank, size } = requireWorld();
  if (!Number.isInteger(src) || src < 0 || src >= size) throw new RangeError(`broadcast_object_list: src must be a rank below ${size}, got ${src}`);
  const encoded = rank === src ? new TextEncoder().encode(JSON.stringify(object_list)) : new Uint8Array(0);
  const length = new Float64Array([encoded.length]);
  native.mpi.broadcast(length.buffer, 0, 8, src);
  const bytes = rank === src ? encoded : new Uint8Array(length[0]!);
  native.mpi.broadcast(bytes.buffer, bytes.byteOffset, bytes.length, src);
  if (rank !== src) object_list.splice(0, object_list.length, ...(JSON.parse(new TextDecoder().decode(bytes)) as unknown[]));
}

/** Every process's `obj` (JSON-serialisable) into `object_list`, in rank order. */
export function all_gather_object(object_list: unknown[], obj: unknown): void {
  const { size } = requireWorld();
  if (object_list.length !== size) throw new RangeError(`all_gather_object: object_list has ${object_list.length} entries for ${size} processes`);
  const encoded = new TextEncoder().encode(JSON.stringify(obj ?? null));
  const lengths = new Float64Array(size);
  native.mpi.allGather(new Float64Array([encoded.length]).buffer, 0, 8, lengths.buffer, 0);
  const longest = Math.max(...lengths);
  const send = new Uint8Array(longest);
  send.set(encoded);
  const recv = new Uint8Array(longest * size);
  native.mpi.allGather(send.buffer, 0, longest, recv.buffer, 0);
  for (let i = 0; i < size; i++) object_list[i] = JSON.parse(new TextDecoder().decode(recv.subarray(i * longest, i * longest + lengths[i]!)));
}
