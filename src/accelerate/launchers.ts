// accelerate.notebook_launcher: runs the training function in `num_processes` processes. Inside a launch (finetune
// launch, mpirun) each process runs it as is; otherwise one process runs it here, and several are this script
// started again under mpirun (one a GPU where there are enough, else on the CPU), every copy running the function
// (the whole script runs in each, as under `finetune launch`), while this process waits for them.
import { launchEnvironment } from "../distributed/launch_environment.js";
import { processDevice, runProcesses } from "./mpirun.js";
import { envFlag } from "./accelerator.js";

export interface NotebookLauncherOptions {
  num_processes?: number | null;
  mixed_precision?: "no" | "fp16" | "bf16";
  use_port?: string;
}

export async function notebook_launcher<A extends unknown[], R>(
  fn: (...args: A) => R | Promise<R>,
  args: A | NotebookLauncherOptions = [] as unknown as A,
  options: NotebookLauncherOptions = {},
): Promise<R | undefined> {
  // notebook_launcher(fn, options) is accepted for notebook_launcher(fn, [], options)
  const [fnArgs, opts] = Array.isArray(args) ? [args, options] : [[] as unknown as A, args];
  const launched = launchEnvironment().source !== "none";
  const requested = opts.num_processes ?? 1;
  if (!Number.isInteger(requested) || requested < 1) throw new Error(`notebook_launcher: num_processes must be a positive integer, got ${requested}`);
  if (!launched && requested > 1) {
    const script = process.argv[1];
    if (!script) throw new Error("notebook_launcher: several processes re-run this script, and Node.js was given none (node -e?)");
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (opts.mixed_precision) env.ACCELERATE_MIXED_PRECISION = opts.mixed_precision;
    const device = processDevice(requested, envFlag("ACCELERATE_USE_CPU"));
    const code = await runProcesses(requested, { node_options: process.execArgv, script, args: process.argv.slice(2) }, env, device);
    if (code !== 0) throw new Error(`notebook_launcher: the ${requested} processes failed (mpirun exited with code ${code})`);
    return undefined;
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
