// The program each process that finetune launch (or notebook_launcher) starts under mpirun runs first: on GPUs it
// gives the process the GPU of its local rank, as CUDA_VISIBLE_DEVICES (the n-th of those already listed), before
// anything touches CUDA, since finetune drives device 0 of each process; then it runs the script as the main module.
//   node process_entry.js SCRIPT [ARGS...]
import path from "node:path";
import { pathToFileURL } from "node:url";
import { launchEnvironment } from "../distributed/launch_environment.js";

const script = process.argv[2];
if (!script) throw new Error("process_entry: no script given");
if (process.env.ACCELERATE_USE_CPU !== "true") {
  const { local_rank } = launchEnvironment();
  const listed = process.env.CUDA_VISIBLE_DEVICES?.split(",").filter((d) => d !== "");
  process.env.CUDA_VISIBLE_DEVICES = listed ? (listed[local_rank] ?? "") : String(local_rank);
}
process.argv.splice(1, 1);
await import(pathToFileURL(path.resolve(script)).href);
