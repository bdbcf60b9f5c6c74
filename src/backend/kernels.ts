// The device seam: tensor-level kernel calls. Ops hand it tensors (storage + layout); it picks the backend of
// their device: the native addon's CPU kernels, or native.cuda, the same contract on device handles.
import { native, type Kernels } from "./native.js";
import type { Tensor } from "../tensor/tensor.js";

export function checkSameDevice(...tensors: (Tensor | null | undefined)[]): void {
  const first = tensors.find((t) => t)!;
  for (const t of tensors) {
    if (t && !t.device.equals(first.device)) {
      throw new Error(
        `Expected all tensors to be on the same device, but found at least two devices, ${first.device} and ${t.device}!`,
      );
    }
  }
}

/** The kernel entry points for a tensor's device. A CUDA tensor exists only where native.cuda works. */
export function backendFor(t: Tensor): Kernels {
  return t.device.type === "cpu" ? native : native.cuda;
}
