// accelerate.notebook_launcher: runs the training function in this process. Under a launcher (WORLD_SIZE set)
// each process runs it as is; starting several processes itself needs process groups finetune lacks yet.
export interface NotebookLauncherOptions {
  num_processes?: number | null;
  mixed_precision?: "no" | "fp16" | "bf16";
  use_port?: string;
}

export async function notebook_launcher<A extends unknown[], R>(
  fn: (...args: A) => R | Promise<R>,
  args: A | NotebookLauncherOptions = [] as unknown as A,
  options: NotebookLauncherOptions = {},
): Promise<R> {
  // notebook_launcher(fn, options) is accepted for notebook_launcher(fn, [], options)
  const [fnArgs, opts] = Array.isArray(args) ? [args, options] : [[] as unknown as A, args];
  const launched = process.env.WORLD_SIZE !== undefined;
  const requested = opts.num_processes ?? 1;
  if (!launched && requested > 1) {
    throw new Error(
      `notebook_launcher: num_processes=${requested} needs several processes joined by a process group (NCCL, Gloo ` +
        "or MPI), which finetune does not implement yet; pass num_processes: 1 to train in this process",
    );
  }
  // as accelerate does, the option reaches Accelerator() through the environment for the call's duration
  const previous = process.env.ACCELERATE_MIXED_PRECISION;
  if (opts.mixed_precision && !launched) process.env.ACCELERATE_MIXED_PRECISION = opts.mixed_precision;
  try {
    return await fn(...fnArgs);
  } finally {
    if (previous === undefined) delete process.env.ACCELERATE_MIXED_PRECISION;
    else process.env.ACCELERATE_MIXED_PRECISION = previous;
  }
}
