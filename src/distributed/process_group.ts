// torch.distributed: the default process group over the processes a launcher started. Backend "mpi" (CPU
// processes) runs every collective on the MPI library (native/distributed/mpi.cc); backend "nccl" (one GPU a
// process) joins through MPI too, then runs the collectives of CUDA tensors on NCCL (native/distributed/nccl.cc), on
// the stream their kernels run on, and those of CPU tensors and objects on MPI, as PyTorch's "cpu:gloo,cuda:nccl".
// Tensors that are not contiguous (or, for MPI, not on the CPU) go through a contiguous copy.
import { native, DTypeCode, ReduceOp as NativeReduceOp } from "../backend/native.js";
import { Tensor } from "../tensor/tensor.js";
import { launchEnvironment } from "./launch_environment.js";

/** torch.distributed.ReduceOp */
export const ReduceOp = { SUM: "sum", MAX: "max", MIN: "min" } as const;
export type ReduceOpName = (typeof ReduceOp)[keyof typeof ReduceOp];

const NATIVE_OPS: Record<ReduceOpName, NativeReduceOp> = { sum: NativeReduceOp.Sum, max: NativeReduceOp.Max, min: NativeReduceOp.Min };
const MPI_REDUCIBLE = new Set<DTypeCode>([DTypeCode.F32, DTypeCode.I64, DTypeCode.I32]);
const BACKENDS = ["mpi", "nccl", "gloo"];

let world: { rank: number; size: number; backend: "mpi" | "nccl" } | null = null;

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

