// What the addon's CUDA loader found (native/cuda/): available when the driver, a GPU, NVRTC and cuBLASLt are
// there; otherwise the loader still reports what it sees, and why not. torch.cuda's functions check it here.
import { native, type CudaInfo } from "./native.js";
import { Device } from "../tensor/device.js";

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

export function requireCuda(what: string): CudaInfo {
  const info = cudaInfo();
  if (!info.available) throw new Error(`torch.cuda.${what}: CUDA is not available: ${cudaUnavailableReason()}`);
  return info;
}

export function requireDevice(what: string, device: number): CudaInfo["devices"][number] {
  const info = requireCuda(what);
  const d = info.devices[device];
  if (!Number.isInteger(device) || d === undefined) {
    throw new RangeError(`torch.cuda.${what}: invalid device ${device}: use 0..${info.device_count - 1}`);
  }
  return d;
}

/** Requires CUDA and that `device` (undefined or null: the current one) names device 0, which finetune runs on. */
export function requireDeviceZero(what: string, device: number | string | Device | undefined | null): void {
  requireCuda(what);
  if (device === undefined || device === null) return;
  const d = typeof device === "number" ? new Device("cuda", device) : new Device(device);
  if (d.type !== "cuda" || (d.index ?? 0) !== 0) {
    throw new RangeError(`torch.cuda.${what}: invalid device ${String(device)}: finetune runs CUDA work on device 0 ("cuda" or "cuda:0")`);
  }
}
