// torch.cuda, answered from what the addon's CUDA loader found (native/cuda/). This build has no CUDA kernels, so
// CUDA is never available yet; the loader still reports the driver, GPUs and libraries it sees, and why not.
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
  },
  memory_allocated: (): number => 0,
  max_memory_allocated: (): number => 0,
  memory_reserved: (): number => 0,
  reset_peak_memory_stats: (): void => {},
  empty_cache: (): void => {},
  manual_seed: (_seed: number): void => {},
  manual_seed_all: (_seed: number): void => {},
};
