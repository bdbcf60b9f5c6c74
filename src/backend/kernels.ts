// The device seam: tensor-level kernel calls. Ops hand it tensors (storage + layout); it picks the backend of
// their device. Only the CPU backend (the native addon) exists in this build; a CUDA backend implements the
// same calls on device memory.
import { native } from "./native.js";
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

/** The native entry points for a tensor's device. */
export function backendFor(t: Tensor): typeof native {
  if (t.device.type !== "cpu") throw new Error(`no backend for device ${t.device} in this build`);
  return native;
}