/** Whether NCCL loads here (the "nccl" backend also needs MPI, through which the processes meet). */
export function is_nccl_available(): boolean {
  return native.nccl.load().available;
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
 * Joins the launch's processes over the MPI library mpirun started them with (`finetune launch` does): backend
 * "mpi" for CPU processes; "nccl" for processes that each drive one GPU, whose NCCL communicator is made with an id
 * process 0 sends the others through MPI. The world is MPI's; a launch environment saying otherwise is an error.
 */
export function init_process_group(backend: string | null = "mpi", options: InitProcessGroupOptions = {}): void {
  const name = (backend ?? "mpi").toLowerCase();
  if (!BACKENDS.includes(name)) throw new Error(`init_process_group: unknown backend ${JSON.stringify(backend)}; finetune has "mpi" and "nccl"`);
  if (name === "gloo") {
    throw new Error('init_process_group: the gloo backend is not part of finetune; use backend "mpi" on CPU processes (or "nccl" on GPUs) started by finetune launch or mpirun');
  }
  if (world !== null) throw new Error("init_process_group: trying to initialize the default process group twice");
  const mpi = native.mpi.load();
  if (!mpi.available) throw new Error(`init_process_group("${name}"): ${mpi.reason}`);
  if (name === "nccl") {
    const nccl = native.nccl.load();
    if (!nccl.available) throw new Error(`init_process_group("nccl"): ${nccl.reason}`);
  }
  const launch = launchEnvironment();
  const joined = native.mpi.init();
  const expected = { world_size: options.world_size ?? launch.world_size, rank: options.rank ?? launch.rank };
  if (joined.size !== expected.world_size || joined.rank !== expected.rank) {
    throw new Error(
      `init_process_group: MPI's world has this process at rank ${joined.rank} of ${joined.size}, but ${launch.source === "none" ? "the options say" : `the ${launch.source} launch environment says`} ` +
        `rank ${expected.rank} of ${expected.world_size}: start every process with finetune launch (or mpirun)`,
    );
  }
  if (name === "nccl") {
    const id = joined.rank === 0 ? native.nccl.uniqueId() : new ArrayBuffer(128);
    native.mpi.broadcast(id, 0, 128, 0);
    native.nccl.init(id, joined.size, joined.rank);
  }
  world = { ...joined, backend: name as "mpi" | "nccl" };
  // A process leaving MPI must finalize it; one that fails does not, so that mpirun stops the others instead of
  // every process waiting in MPI_Finalize for the one that is gone.
  process.once("exit", (code) => {
    if (code === 0 && world !== null) native.mpi.finalize();
  });
}

/** The backend of the default process group: "mpi" or "nccl". */
export function get_backend(): string {
  return requireWorld().backend;
}

function requireWorld(): { rank: number; size: number; backend: "mpi" | "nccl" } {
  if (world === null) throw new Error("Default process group has not been initialized, please make sure to call init_process_group.");
  return world;
}

export function get_rank(): number {
  return requireWorld().rank;
}

export function get_world_size(): number {
  return requireWorld().size;
}

/** Throws unless `src` is a rank of the world (MPI's default error handler would end the whole job on another). */
function checkRank(what: string, src: number, size: number): void {
  if (!Number.isInteger(src) || src < 0 || src >= size) throw new RangeError(`${what}: src must be a rank below ${size}, got ${src}`);
}

/** Whether the collectives on `t` go to NCCL: a CUDA tensor in an "nccl" group. */
function onNccl(t: Tensor): boolean {
  return world!.backend === "nccl" && t.device.type === "cuda";
}

/**
 * Runs `fn` on a contiguous tensor with t's values, on t's device where the collective runs there (NCCL), else on
 * the host, and copies its values back into t where `writeBack`.
 */
function onDense(t: Tensor, writeBack: boolean, fn: (dense: Tensor) => void): void {
  const dense = t.is_contiguous() ? t : t.contiguous();
  const placed = onNccl(t) || dense.device.type === "cpu" ? dense : dense.cpu();
  try {
    fn(placed);
    if (writeBack && placed !== t) t.copy_(placed);
  } finally {
    if (placed !== dense) placed.dispose();
    if (dense !== t) dense.dispose();
  }
}

const byteOffset = (t: Tensor) => t.offset * t.dtype.itemsize;

/** In place: every process's tensor combined by `op` (ReduceOp.SUM by default); float32, int64 or int32 (and 16-bit
 * floats on NCCL). */
export function all_reduce(tensor: Tensor, op: ReduceOpName = ReduceOp.SUM): void {
  requireWorld();
  if (!(op in NATIVE_OPS)) throw new Error(`all_reduce: op must be ReduceOp.SUM, MAX or MIN, got ${JSON.stringify(op)}`);
  if (onNccl(tensor)) {
    onDense(tensor, true, (d) => native.nccl.allReduce(d.buffer, d.offset, d.numel(), d.dtype.code, NATIVE_OPS[op]));
    return;
  }
  if (!MPI_REDUCIBLE.has(tensor.dtype.code)) throw new TypeError(`all_reduce: a ${tensor.dtype.name} tensor; MPI reduces float32, int64 and int32 tensors`);
  onDense(tensor, true, (h) => native.mpi.allReduce(h.buffer, byteOffset(h), h.numel(), h.dtype.code, NATIVE_OPS[op]));
}

/** In place: process `src`'s tensor on every process. */
export function broadcast(tensor: Tensor, src: number): void {
  checkRank("broadcast", src, requireWorld().size);
  const bytes = tensor.numel() * tensor.dtype.itemsize;
  onDense(tensor, true, (d) => (onNccl(d) ? native.nccl : native.mpi).broadcast(d.buffer, byteOffset(d), bytes, src));
}

/** `output` (world_size times `input`'s elements, its dtype and device): every process's `input` in rank order. */
export function all_gather_into_tensor(output: Tensor, input: Tensor): void {
  const { size } = requireWorld();
  if (output.dtype !== input.dtype) throw new TypeError(`all_gather_into_tensor: output is ${output.dtype.name}, input ${input.dtype.name}`);
  if (!output.device.equals(input.device)) throw new TypeError(`all_gather_into_tensor: output is on ${output.device}, input on ${input.device}`);
  if (output.numel() !== size * input.numel()) {
    throw new RangeError(`all_gather_into_tensor: output has ${output.numel()} elements; ${size} processes of ${input.numel()} need ${size * input.numel()}`);
  }
  const bytes = input.numel() * input.dtype.itemsize;
  onDense(input, false, (send) =>
    onDense(output, true, (recv) => (onNccl(recv) ? native.nccl : native.mpi).allGather(send.buffer, byteOffset(send), bytes, recv.buffer, byteOffset(recv))));
}

/** Fills `tensor_list` (one tensor a process, each `tensor`'s shape) with every process's `tensor`. */
export function all_gather(tensor_list: Tensor[], tensor: Tensor): void {
  const { size } = requireWorld();
  if (tensor_list.length !== size) throw new RangeError(`all_gather: tensor_list has ${tensor_list.length} tensors for ${size} processes`);
  const gathered = Tensor.empty([size, ...tensor.shape], tensor.dtype, tensor.device);
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

/** Leaves the process group (and MPI: this process cannot join another). */
export function destroy_process_group(): void {
  requireWorld();
  native.nccl.destroy();
  native.mpi.finalize();
  world = null;
}

/** Process `src`'s values of `object_list` (JSON-serialisable) on every process, in place. */
export function broadcast_object_list(object_list: unknown[], src = 0): void {
  const { rank, size } = requireWorld();
  checkRank("broadcast_object_list", src, size);
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
