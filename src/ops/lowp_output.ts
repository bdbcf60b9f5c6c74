// Under autocast on CUDA, the kernels whose float32 results feed matrix products (layer_norm, the fused attention,
// linear_gelu's bias + GELU) also write the result's 16-bit copy in the same pass (amp/lowp_copy.ts), and the
// products read it instead of launching a cast. On the CPU the GEMM reads float32, so there is nothing to save.
import { Tensor } from "../tensor/tensor.js";
import { DType, float32 } from "../tensor/dtype.js";
import { autocastOperandDtype } from "../amp/autocast_mode.js";

/** The dtype of the 16-bit copy a kernel should write of its float32 result `out`, or null where none is wanted. */
export function lowpCopyDtype(out: Tensor): DType | null {
  return out.device.type === "cuda" && out.dtype === float32 ? autocastOperandDtype(out) : null;
}

/** An empty 16-bit tensor shaped like the float32 result `out` for its kernel to fill, or null where none is wanted. */
export function emptyLowpCopy(out: Tensor): Tensor | null {
  const dtype = lowpCopyDtype(out);
  return dtype && Tensor.empty(out.shape, dtype, out.device);
}
