// Where this process stands in a launch: its rank, the world's size and its rank on this machine, from the
// variables a launcher sets: torchrun's (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE), Open MPI's mpirun
// (OMPI_COMM_WORLD_*) or MPICH's (PMI_SIZE, PMI_RANK, MPI_LOCALRANKID, MPI_LOCALNRANKS). As accelerate, a process
// started by mpirun is part of a launch without further set-up.

export interface LaunchEnvironment {
  world_size: number;
  rank: number;
  local_rank: number;
  local_world_size: number;
  /** which variables said so; "none" for a process on its own */
  source: "torchrun" | "Open MPI" | "MPICH" | "none";
}

const SOURCES: [LaunchEnvironment["source"], string, string, string, string][] = [
  ["torchrun", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"],
  ["Open MPI", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"],
  ["MPICH", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"],
];

function count(env: NodeJS.ProcessEnv, name: string, fallback: number | null, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") {
    if (fallback === null) throw new Error(`the launch environment has no ${name}: set it, or start the processes with finetune launch`);
    return fallback;
  }
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${raw} in the launch environment: expected an integer >= ${min}`);
  return n;
}

/** This process's place in the launch that started it (the first source whose world size is set). */
export function launchEnvironment(env: NodeJS.ProcessEnv = process.env): LaunchEnvironment {
  for (const [source, size, rank, local, localSize] of SOURCES) {
    if (env[size] === undefined || env[size] === "") continue;
    const world_size = count(env, size, null, 1);
    const r = count(env, rank, world_size === 1 ? 0 : null, 0);
    if (r >= world_size) throw new Error(`${rank}=${r} in the launch environment is not below ${size}=${world_size}`);
    const local_rank = count(env, local, r, 0);
    const local_world_size = count(env, localSize, world_size, 1);
    return { world_size, rank: r, local_rank, local_world_size, source };
  }
  return { world_size: 1, rank: 0, local_rank: 0, local_world_size: 1, source: "none" };
}
