// Starting several CPU processes of one script, as `accelerate launch` does for MULTI_CPU with mpirun: the MPI
// launcher (FINETUNE_MPIRUN, else mpirun on the PATH) runs `node [node options] script [args]` once a process on
// this machine; each process finds its rank in the variables mpirun gives it (distributed/launch_environment.ts).
import { spawn, spawnSync } from "node:child_process";
import os from "node:os";

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

/** Runs `num_processes` copies of `argv` under mpirun with `env`; resolves to the launcher's exit code. */
export function runProcesses(num_processes: number, argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { command, args } = mpirunCommand(num_processes, argv);
  const child = spawn(command, args, { env: mpiProcessEnv(env, num_processes), stdio: "inherit" });
  return new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
