// Starting several processes of one script on this machine, CPU processes (accelerate's MULTI_CPU) or one a GPU
// (MULTI_GPU): the MPI launcher (FINETUNE_MPIRUN, else mpirun on the PATH) runs `node [node options]
// process_entry.js script [args]` once a process; each finds its rank in the variables mpirun gives it
// (distributed/launch_environment.ts), and process_entry.ts gives it its GPU.
import { spawn, spawnSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { cuda } from "../backend/cuda.js";

const ENTRY = fileURLToPath(new URL("./process_entry.js", import.meta.url));

/** Variables of an enclosing launch that would contradict mpirun's (launch_environment.ts reads them first). */
const LAUNCH_VARIABLES = ["WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"];

/** The mpirun command line for `num_processes` copies of `argv` (the program and its arguments). */
export function mpirunCommand(num_processes: number, argv: string[]): { command: string; args: string[] } {
  const command = process.env.FINETUNE_MPIRUN || "mpirun";
  const probe = spawnSync(command, ["--version"], { encoding: "utf8" });
  if (probe.error) {
    throw new Error(
      `${num_processes} processes are started by MPI's launcher, and ${command} could not be run (${probe.error.message}): ` +
        "install Open MPI (apt-get install openmpi-bin) or MPICH, or set FINETUNE_MPIRUN to its mpirun",
    );
  }
  const args = ["-np", String(num_processes)];
  if (/Open MPI|OpenRTE/i.test(`${probe.stdout}${probe.stderr}`)) {
    // Open MPI refuses root unless told (containers and CI run as root) and more processes than cores unless told
    if (process.getuid?.() === 0) args.push("--allow-run-as-root");
    args.push("--oversubscribe");
  }
  return { command, args: [...args, ...argv] };
}

/**
 * `env` for `num_processes` processes mpirun starts on this machine: without an enclosing launch's variables, and,
 * where OMP_NUM_THREADS is unset, each process's compute threads its share of the cores (as accelerate's
 * num_cpu_threads_per_process), not every core each.
 */
export function mpiProcessEnv(env: NodeJS.ProcessEnv, num_processes: number): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const name of LAUNCH_VARIABLES) delete out[name];
  if (!out.OMP_NUM_THREADS) out.OMP_NUM_THREADS = String(Math.max(1, Math.floor(os.availableParallelism() / num_processes)));
  return out;
}

/** Where `num_processes` processes train: one GPU each where GPUs are used and there are enough, else the CPU. */
export function processDevice(num_processes: number, use_cpu: boolean): "cpu" | "cuda" {
  if (use_cpu || !cuda.is_available()) return "cpu";
  const gpus = cuda.device_count();
  if (num_processes > gpus) {
    throw new Error(
      `${num_processes} processes on GPUs take a GPU each, and ${gpus} ${gpus === 1 ? "is" : "are"} visible here: ` +
        `use ${gpus} processes, or train on CPU processes (finetune launch --cpu, or ACCELERATE_USE_CPU=1)`,
    );
  }
  return "cuda";
}

/** What the processes run: node with `node_options`, the script and its arguments. */
export interface ProcessCommand {
  node_options: string[];
  script: string;
  args: string[];
}

/**
 * Runs `num_processes` processes of `command` under mpirun with `env`, on `device` (processDevice's); resolves to
 * the launcher's exit code.
 */
export function runProcesses(num_processes: number, command: ProcessCommand, env: NodeJS.ProcessEnv, device: "cpu" | "cuda"): Promise<number> {
  const argv = [process.execPath, ...command.node_options, ENTRY, command.script, ...command.args];
  const { command: launcher, args } = mpirunCommand(num_processes, argv);
  const childEnv = mpiProcessEnv({ ...env, ACCELERATE_USE_CPU: String(device === "cpu") }, num_processes);
  return runToExit(launcher, args, childEnv);
}

/** Runs `command` with `args` and `env` on this process's terminal; resolves to its exit code (1 if a signal ended it). */
export function runToExit(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const child = spawn(command, args, { env, stdio: "inherit" });
  return new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
