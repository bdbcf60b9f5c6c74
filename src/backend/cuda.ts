// torch.cuda, answered from what the addon's CUDA loader found (native/cuda/): available when the driver, a GPU,
// NVRTC and cuBLASLt are there; otherwise the loader still reports what it sees, and why not. Memory statistics
// come from native.cuda's caching allocator.
import { native, type CudaInfo } from "./native.js";

let cached: CudaInfo | undefined;

/** The loader's findings; loading happens on the first call (dlopen, cuInit), not at import. */
export function cudaInfo(): CudaInfo {
  cached ??= native.cudaInfo();
  return cached;
}

/** Why tensors cannot go to "cuda" here, for error messages. */
export function cudaUnavailableReason(): string {
  const info = cudaInfo();
  return info.available ? "CUDA is available" : info.reason ?? "CUDA is not available";
}

function requireCuda(what: string): CudaInfo {
  const info = cudaInfo();
  if (!info.available) throw new Error(`torch.cuda.${what}: CUDA is not available: ${cudaUnavailableReason()}`);
  return info;
}

function requireDevice(what: string, device: number): CudaInfo["devices"][number] {
  const info = requireCuda(what);
  const d = info.devices[device];
  if (!Number.isInteger(device) || d === undefined) {
    throw new RangeError(`torch.cuda.${what}: invalid device ${device}: use 0..${info.device_count - 1}`);
  }
  return d;
}

export const cuda = {
  is_available: (): boolean => cudaInfo().available,
  // GPUs finetune can use: none while CUDA is unavailable, as in PyTorch, so `device_count() > 0` guards agree
  // with is_available(); the devices the driver sees are in cudaInfo() and `finetune env`.
  device_count: (): number => (cudaInfo().available ? cudaInfo().device_count : 0),
  current_device: (): number => {
    requireCuda("current_device");
    return 0;
  },
  get_device_name: (device = 0): string => requireDevice("get_device_name", device).name,
  get_device_properties: (device = 0): { name: string; total_memory: number; major: number; minor: number } => ({
    ...requireDevice("get_device_properties", device),
  }),
  synchronize: (): void => {
    requireCuda("synchronize");
    native.cuda.synchronize();
  },
  // Without CUDA PyTorch's statistics read 0 and empty_cache does nothing; so do ours.
  memory_allocated: (): number => (cudaInfo().available ? native.cuda.memoryAllocated() : 0),
  max_memory_allocated: (): number => (cudaInfo().available ? native.cuda.maxMemoryAllocated() : 0),
  memory_reserved: (): number =>
    cudaInfo().available ? native.cuda.memoryAllocated() + native.cuda.cachedBytes() : 0,
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
