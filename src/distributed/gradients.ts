// The gradients of data-parallel training: each process's averaged over the processes, as DistributedDataParallel's
// default hook does (each divided by the process count, then summed), in one all-reduce over a flat copy.
import { Tensor } from "../tensor/tensor.js";
import { all_reduce, get_world_size } from "./process_group.js";

/** Averages the gradients of `params` over the processes; a parameter without one here contributes zeros. */
export function average_gradients(params: Tensor[]): void {
  const trained = params.filter((p) => p.requires_grad);
  if (trained.length === 0) return;
  const flat = Tensor.empty([trained.reduce((n, p) => n + p.numel(), 0)], trained[0]!.dtype, trained[0]!.device);
  let at = 0;
  for (const p of trained) {
    const part = flat.narrow(0, at, p.numel());
    if (p.grad) {
      const values = p.grad.reshape(-1);
      part.copy_(values);
      values.dispose();
    } else {
      part.zero_();
    }
    part.dispose();
    at += p.numel();
  }
  flat.div_(get_world_size());
  all_reduce(flat);
  at = 0;
  for (const p of trained) {
    const part = flat.narrow(0, at, p.numel()).view([...p.shape]);
    if (p.grad) p.grad.copy_(part);
    else p.grad = part.clone();
    part.dispose();
    at += p.numel();
  }
  flat.dispose();
}
